//! Reading `/metrics`: the OpenMetrics text parsed into series and values.

use std::collections::HashMap;
use std::time::Duration;

/// One scrape of `/metrics`: series (`name` plus sorted labels) → value.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    samples: HashMap<(String, Vec<(String, String)>), f64>,
    /// The raw text.
    pub text: String,
}

impl Scrape {
    /// Parses the exposition text.
    pub fn parse(text: &str) -> Scrape {
        let mut samples = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), Vec::new()),
                Some((name, rest)) => (name.to_string(), labels(rest.trim_end_matches('}'))),
            };
            samples.insert((name, labels), value);
        }
        Scrape {
            samples,
            text: text.to_string(),
        }
    }

    /// The value of `name{labels}` (labels in any order), if the series exists.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut key: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        key.sort();
        self.samples.get(&(name.to_string(), key)).copied()
    }

    /// Like [`Scrape::find`], 0 for a series not exported yet.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).unwrap_or(0.0)
    }

    /// Every series of `name` as (labels, value).
    pub fn family(&self, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        self.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), v)| (labels.clone(), *v))
            .collect()
    }
}

/// `a="x",b="y"` → sorted pairs (values here never hold quotes or commas).
fn labels(text: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = text
        .split("\",")
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
            (k.to_string(), v.trim_end_matches('"').to_string())
        })
        .collect();
    pairs.sort();
    pairs
}

/// Scrapes `GET {admin}/metrics` (no token).
pub async fn scrape(admin_url: &str) -> Scrape {
    let res = reqwest::get(format!("{admin_url}/metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    Scrape::parse(&res.text().await.unwrap())
}

/// Scrapes until `done` holds (the observe worker runs after responses), up to
/// a generous bound; returns the last scrape either way.
pub async fn scrape_until(admin_url: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let scrape = scrape(admin_url).await;
        if done(&scrape) || tokio::time::Instant::now() > deadline {
            return scrape;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[test]
fn parses_counters_histograms_and_labels_in_any_order() {
    let s = Scrape::parse(
        "# TYPE x counter\nx_total{a=\"1\",b=\"two\"} 3\nh_bucket{le=\"0.5\",route=\"chat\"} 2\nplain 0.25\n# EOF\n",
    );
    assert_eq!(s.find("x_total", &[("b", "two"), ("a", "1")]), Some(3.0));
    assert_eq!(s.get("h_bucket", &[("route", "chat"), ("le", "0.5")]), 2.0);
    assert_eq!(s.get("plain", &[]), 0.25);
    assert_eq!(s.get("missing", &[]), 0.0);
}
