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
//! Nothing here redacts: code that logs must never pass secrets (keys,
//! `authorization`, `api-key`, signatures) as fields.

use std::io::IsTerminal;

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
