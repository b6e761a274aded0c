//! Errors of one upstream attempt, classified so the gateway can decide whether to
//! fall back, and errors of an upstream response body once it is streaming.
//!
//! Messages name the upstream's host at most: never a full URL (a query string may
//! carry a secret), a header value or a key.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// Why one upstream attempt produced no response headers.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// No connection could be established: refused, DNS failure, TLS handshake
    /// failure or connect timeout. The request was never sent, so it is **safe to
    /// retry** on this or another upstream (the plan's `connect-error` flag).
    #[error("could not connect to {host}: {cause}: {detail}")]
    Connect {
        /// The upstream's host (and port).
        host: String,
        /// What failed.
        cause: ConnectCause,
        /// The underlying error, without secrets.
        detail: String,
    },
    /// The connection broke after it was established and before the response
    /// headers: reset, closed, or a protocol error. The upstream may have seen the
    /// request, so a retry **may duplicate work**; treat it like a server error
    /// (the plan's `server-error` flag).
    #[error("the connection to {host} broke before the response headers: {detail}")]
    Broken {
        /// The upstream's host (and port).
        host: String,
        /// The underlying error, without secrets.
        detail: String,
    },
    /// The request could not be built or signed for this upstream (for example a
    /// credential that is not a valid header value). Nothing was sent, so it is
    /// **safe to retry** on another upstream; retrying this one will fail again.
    #[error("could not build the request for {host}: {detail}")]
    Request {
        /// The upstream's host (and port).
        host: String,
        /// What was wrong, without secrets.
        detail: String,
    },
}

/// The kind of an [`AttemptError`], for matching without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptErrorKind {
    /// See [`AttemptError::Connect`].
    Connect,
    /// See [`AttemptError::Broken`].
    Broken,
    /// See [`AttemptError::Request`].
    Request,
}

/// What part of establishing a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectCause {
    /// The upstream refused the TCP connection.
    Refused,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake failed (certificate, protocol, or a non-TLS server).
    Tls,
    /// Connecting (TCP and TLS together) took longer than the connect timeout.
    Timeout,
    /// Any other failure to connect (unreachable network, …).
    Other,
}

impl ConnectCause {
    /// A short name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectCause::Refused => "connection refused",
            ConnectCause::Dns => "DNS lookup failed",
            ConnectCause::Tls => "TLS handshake failed",
            ConnectCause::Timeout => "connect timed out",
            ConnectCause::Other => "connection failed",
        }
    }
}

impl fmt::Display for ConnectCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AttemptError {
    /// The error's kind.
    pub fn kind(&self) -> AttemptErrorKind {
        match self {
            AttemptError::Connect { .. } => AttemptErrorKind::Connect,
            AttemptError::Broken { .. } => AttemptErrorKind::Broken,
            AttemptError::Request { .. } => AttemptErrorKind::Request,
        }
    }

    /// Whether no connection could be established (the plan's `connect-error`).
    pub fn is_connect(&self) -> bool {
        self.kind() == AttemptErrorKind::Connect
    }

    /// Whether the upstream certainly never received the request, so another
    /// attempt cannot duplicate work.
    pub fn is_retry_safe(&self) -> bool {
        matches!(
            self.kind(),
            AttemptErrorKind::Connect | AttemptErrorKind::Request
        )
    }

    /// The connect failure's cause, for [`AttemptError::Connect`].
    pub fn connect_cause(&self) -> Option<ConnectCause> {
        match self {
            AttemptError::Connect { cause, .. } => Some(*cause),
            _ => None,
        }
    }

    /// The upstream host the error is about.
    pub fn host(&self) -> &str {
        match self {
            AttemptError::Connect { host, .. }
            | AttemptError::Broken { host, .. }
            | AttemptError::Request { host, .. } => host,
        }
    }

    /// Classifies an error of the pooled client. `connect` says whether it arose
    /// while establishing the connection.
    pub(crate) fn from_client(
        host: &str,
        connect: bool,
        err: &(dyn StdError + 'static),
    ) -> AttemptError {
        if connect {
            AttemptError::Connect {
                host: host.to_string(),
                cause: connect_cause(err),
                detail: describe(err),
            }
        } else {
            AttemptError::Broken {
                host: host.to_string(),
                detail: describe(err),
            }
        }
    }
}

/// The connector's own timeout error (TCP and TLS together took too long).
#[derive(Debug, thiserror::Error)]
#[error("no connection within {0} ms")]
pub(crate) struct ConnectTimeout(pub(crate) u128);

/// The error and its causes. `io::Error` reports its inner error's `source()` as
/// its own and hides the inner error itself, so step into it explicitly (TLS
/// errors arrive as a rustls error inside an io error inside another).
fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e);
        next = match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    out
}

fn connect_cause(err: &(dyn StdError + 'static)) -> ConnectCause {
    for e in chain(err) {
        if e.is::<ConnectTimeout>() {
            return ConnectCause::Timeout;
        }
        if e.is::<rustls::Error>() {
            return ConnectCause::Tls;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return ConnectCause::Refused,
                io::ErrorKind::TimedOut => return ConnectCause::Timeout,
                _ => {}
            }
        }
        // hyper-util's `ConnectError` displays only its static message.
        if e.to_string() == "dns error" {
            return ConnectCause::Dns;
        }
    }
    ConnectCause::Other
}

/// The messages of an error chain joined by ": ", skipping repeats. None of the
/// errors involved (hyper, hyper-util, rustls, io) print URLs or header values.
fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in chain(err) {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Why an upstream response body stopped before its end.
#[derive(Debug, thiserror::Error)]
#[error("upstream response body {kind}: {detail}")]
pub struct BodyError {
    kind: BodyErrorKind,
    detail: String,
}

/// The kind of a [`BodyError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyErrorKind {
    /// The connection or stream was reset or closed mid-body.
    Reset,
    /// The transport timed out while reading the body.
    Timeout,
    /// The upstream broke the HTTP protocol.
    Protocol,
}

impl fmt::Display for BodyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyErrorKind::Reset => "was cut off",
            BodyErrorKind::Timeout => "timed out",
            BodyErrorKind::Protocol => "broke the HTTP protocol",
        })
    }
}

impl BodyError {
    /// A body error of `kind` with a description (which must hold no secrets).
    pub fn new(kind: BodyErrorKind, detail: impl Into<String>) -> BodyError {
        BodyError {
            kind,
            detail: detail.into(),
        }
    }

    /// Classifies an error from hyper while reading a response body.
    pub fn from_hyper(err: hyper::Error) -> BodyError {
        let kind = if err.is_timeout() {
            BodyErrorKind::Timeout
        } else if err.is_parse() {
            BodyErrorKind::Protocol
        } else {
            BodyErrorKind::Reset
        };
        BodyError::new(kind, describe(&err))
    }

    /// The error's kind.
    pub fn kind(&self) -> BodyErrorKind {
        self.kind
    }

    /// Whether the upstream cut the body off (reset or closed connection).
    pub fn is_reset(&self) -> bool {
        self.kind == BodyErrorKind::Reset
    }

    /// Whether reading the body timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == BodyErrorKind::Timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("dns error")]
    struct FakeDns(#[source] io::Error);

    #[test]
    fn causes_are_found_in_the_chain() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(connect_cause(&refused), ConnectCause::Refused);

        let dns = FakeDns(io::Error::other("failed to lookup address information"));
        assert_eq!(connect_cause(&dns), ConnectCause::Dns);

        let tls = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(connect_cause(&tls), ConnectCause::Tls);
        // As hyper-rustls reports it: wrapped once more.
        let nested = io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::DecryptError,
        ));
        assert_eq!(connect_cause(&nested), ConnectCause::Tls);

        assert_eq!(connect_cause(&ConnectTimeout(5)), ConnectCause::Timeout);
        assert_eq!(
            connect_cause(&io::Error::other("weird")),
            ConnectCause::Other
        );
    }

    #[test]
    fn describe_joins_without_repeats() {
        let tls = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        let text = describe(&tls);
        assert!(text.contains("cannot decrypt"), "{text}");
        assert_eq!(text.matches("cannot decrypt").count(), 1, "{text}");
    }

    #[test]
    fn kinds_and_retry_safety() {
        let connect = AttemptError::from_client(
            "h:1",
            true,
            &io::Error::from(io::ErrorKind::ConnectionRefused),
        );
        assert!(connect.is_connect() && connect.is_retry_safe());
        assert_eq!(connect.connect_cause(), Some(ConnectCause::Refused));
        assert_eq!(connect.host(), "h:1");
        let broken = AttemptError::from_client(
            "h:1",
            false,
            &io::Error::from(io::ErrorKind::ConnectionReset),
        );
        assert_eq!(broken.kind(), AttemptErrorKind::Broken);
        assert!(!broken.is_retry_safe());
    }
}
