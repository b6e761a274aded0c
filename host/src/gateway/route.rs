//! Route matching: the first route whose path prefix, model globs and required
//! headers all match serves the request with its policy chain.

use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use http::{HeaderMap, HeaderName};

use crate::config::RouteConfig;
use crate::policy::Chain;

/// A compiled `[[route]]`.
pub struct Route {
    /// The route's name (metrics label, shown to policies).
    pub name: Arc<str>,
    /// The policy chain that decides for this route.
    pub chain: Chain,
    /// Labels passed to policies.
    pub labels: Vec<(String, String)>,
    path_prefix: String,
    models: Option<GlobSet>,
    headers: Vec<(HeaderName, Option<String>)>,
}

/// A route whose config does not compile.
#[derive(Debug, thiserror::Error)]
#[error("route {route:?}: {message}")]
pub struct RouteError {
    route: String,
    message: String,
}

impl Route {
    /// Compiles a route's matchers; `chain` holds its loaded policies.
    pub fn new(config: &RouteConfig, chain: Chain) -> Result<Route, RouteError> {
        let fail = |message: String| RouteError {
            route: config.name.clone(),
            message,
        };
        let models = if config.models.is_empty() {
            None
        } else {
            let mut set = GlobSetBuilder::new();
            for pattern in &config.models {
                set.add(Glob::new(pattern).map_err(|e| fail(e.to_string()))?);
            }
            Some(set.build().map_err(|e| fail(e.to_string()))?)
        };
        let headers = config
            .headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::try_from(name.as_str())
                    .map_err(|e| fail(format!("header {name:?}: {e}")))?;
                Ok((name, (value != "*").then(|| value.clone())))
            })
            .collect::<Result<_, RouteError>>()?;
        Ok(Route {
            name: config.name.as_str().into(),
            chain,
            labels: config
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            path_prefix: config.path_prefix.clone(),
            models,
            headers,
        })
    }

    /// The implicit route used when the config has none: every `/v1/` request,
    /// config order, plain fallback.
    pub fn fallback() -> Route {
        Route {
            name: "default".into(),
            chain: Chain::new(Vec::new()),
            labels: Vec::new(),
            path_prefix: "/v1/".into(),
            models: None,
            headers: Vec::new(),
        }
    }

    /// Whether this route serves the request.
    pub fn matches(&self, path: &str, model: &str, headers: &HeaderMap) -> bool {
        path.starts_with(&self.path_prefix)
            && self.models.as_ref().is_none_or(|set| set.is_match(model))
            && self
                .headers
                .iter()
                .all(|(name, want)| match (headers.get(name), want) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(got), Some(want)) => got.as_bytes() == want.as_bytes(),
                })
    }
}

/// The first route that serves the request.
pub fn find<'a>(
    routes: &'a [Route],
    path: &str,
    model: &str,
    headers: &HeaderMap,
) -> Option<&'a Route> {
    routes
        .iter()
        .find(|route| route.matches(path, model, headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn route(name: &str, models: &[&str], headers: &[(&str, &str)]) -> Route {
        let config = RouteConfig {
            name: name.into(),
            path_prefix: "/v1/".into(),
            models: models.iter().map(|m| m.to_string()).collect(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            policies: vec![],
            labels: BTreeMap::new(),
            line: 0,
        };
        Route::new(&config, Chain::new(Vec::new())).unwrap()
    }

    #[test]
    fn first_match_wins() {
        let routes = [route("batch", &["*-batch"], &[]), route("chat", &[], &[])];
        let headers = HeaderMap::new();
        let pick = |model| find(&routes, "/v1/chat/completions", model, &headers).map(|r| &*r.name);
        assert_eq!(pick("gpt-4o-batch"), Some("batch"));
        assert_eq!(pick("gpt-4o"), Some("chat"));
        assert_eq!(
            find(&routes, "/v2/x", "gpt-4o", &headers).map(|r| &*r.name),
            None
        );
    }

    #[test]
    fn required_headers() {
        let routes = [
            route("eu", &[], &[("x-data-residency", "eu")]),
            route("tagged", &[], &[("x-team", "*")]),
        ];
        let mut headers = HeaderMap::new();
        assert!(find(&routes, "/v1/x", "m", &headers).is_none());
        headers.insert("x-team", "search".parse().unwrap());
        assert_eq!(
            find(&routes, "/v1/x", "m", &headers).unwrap().name.as_ref(),
            "tagged"
        );
        headers.insert("x-data-residency", "eu".parse().unwrap());
        assert_eq!(
            find(&routes, "/v1/x", "m", &headers).unwrap().name.as_ref(),
            "eu"
        );
    }
}
