//! The JSON shapes of requests, candidates and decisions used by
//! `switchyard policy eval|test` and `cases.json` files, and their conversions to
//! and from the WIT types. Field names are the WIT names in snake_case; every
//! input field is optional and unknown fields are refused (a typo must not
//! silently turn into a default).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use super::catalog::Catalog;
use super::types::{
    Candidate, Decision, Health, LiveState, Offer, Plan, ProviderKind, Rejection, Request, RetryOn,
};

/// A request, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestJson {
    /// Request id; default `test`.
    pub id: String,
    /// HTTP method; default `POST`.
    pub method: String,
    /// Path; default `/v1/chat/completions`.
    pub path: String,
    /// Requested model.
    pub model: String,
    /// Streamed response asked for.
    pub streaming: bool,
    /// Tenant of the authenticated client.
    pub tenant: Option<String>,
    /// Headers as an object; names are lower-cased on input, and a name or
    /// value HTTP does not allow (values: visible ASCII) is refused.
    #[serde(deserialize_with = "header_object")]
    pub headers: BTreeMap<String, String>,
    /// Body size in bytes.
    pub body_bytes: u64,
    /// Estimated input tokens.
    pub input_tokens_estimate: u32,
    /// `max_tokens` from the body, if set.
    pub max_output_tokens: Option<u32>,
    /// Matched route name.
    pub route: String,
    /// Route labels.
    pub labels: BTreeMap<String, String>,
}

impl Default for RequestJson {
    fn default() -> Self {
        RequestJson {
            id: "test".to_owned(),
            method: "POST".to_owned(),
            path: "/v1/chat/completions".to_owned(),
            model: String::new(),
            streaming: false,
            tenant: None,
            headers: BTreeMap::new(),
            body_bytes: 0,
            input_tokens_estimate: 0,
            max_output_tokens: None,
            route: String::new(),
            labels: BTreeMap::new(),
        }
    }
}

impl From<RequestJson> for Request {
    fn from(r: RequestJson) -> Request {
        Request {
            id: r.id,
            method: r.method,
            path: r.path,
            model: r.model,
            streaming: r.streaming,
            tenant: r.tenant,
            // Entries read from JSON are all valid; one set in code that is
            // not is left out, as the gateway never passes such a header on.
            headers: r
                .headers
                .iter()
                .filter_map(|(name, value)| {
                    let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
                    Some((name, http::HeaderValue::from_str(value).ok()?))
                })
                .collect(),
            body_bytes: r.body_bytes,
            input_tokens_estimate: r.input_tokens_estimate,
            max_output_tokens: r.max_output_tokens,
            route: r.route,
            labels: r.labels.into_iter().collect(),
        }
    }
}

/// Reads a headers object: names lower-cased, and every name and value one a
/// header map accepts, so a bad one is reported where the JSON is read.
fn header_object<'de, D: Deserializer<'de>>(de: D) -> Result<BTreeMap<String, String>, D::Error> {
    BTreeMap::<String, String>::deserialize(de)?
        .into_iter()
        .map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            let Ok(parsed) = http::HeaderName::from_bytes(name.as_bytes()) else {
                return Err(D::Error::custom(format!(
                    "`{name}` is not a valid header name"
                )));
            };
            // A case relying on one could pass here and never match in the gateway.
            if super::types::CREDENTIAL_HEADERS.contains(&parsed) {
                return Err(D::Error::custom(format!(
                    "header `{name}` never reaches a policy: the gateway keeps credentials from policies"
                )));
            }
            // A header map takes any byte past 127 too, but policies only ever
            // see values that read as visible ASCII (`to_str`).
            let readable = http::HeaderValue::from_str(&value).is_ok_and(|v| v.to_str().is_ok());
            if !readable {
                return Err(D::Error::custom(format!(
                    "the value of header `{name}` is not visible ASCII"
                )));
            }
            Ok((name, value))
        })
        .collect()
}

/// A provider kind, as JSON (`openai`, `azure-openai`, `bedrock`, `mock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderJson {
    /// OpenAI.
    #[default]
    Openai,
    /// Azure OpenAI.
    AzureOpenai,
    /// AWS Bedrock.
    Bedrock,
    /// Simulated.
    Mock,
}

impl From<ProviderJson> for ProviderKind {
    fn from(p: ProviderJson) -> ProviderKind {
        match p {
            ProviderJson::Openai => ProviderKind::Openai,
            ProviderJson::AzureOpenai => ProviderKind::AzureOpenai,
            ProviderJson::Bedrock => ProviderKind::Bedrock,
            ProviderJson::Mock => ProviderKind::Mock,
        }
    }
}

impl From<ProviderKind> for ProviderJson {
    fn from(p: ProviderKind) -> ProviderJson {
        match p {
            ProviderKind::Openai => ProviderJson::Openai,
            ProviderKind::AzureOpenai => ProviderJson::AzureOpenai,
            ProviderKind::Bedrock => ProviderJson::Bedrock,
            ProviderKind::Mock => ProviderJson::Mock,
        }
    }
}

/// Upstream health, as JSON (`healthy`, `degraded`, `cooling-down`, `unhealthy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthJson {
    /// Healthy.
    #[default]
    Healthy,
    /// Degraded.
    Degraded,
    /// Cooling down.
    CoolingDown,
    /// Unhealthy.
    Unhealthy,
}

impl From<HealthJson> for Health {
    fn from(h: HealthJson) -> Health {
        match h {
            HealthJson::Healthy => Health::Healthy,
            HealthJson::Degraded => Health::Degraded,
            HealthJson::CoolingDown => Health::CoolingDown,
            HealthJson::Unhealthy => Health::Unhealthy,
        }
    }
}

impl From<Health> for HealthJson {
    fn from(h: Health) -> HealthJson {
        match h {
            Health::Healthy => HealthJson::Healthy,
            Health::Degraded => HealthJson::Degraded,
            Health::CoolingDown => HealthJson::CoolingDown,
            Health::Unhealthy => HealthJson::Unhealthy,
        }
    }
}

/// An upstream's live state, as JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveStateJson {
    /// Health.
    pub health: HealthJson,
    /// Latency EWMA in ms.
    pub latency_ewma_ms: f64,
    /// Requests in flight.
    pub in_flight: u32,
    /// Recent error rate, 0 to 1.
    pub error_rate: f64,
    /// Cooldown remaining in ms.
    pub cooldown_remaining_ms: u64,
    /// Remaining requests in the rate-limit window.
    pub ratelimit_remaining_requests: Option<u64>,
    /// Remaining tokens in the rate-limit window.
    pub ratelimit_remaining_tokens: Option<u64>,
}

/// A candidate, as JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CandidateJson {
    /// Upstream name.
    pub upstream: String,
    /// Provider kind; default `openai`.
    pub provider: ProviderJson,
    /// Region.
    pub region: String,
    /// Jurisdiction.
    pub jurisdiction: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Provider-side model.
    pub upstream_model: String,
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
    /// Live state.
    pub state: LiveStateJson,
}

impl From<LiveStateJson> for LiveState {
    fn from(s: LiveStateJson) -> LiveState {
        LiveState {
            health: s.health.into(),
            latency_ewma_ms: s.latency_ewma_ms,
            in_flight: s.in_flight,
            error_rate: s.error_rate,
            cooldown_remaining_ms: s.cooldown_remaining_ms,
            ratelimit_remaining_requests: s.ratelimit_remaining_requests,
            ratelimit_remaining_tokens: s.ratelimit_remaining_tokens,
        }
    }
}

impl CandidateJson {
    /// The candidate's fixed facts, as the offer a guest reads.
    fn offer(&self) -> Offer {
        Offer {
            upstream: self.upstream.clone(),
            provider: self.provider.into(),
            region: self.region.clone(),
            jurisdiction: self.jurisdiction.clone(),
            tags: self.tags.clone(),
            upstream_model: self.upstream_model.clone(),
            input_per_mtok: self.input_per_mtok,
            output_per_mtok: self.output_per_mtok,
        }
    }
}

/// Candidates given as JSON, numbered in order (the first has id 0), with the
/// catalog of their offers.
pub fn candidates(list: &[CandidateJson]) -> (Arc<Catalog>, Vec<Candidate>) {
    let catalog = Catalog::new(list.iter().map(CandidateJson::offer).collect());
    let candidates = list
        .iter()
        .zip(0..)
        .map(|(c, id)| Candidate {
            id,
            state: c.state.clone().into(),
        })
        .collect();
    (catalog, candidates)
}

/// One `retry-on` flag, as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOnJson {
    /// `connect-error`.
    ConnectError,
    /// `timeout`.
    Timeout,
    /// `rate-limited`.
    RateLimited,
    /// `server-error`.
    ServerError,
}

impl RetryOnJson {
    const ALL: [(RetryOnJson, RetryOn); 4] = [
        (RetryOnJson::ConnectError, RetryOn::CONNECT_ERROR),
        (RetryOnJson::Timeout, RetryOn::TIMEOUT),
        (RetryOnJson::RateLimited, RetryOn::RATE_LIMITED),
        (RetryOnJson::ServerError, RetryOn::SERVER_ERROR),
    ];

    /// The flags as a list, in WIT order.
    pub fn list(flags: RetryOn) -> Vec<RetryOnJson> {
        RetryOnJson::ALL
            .iter()
            .filter(|(_, flag)| flags.contains(*flag))
            .map(|(json, _)| *json)
            .collect()
    }

    /// A list as flags.
    pub fn flags(list: &[RetryOnJson]) -> RetryOn {
        RetryOnJson::ALL
            .iter()
            .filter(|(json, _)| list.contains(json))
            .fold(RetryOn::empty(), |acc, (_, flag)| acc | *flag)
    }
}

/// A plan, as JSON: targets by upstream name (the guest sees candidate ids; the
/// catalog maps between them).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanJson {
    /// Upstream names in order.
    pub targets: Vec<String>,
    /// Failures that allow the next target.
    pub retry_on: Vec<RetryOnJson>,
    /// Human explanation.
    pub reason: String,
}

/// A rejection, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RejectionJson {
    /// HTTP status.
    pub status: u16,
    /// Error code.
    pub code: String,
    /// Message.
    pub message: String,
}

/// A decision, as JSON: `{"route":{…}}` or `{"reject":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DecisionJson {
    /// Serve with this plan.
    Route(PlanJson),
    /// Refuse.
    Reject(RejectionJson),
}

impl DecisionJson {
    /// `decision` with its targets named by `catalog`.
    pub fn new(decision: &Decision, catalog: &Catalog) -> DecisionJson {
        match decision {
            Decision::Route(plan) => DecisionJson::Route(PlanJson {
                targets: plan
                    .targets
                    .iter()
                    .map(|&id| catalog.upstream_name(id).into_owned())
                    .collect(),
                retry_on: RetryOnJson::list(plan.retry_on),
                reason: plan.reason.clone(),
            }),
            Decision::Reject(r) => DecisionJson::Reject(RejectionJson {
                status: r.status,
                code: r.code.clone(),
                message: r.message.clone(),
            }),
        }
    }

    /// The decision, with each target name looked up in `catalog`; the error
    /// names the first target it does not offer.
    pub fn into_decision(self, catalog: &Catalog) -> Result<Decision, String> {
        Ok(match self {
            DecisionJson::Route(plan) => Decision::Route(Plan {
                targets: plan
                    .targets
                    .iter()
                    .map(|name| {
                        catalog
                            .id_of(name)
                            .ok_or_else(|| format!("no candidate is named {name:?}"))
                    })
                    .collect::<Result<_, _>>()?,
                retry_on: RetryOnJson::flags(&plan.retry_on),
                reason: plan.reason,
            }),
            DecisionJson::Reject(r) => Decision::Reject(Rejection {
                status: r.status,
                code: r.code,
                message: r.message,
            }),
        })
    }
}

/// The expected decision of a case. `targets`, `status` and `code` are always
/// compared; `retry_on`, `reason` and `message` only when present;
/// `reason_contains` and `message_contains` are substring checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ExpectJson {
    /// A route is expected.
    Route(ExpectRoute),
    /// A reject is expected.
    Reject(ExpectReject),
}

/// The expected plan of a case.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExpectRoute {
    /// Exactly these targets, in this order.
    pub targets: Vec<String>,
    /// These flags (in any order), when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<RetryOnJson>>,
    /// Exactly this reason, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A reason containing this, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_contains: Option<String>,
}

/// The expected rejection of a case.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExpectReject {
    /// This status.
    pub status: u16,
    /// This code.
    pub code: String,
    /// Exactly this message, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A message containing this, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_contains: Option<String>,
}

impl ExpectJson {
    /// Whether `decision` meets this expectation.
    pub fn matches(&self, decision: &DecisionJson) -> bool {
        match (self, decision) {
            (ExpectJson::Route(e), DecisionJson::Route(plan)) => {
                e.targets == plan.targets
                    && e.retry_on
                        .as_ref()
                        .is_none_or(|r| RetryOnJson::flags(r) == RetryOnJson::flags(&plan.retry_on))
                    && e.reason.as_ref().is_none_or(|r| *r == plan.reason)
                    && e.reason_contains
                        .as_ref()
                        .is_none_or(|r| plan.reason.contains(r.as_str()))
            }
            (ExpectJson::Reject(e), DecisionJson::Reject(r)) => {
                e.status == r.status
                    && e.code == r.code
                    && e.message.as_ref().is_none_or(|m| *m == r.message)
                    && e.message_contains
                        .as_ref()
                        .is_none_or(|m| r.message.contains(m.as_str()))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_default_every_field() {
        let req: Request =
            serde_json::from_str::<RequestJson>(r#"{"headers":{"X-Data-Residency":"eu"}}"#)
                .unwrap()
                .into();
        assert_eq!((req.id.as_str(), req.method.as_str()), ("test", "POST"));
        assert_eq!(req.path, "/v1/chat/completions");
        assert_eq!(
            req.header_list(),
            vec![("x-data-residency".to_owned(), "eu".to_owned())]
        );
        let cand = serde_json::from_str::<CandidateJson>(r#"{"upstream":"a"}"#).unwrap();
        let (catalog, cands) = candidates(&[cand]);
        assert_eq!(catalog.offer(0).unwrap().provider, ProviderKind::Openai);
        assert_eq!(cands[0].id, 0);
        assert_eq!(cands[0].state.health, Health::Healthy);
    }

    #[test]
    fn typos_are_refused() {
        assert!(serde_json::from_str::<RequestJson>(r#"{"tennant":"x"}"#).is_err());
        assert!(serde_json::from_str::<CandidateJson>(r#"{"state":{"healthy":true}}"#).is_err());
    }

    #[test]
    fn headers_a_gateway_could_not_receive_are_refused_on_read() {
        let err = serde_json::from_str::<RequestJson>(r#"{"headers":{"bad name":"x"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`bad name` is not a valid header name"),
            "{err}"
        );
        let err = serde_json::from_str::<RequestJson>(r#"{"headers":{"x-a":"caf\u00e9"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("header `x-a` is not visible ASCII"), "{err}");
        // The gateway never shows a policy credentials, so neither do the tools.
        for name in ["Authorization", "api-key", "x-api-key", "cookie"] {
            let text = format!(r#"{{"headers":{{"{name}":"secret"}}}}"#);
            let err = serde_json::from_str::<RequestJson>(&text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("never reaches a policy"), "{name}: {err}");
        }
    }

    #[test]
    fn decisions_round_trip_in_the_documented_shape() {
        let (catalog, _) = candidates(&[
            serde_json::from_str(r#"{"upstream":"a"}"#).unwrap(),
            serde_json::from_str(r#"{"upstream":"b"}"#).unwrap(),
        ]);
        let text = r#"{"route":{"targets":["b","a"],"retry_on":["connect-error","timeout","rate-limited","server-error"],"reason":"r"}}"#;
        let json: DecisionJson = serde_json::from_str(text).unwrap();
        let decision = json.clone().into_decision(&catalog).unwrap();
        let Decision::Route(plan) = &decision else {
            panic!("not a route")
        };
        assert_eq!(plan.targets, vec![1, 0]);
        assert_eq!(plan.retry_on, RetryOn::all());
        assert_eq!(
            serde_json::to_string(&DecisionJson::new(&decision, &catalog)).unwrap(),
            text
        );
        let unknown: DecisionJson =
            serde_json::from_str(r#"{"route":{"targets":["zz"]}}"#).unwrap();
        assert!(unknown.into_decision(&catalog).unwrap_err().contains("zz"));
        let reject = r#"{"reject":{"status":403,"code":"residency_violation","message":"m"}}"#;
        let json: DecisionJson = serde_json::from_str(reject).unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), reject);
    }

    #[test]
    fn expectations_compare_optional_fields_only_when_present() {
        let decision = DecisionJson::Route(PlanJson {
            targets: vec!["a".into()],
            retry_on: vec![RetryOnJson::Timeout],
            reason: "cheapest: $0.01".into(),
        });
        let expect = |t: &str| {
            serde_json::from_str::<ExpectJson>(t)
                .unwrap()
                .matches(&decision)
        };
        assert!(expect(r#"{"route":{"targets":["a"]}}"#));
        assert!(expect(
            r#"{"route":{"targets":["a"],"reason_contains":"$0.01","retry_on":["timeout"]}}"#
        ));
        assert!(!expect(r#"{"route":{"targets":["a"],"retry_on":[]}}"#));
        assert!(!expect(r#"{"route":{"targets":[]}}"#));
        assert!(!expect(r#"{"route":{"targets":["a"],"reason":"x"}}"#));
        assert!(!expect(r#"{"reject":{"status":403,"code":"x"}}"#));
    }
}
