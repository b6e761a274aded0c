//! Per-instance caches of what never changes while an instance lives: the
//! offers behind candidate ids and the policy's config values. A warm call
//! then copies nothing from the host for them.
//!
//! Entries are leaked on purpose, so callers get `&'static` values: the host
//! hands out a bounded set of ids and a policy reads a bounded set of config
//! keys, and the memory goes when the host retires the instance.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::Offer;
use crate::bindings::switchyard::policy::host;

thread_local! {
    static OFFERS: RefCell<Vec<Option<&'static Offer>>> = const { RefCell::new(Vec::new()) };
    static CONFIG: RefCell<HashMap<String, Option<&'static str>>> = RefCell::new(HashMap::new());
}

/// The offer with candidate id `id`, read from the host once.
pub(crate) fn offer(id: u32) -> &'static Offer {
    let slot = id as usize;
    if let Some(offer) = OFFERS.with_borrow(|offers| offers.get(slot).copied().flatten()) {
        return offer;
    }
    let offer: &'static Offer = Box::leak(Box::new(host::offer_of(id)));
    OFFERS.with_borrow_mut(|offers| {
        if offers.len() <= slot {
            offers.resize(slot + 1, None);
        }
        offers[slot] = Some(offer);
    });
    offer
}

/// Config value `key`, read from the host once.
pub(crate) fn config(key: &str) -> Option<&'static str> {
    if let Some(value) = CONFIG.with_borrow(|config| config.get(key).copied()) {
        return value;
    }
    let value = host::config(key).map(|v| &*Box::leak(v.into_boxed_str()));
    CONFIG.with_borrow_mut(|config| config.insert(key.to_owned(), value));
    value
}
