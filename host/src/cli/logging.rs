//! Process-wide logging: `tracing` events to stderr, filtered `RUST_LOG`-style.
//!
//! - The filter comes from `RUST_LOG` (e.g. `RUST_LOG=switchyard=debug,hyper=warn`)
//!   and defaults to `info`.
//! - `--log-format text` (default) prints human-readable lines; `--log-format json`
//!   prints one JSON object per line with `timestamp`, `level`, `target`, the
//!   event's fields (including `message`) at the top level, and the current `span`.
//! - The gateway emits one access line per request at `INFO` under the target
//!   `switchyard::access` (request id, tenant, route, policy versions, upstream,
//!   attempts, status, latency, tokens). Silence it with
//!   `RUST_LOG=info,switchyard::access=off`, or keep only it with
//!   `RUST_LOG=warn,switchyard::access=info`.
//! - Admin requests are logged at `DEBUG` under `switchyard::admin`.
//!
//! Code that logs must never pass secrets as fields. As a second line of defence
//! (dependencies and policies log too), every line is scrubbed before it is
//! written: the value after `authorization`, `api-key`/`api_key`,
//! `x-amz-security-token` or `signature` (`:` or `=`), and the credential after
//! `Bearer `/`Basic `, are replaced by `[redacted]`, in text and JSON lines alike.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};

use anyhow::Context;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::{self, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Filter used when `RUST_LOG` is unset or empty.
const DEFAULT_FILTER: &str = "info";

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Installs the global subscriber: `RUST_LOG` filter (default `info`), `format`,
/// written to stderr. Also routes `log`-crate records from dependencies into it.
///
/// Fails when `RUST_LOG` is not a valid filter or a subscriber is already set.
pub fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref())?;
    let ansi = std::io::stderr().is_terminal();
    subscriber(format, filter, std::io::stderr, ansi)
        .try_init()
        .context("installing the log subscriber")
}

/// Parses a `RUST_LOG`-style directive string; `None` or blank means `info`.
fn filter_from(directives: Option<&str>) -> anyhow::Result<EnvFilter> {
    match directives.map(str::trim).filter(|d| !d.is_empty()) {
        None => Ok(EnvFilter::new(DEFAULT_FILTER)),
        Some(d) => EnvFilter::try_new(d).with_context(|| format!("invalid RUST_LOG filter {d:?}")),
    }
}

/// The subscriber `init` installs, writing to `writer`.
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let writer = Redacting(writer);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => {
            Box::new(registry.with(fmt::layer().with_writer(writer).with_ansi(ansi)))
        }
        LogFormat::Json => Box::new(
            registry.with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            ),
        ),
    }
}

/// Wraps a [`MakeWriter`] so every line passes through [`redact`]. The fmt layer
/// formats a whole event before one `write_all`, so each write is whole lines.
struct Redacting<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&redact(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// What replaces a secret.
const REDACTED: &[u8] = b"[redacted]";

/// Names whose value (after `:` or `=`) is a secret. Matched case-insensitively,
/// anywhere (so `X-Amz-Signature=` is covered by `signature`, and every name in
/// [`switchyard::headers::CREDENTIAL`] by one of these: a test checks).
const SECRET_NAMES: [&[u8]; 6] = [
    b"authorization",
    b"api-key",
    b"cookie",
    b"api_key",
    b"x-amz-security-token",
    b"signature",
];

/// Authorization schemes whose next word is a credential.
const SCHEMES: [&[u8]; 2] = [b"bearer", b"basic"];

/// `line` with every secret value replaced by `[redacted]` (borrowed when there
/// is none).
fn redact(line: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let (mut i, mut copied) = (0, 0);
    while i < line.len() {
        match secret_at(line, i) {
            Some((start, end)) => {
                let out = out.get_or_insert_with(|| Vec::with_capacity(line.len()));
                out.extend_from_slice(&line[copied..start]);
                out.extend_from_slice(REDACTED);
                (i, copied) = (end, end);
            }
            None => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(line),
        Some(mut out) => {
            out.extend_from_slice(&line[copied..]);
            Cow::Owned(out)
        }
    }
}

/// `j` moved past any ANSI colour sequences (`ESC [ … letter`) that start there.
fn skip_colour(line: &[u8], mut j: usize) -> usize {
    while line.get(j) == Some(&0x1b) && line.get(j + 1) == Some(&b'[') {
        let end = line[j + 2..]
            .iter()
            .position(u8::is_ascii_alphabetic)
            .map_or(line.len(), |at| j + 2 + at + 1);
        j = end;
    }
    j
}

/// The byte range of a secret value introduced at `i`, if one is.
fn secret_at(line: &[u8], i: usize) -> Option<(usize, usize)> {
    let rest = &line[i..];
    if let Some(scheme) = SCHEMES.iter().find(|s| starts_with_ignore_case(rest, s)) {
        let word_start = i == 0 || !line[i - 1].is_ascii_alphanumeric();
        let mut j = i + scheme.len();
        if !word_start || line.get(j) != Some(&b' ') {
            return None;
        }
        while line.get(j) == Some(&b' ') {
            j += 1;
        }
        return value_range(line, j, token_end(line, j));
    }
    let name = SECRET_NAMES
        .iter()
        .find(|n| starts_with_ignore_case(rest, n))?;
    // The key's closing quote (escaped in JSON lines), then `:` or `=`; on a
    // terminal, the fmt layer wraps the name and the `=` in colour codes.
    let mut j = skip_colour(line, i + name.len());
    while matches!(line.get(j), Some(b'"' | b'\\' | b'\'' | b' ')) {
        j = skip_colour(line, j + 1);
    }
    if !matches!(line.get(j), Some(b':' | b'=')) {
        return None;
    }
    j = skip_colour(line, j + 1);
    while line.get(j) == Some(&b' ') {
        j += 1;
    }
    let quote: &[u8] =
        if line[j..].starts_with(b"\\\"") {
            b"\\\""
        } else if line[j..].starts_with(b"\"") {
            b"\""
        } else {
            // An unquoted scheme (`authorization=Bearer abc`, SigV4's
            // `AWS4-HMAC-SHA256 Credential=…, Signature=…`): the scheme and
            // `signature` rules take what follows.
            if SCHEMES.iter().chain([&&b"aws4-hmac-sha256"[..]]).any(|s| {
                starts_with_ignore_case(&line[j..], s) && line.get(j + s.len()) == Some(&b' ')
            }) {
                return None;
            }
            return value_range(line, j, token_end(line, j));
        };
    let start = j + quote.len();
    let end = memchr::memmem::find(&line[start..], quote).map_or(line.len(), |n| start + n);
    value_range(line, start, end)
}

/// `start..end` unless it is empty or already redacted.
fn value_range(line: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    (end > start && !line[start..].starts_with(REDACTED)).then_some((start, end))
}

/// End of the unquoted value starting at `start`.
fn token_end(line: &[u8], start: usize) -> usize {
    line[start..]
        .iter()
        .position(|b| {
            b.is_ascii_whitespace()
                || matches!(
                    b,
                    b'"' | b'\'' | b'\\' | b',' | b';' | b'&' | b'}' | b')' | b']'
                )
        })
        .map_or(line.len(), |n| start + n)
}

fn starts_with_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.len() >= needle.len() && haystack[..needle.len()].eq_ignore_ascii_case(needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects everything written, so tests can read the log lines.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Capture {
        type Writer = Capture;
        fn make_writer(&'w self) -> Capture {
            self.clone()
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn emit(format: LogFormat, directives: Option<&str>) -> String {
        let capture = Capture::default();
        let sub = subscriber(
            format,
            filter_from(directives).unwrap(),
            capture.clone(),
            false,
        );
        tracing::subscriber::with_default(sub, || {
            tracing::info!(target: "switchyard::access", request_id = "req-1", status = 200u16, "request");
            tracing::debug!(target: "switchyard::gateway", "debug detail");
            tracing::warn!(target: "switchyard::gateway", upstream = "azure-eastus", "upstream degraded");
        });
        capture.text()
    }

    fn redacted(line: &str) -> String {
        String::from_utf8(redact(line.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn every_credential_header_is_redacted() {
        for name in switchyard::headers::CREDENTIAL {
            for line in [
                format!("{name}: s3cr3t-value"),
                format!("{{\"{name}\":\"s3cr3t value\"}}"),
                format!("headers={{\"{name}\": \"s3cr3t\"}}"),
            ] {
                let out = redacted(&line);
                assert!(!out.contains("s3cr3t"), "{name}: {line} -> {out}");
            }
        }
    }

    #[test]
    fn secrets_are_redacted_in_every_shape() {
        let cases = [
            (
                "authorization: Bearer sk-live-123",
                "authorization: Bearer [redacted]",
            ),
            (
                "auth=\"Bearer sk-live-123\" x=1",
                "auth=\"Bearer [redacted]\" x=1",
            ),
            (
                r#"{"authorization":"Bearer sk-1","b":2}"#,
                r#"{"authorization":"[redacted]","b":2}"#,
            ),
            (
                r#"headers={"api-key": "azkey-9", "x": "y"}"#,
                r#"headers={"api-key": "[redacted]", "x": "y"}"#,
            ),
            (
                r#"{"message":"sent \"api-key\": \"azkey-9\" upstream"}"#,
                r#"{"message":"sent \"api-key\": \"[redacted]\" upstream"}"#,
            ),
            ("api_key=azkey-9 next=1", "api_key=[redacted] next=1"),
            // On a terminal the fmt layer colours field names and the `=`.
            (
                "\x1b[3mapi_key\x1b[0m\x1b[2m=\x1b[0m\"azkey-9\" next=1",
                "\x1b[3mapi_key\x1b[0m\x1b[2m=\x1b[0m\"[redacted]\" next=1",
            ),
            (
                "Authorization: AWS4-HMAC-SHA256 Credential=AKID/20250101/eu-central-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=0a1b2c3d",
                "Authorization: AWS4-HMAC-SHA256 Credential=AKID/20250101/eu-central-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=[redacted]",
            ),
            (
                "GET /?X-Amz-Signature=abcdef&X-Amz-Security-Token=tok123 HTTP/1.1",
                "GET /?X-Amz-Signature=[redacted]&X-Amz-Security-Token=[redacted] HTTP/1.1",
            ),
            (
                "Authorization: Basic dXNlcjpwYXNz",
                "Authorization: Basic [redacted]",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(redacted(line), expected, "{line}");
            assert_eq!(redacted(expected), expected, "idempotent on {expected}");
        }
    }

    #[test]
    fn ordinary_lines_are_left_alone() {
        for line in [
            "api_key_env = \"AZURE_KEY\"",
            "the SigV4 signature is computed per request",
            "policy cost@1234abcd routed to azure-eastus",
            "request_id=\"req-1\" status=200 tokens_in=5",
            "unbearable latency",
        ] {
            assert!(
                matches!(redact(line.as_bytes()), Cow::Borrowed(_)),
                "{line} -> {}",
                redacted(line)
            );
        }
    }

    #[test]
    fn the_installed_writer_redacts_events() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let capture = Capture::default();
            let sub = subscriber(format, filter_from(None).unwrap(), capture.clone(), false);
            tracing::subscriber::with_default(sub, || {
                tracing::info!(authorization = "Bearer sk-live-123", "upstream call");
                tracing::warn!("guest said: api-key: azkey-9");
            });
            let out = capture.text();
            assert!(
                !out.contains("sk-live-123") && !out.contains("azkey-9"),
                "{out}"
            );
            assert_eq!(out.matches("[redacted]").count(), 2, "{out}");
        }
    }

    #[test]
    fn json_lines_carry_level_target_and_fields() {
        let out = emit(LogFormat::Json, None);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "debug is filtered out by default:\n{out}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["target"], "switchyard::access");
        assert_eq!(lines[0]["message"], "request");
        assert_eq!(lines[0]["request_id"], "req-1");
        assert_eq!(lines[0]["status"], 200);
        assert!(lines[0]["timestamp"].is_string());
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["upstream"], "azure-eastus");
    }

    #[test]
    fn text_lines_are_human_readable() {
        let out = emit(LogFormat::Text, None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].contains("INFO") && lines[0].contains("switchyard::access"),
            "{out}"
        );
        assert!(
            lines[0].contains("request_id=\"req-1\"") && lines[0].contains("status=200"),
            "{out}"
        );
        assert!(
            !out.contains('\u{1b}'),
            "no ANSI codes when not a terminal: {out:?}"
        );
    }

    #[test]
    fn directives_filter_by_target() {
        let out = emit(LogFormat::Text, Some("info,switchyard::access=off"));
        assert!(!out.contains("switchyard::access"), "{out}");
        assert!(out.contains("upstream degraded"), "{out}");

        let out = emit(LogFormat::Text, Some("switchyard::gateway=debug"));
        assert!(out.contains("debug detail"), "{out}");
        assert!(!out.contains("switchyard::access"), "{out}");

        assert!(
            emit(LogFormat::Text, Some("  ")).contains("request"),
            "blank means info"
        );
    }

    #[test]
    fn invalid_directives_are_an_error() {
        let err = filter_from(Some("switchyard=loud")).unwrap_err();
        assert!(format!("{err:#}").contains("RUST_LOG"), "{err:#}");
    }

    #[test]
    fn log_format_parses_from_the_command_line() {
        use clap::ValueEnum;
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", false), Ok(LogFormat::Text));
        assert!(LogFormat::from_str("yaml", false).is_err());
        assert_eq!(LogFormat::default(), LogFormat::Text);
    }
}
