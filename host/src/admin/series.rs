//! A metric family keyed by label values that are looked up by `&str`.
//!
//! prometheus-client's `Family::get_or_create` needs an owned label set for every
//! lookup, which means allocating label strings on every request. [`Series`] keeps
//! one map from owned label values to metric handles and looks it up with borrowed
//! `&str` values, so recording into an existing series is a hash, a shared read
//! lock and an atomic add: no allocation.
//!
//! The number of series per family is capped ([`MAX_SERIES`]). Label values come
//! from configuration names, so the cap is a safety net: past it, new label sets
//! are folded into a single series whose values are all [`OVERFLOW_VALUE`].

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Most label sets one family keeps before folding new ones into the overflow series.
pub(crate) const MAX_SERIES: usize = 2048;

/// Label value used for every label of the overflow series.
pub(crate) const OVERFLOW_VALUE: &str = "other";

/// A family of metrics of type `M`, one per set of `N` label values.
///
/// Cloning shares the family: register one clone in the registry, record through
/// another.
pub(crate) struct Series<M, const N: usize> {
    inner: Arc<Inner<M, N>>,
}

struct Inner<M, const N: usize> {
    names: [&'static str; N],
    new_metric: fn() -> M,
    metrics: RwLock<HashMap<Key<N>, M, foldhash::fast::RandomState>>,
}

impl<M, const N: usize> Clone for Series<M, N> {
    fn clone(&self) -> Self {
        Series {
            inner: self.inner.clone(),
        }
    }
}

impl<M, const N: usize> fmt::Debug for Series<M, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self
            .inner
            .metrics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Series")
            .field("labels", &self.inner.names)
            .field("len", &len)
            .finish()
    }
}

impl<M: Default, const N: usize> Series<M, N> {
    /// A family with the given label names whose metrics start at their default.
    pub(crate) fn new(names: [&'static str; N]) -> Self {
        Self::with_constructor(names, M::default)
    }
}

impl<M, const N: usize> Series<M, N> {
    /// A family with the given label names whose metrics are made by `new_metric`.
    pub(crate) fn with_constructor(names: [&'static str; N], new_metric: fn() -> M) -> Self {
        Series {
            inner: Arc::new(Inner {
                names,
                new_metric,
                metrics: RwLock::new(HashMap::default()),
            }),
        }
    }

    /// Runs `record` on the metric for `values`, creating it on first use.
    pub(crate) fn with<R>(&self, values: [&str; N], record: impl FnOnce(&M) -> R) -> R {
        let inner = &*self.inner;
        {
            let metrics = inner.metrics.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(metric) = metrics.get(&values as &dyn KeyView) {
                return record(metric);
            }
        }
        let mut metrics = inner
            .metrics
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let values =
            if metrics.len() >= MAX_SERIES && !metrics.contains_key(&values as &dyn KeyView) {
                [OVERFLOW_VALUE; N]
            } else {
                values
            };
        let metric = metrics
            .entry(Key(values.map(Box::from)))
            .or_insert_with(inner.new_metric);
        record(metric)
    }

    /// Drops every series whose label values `keep` refuses.
    pub(crate) fn retain(&self, keep: impl Fn(&[&str; N]) -> bool) {
        self.inner
            .metrics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|key, _| keep(&key.0.each_ref().map(|value| &**value)));
    }

    /// Number of label sets recorded so far.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner
            .metrics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl<M, const N: usize> TypedMetric for Series<M, N>
where
    M: TypedMetric,
{
    const TYPE: MetricType = M::TYPE;
}

impl<M, const N: usize> EncodeMetric for Series<M, N>
where
    M: EncodeMetric + TypedMetric,
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let metrics = self
            .inner
            .metrics
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        // Sorted output keeps scrapes stable and diffable.
        let mut entries: Vec<_> = metrics.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.0.cmp(&b.0.0));
        for (key, metric) in entries {
            let labels = Labels {
                names: &self.inner.names,
                values: &key.0,
            };
            metric.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// Owned label values, the map key.
#[derive(PartialEq, Eq)]
struct Key<const N: usize>([Box<str>; N]);

/// The label values of a key, borrowed or owned, so the map can be queried
/// with `[&str; N]` without building a [`Key`].
trait KeyView {
    fn value(&self, i: usize) -> &str;
    fn len(&self) -> usize;
}

impl<const N: usize> KeyView for Key<N> {
    fn value(&self, i: usize) -> &str {
        &self.0[i]
    }
    fn len(&self) -> usize {
        N
    }
}

impl<const N: usize> KeyView for [&str; N] {
    fn value(&self, i: usize) -> &str {
        self[i]
    }
    fn len(&self) -> usize {
        N
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for i in 0..self.len() {
            self.value(i).hash(state);
        }
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && (0..self.len()).all(|i| self.value(i) == other.value(i))
    }
}

impl Eq for dyn KeyView + '_ {}

// `Key` must hash exactly like its `dyn KeyView` for `Borrow` lookups to work.
impl<const N: usize> Hash for Key<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn KeyView).hash(state)
    }
}

impl<'a, const N: usize> Borrow<dyn KeyView + 'a> for Key<N> {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

/// Label names paired with one key's values, as prometheus-client encodes them.
struct Labels<'a, const N: usize> {
    names: &'a [&'static str; N],
    values: &'a [Box<str>; N],
}

impl<const N: usize> EncodeLabelSet for Labels<'_, N> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        let pairs: [(&str, &str); N] = std::array::from_fn(|i| (self.names[i], &*self.values[i]));
        pairs.encode(encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::registry::Registry;

    fn encode(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn retain_drops_the_series_it_refuses() {
        let series: Series<Counter, 1> = Series::new(["upstream"]);
        let mut registry = Registry::default();
        registry.register("h", "health", series.clone());
        series.with(["kept"], |c| c.inc());
        series.with(["removed"], |c| c.inc());
        series.retain(|[upstream]| *upstream == "kept");
        let text = encode(&registry);
        assert!(text.contains("upstream=\"kept\""), "{text}");
        assert!(!text.contains("removed"), "{text}");
    }

    #[test]
    fn borrowed_lookup_finds_the_owned_series() {
        let series: Series<Counter, 2> = Series::new(["a", "b"]);
        let mut registry = Registry::default();
        registry.register("t", "Test", series.clone());
        series.with(["x", "y"], |c| c.inc());
        series.with(["x", "y"], |c| c.inc());
        series.with(["x", "z"], |c| c.inc());
        // "xy" + "" must not collide with "x" + "y".
        series.with(["xy", ""], |c| c.inc());
        assert_eq!(series.len(), 3);
        let text = encode(&registry);
        assert!(text.contains("t_total{a=\"x\",b=\"y\"} 2\n"), "{text}");
        assert!(text.contains("t_total{a=\"x\",b=\"z\"} 1\n"), "{text}");
        assert!(text.contains("t_total{a=\"xy\",b=\"\"} 1\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let series: Series<Counter, 1> = Series::new(["a"]);
        let mut registry = Registry::default();
        registry.register("t", "Test", series.clone());
        series.with(["q\"uote\\\n"], |c| c.inc());
        let text = encode(&registry);
        assert!(text.contains(r#"t_total{a="q\"uote\\\n"} 1"#), "{text}");
    }

    #[test]
    fn series_past_the_cap_fold_into_overflow() {
        let series: Series<Counter, 1> = Series::new(["a"]);
        for i in 0..MAX_SERIES {
            series.with([&i.to_string()], |c| c.inc());
        }
        assert_eq!(series.len(), MAX_SERIES);
        series.with(["new-1"], |c| c.inc());
        series.with(["new-2"], |c| c.inc());
        // Existing series keep counting.
        series.with(["0"], |c| c.inc());
        assert_eq!(series.len(), MAX_SERIES + 1);
        assert_eq!(series.with([OVERFLOW_VALUE], |c| c.get()), 2);
        assert_eq!(series.with(["0"], |c| c.get()), 2);
    }
}
