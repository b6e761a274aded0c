//! [`Candidate`]: one upstream offered to a policy, as the host holds it (its
//! catalog id and whole live state), and the slimmer record that crosses into
//! the guest with each `decide` call.

use super::bindings::switchyard::policy::types::{self, LiveState};

/// One upstream that serves the requested model: its id in the
/// [`Catalog`](super::Catalog) and what the gateway knows about it now.
///
/// A `decide` call hands the guest only the id and the health; the guest reads
/// the rest of the state with `request.live-state(id)` if it needs it, so a
/// policy pays for lowering only what it reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The candidate's id: its offer in the catalog; plans name candidates by it.
    pub id: u32,
    /// Live state of the upstream when the decision was asked for.
    pub state: LiveState,
}

impl Candidate {
    /// The record the guest receives in `decide`'s candidate list.
    pub(crate) fn wire(&self) -> types::Candidate {
        types::Candidate {
            id: self.id,
            health: self.state.health,
        }
    }
}
