//! Header names with one meaning at every boundary of the gateway: those that
//! carry a credential and those that describe one hop. The policies' view of a
//! request, the upstream request, the client's response and the log scrubber
//! each build on these lists, so a name added here is kept out everywhere.

use http::header::GetAll;
use http::header::{
    AUTHORIZATION, CONNECTION, COOKIE, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderName, HeaderValue};

/// Client request headers that carry a credential. A policy never sees them
/// and they are never sent upstream: the gateway checks the client's key
/// itself, and each upstream gets the gateway's own.
pub const CREDENTIAL: [HeaderName; 5] = [
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-api-key"),
    COOKIE,
];

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// and are never forwarded in either direction. The headers a message's
/// `Connection` header names are hop-by-hop too.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TRANSFER_ENCODING,
    TE,
    TRAILER,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// Whether `name` carries a client credential ([`CREDENTIAL`]).
pub fn is_credential(name: &HeaderName) -> bool {
    CREDENTIAL.contains(name)
}

/// Whether `name` describes one hop ([`HOP_BY_HOP`]).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// The header names a message's `Connection` header lists (its values as
/// `headers.get_all(CONNECTION)`): those headers describe one hop and go no
/// further, in either direction (RFC 9110 §7.6.1).
pub fn connection_tokens<'a>(
    connection: &GetAll<'a, HeaderValue>,
) -> impl Iterator<Item = &'a str> {
    connection
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
}
