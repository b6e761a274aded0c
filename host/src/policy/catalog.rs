//! [`Catalog`]: the offers candidates are numbered against.
//!
//! A candidate crosses into a policy as an id and its live state; the fixed
//! facts (upstream name, provider, region, jurisdiction, tags, prices) are the
//! offer with that id, which a guest reads once through `host.offer` and keeps.
//! An instance therefore serves one catalog for its whole life: the engine
//! retires pooled instances that were made for another one.

use std::sync::Arc;

use super::types::Offer;

/// Every upstream-and-model pair a config (or a test case) offers, numbered
/// from 0. Compare catalogs by pointer: a snapshot keeps its predecessor's
/// catalog when the offers did not change, so warm instances stay warm.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalog {
    offers: Vec<Offer>,
}

impl Catalog {
    /// A catalog of `offers`; an offer's id is its position.
    pub fn new(offers: Vec<Offer>) -> Arc<Catalog> {
        Arc::new(Catalog { offers })
    }

    /// Every offer, by id.
    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    /// The offer with this id.
    pub fn offer(&self, id: u32) -> Option<&Offer> {
        self.offers.get(id as usize)
    }

    /// The upstream name of offer `id`, or `#id` when there is none.
    pub fn upstream_name(&self, id: u32) -> std::borrow::Cow<'_, str> {
        match self.offer(id) {
            Some(offer) => offer.upstream.as_str().into(),
            None => format!("#{id}").into(),
        }
    }

    /// The id of the first offer of upstream `name`.
    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.offers
            .iter()
            .position(|o| o.upstream == name)
            .map(|i| i as u32)
    }
}
