//! The bounded body read and the request view: what the gateway and its policies
//! need to know about a request body, taken in one pass over the JSON.
//!
//! The body is parsed shallowly: each top-level member is kept as a raw slice of
//! the original bytes. Reading `model`, `stream` and the token limits needs no
//! second parse, and rewriting `model` for an upstream re-joins the raw slices, so
//! everything else reaches the upstream byte for byte.

use std::borrow::Cow;
use std::fmt;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Why a request body was refused. None of these may be retried unchanged.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// The body exceeds `max_request_body_bytes` (413 `body_too_large`).
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The client's body stream failed before it ended (400 `invalid_request`).
    #[error("reading the request body failed: {0}")]
    Read(String),
    /// The body did not arrive within `body_read_timeout_ms` (408 `request_timeout`).
    #[error("the request body did not arrive within {timeout_ms} ms")]
    TimedOut {
        /// The configured timeout.
        timeout_ms: u64,
    },
    /// The body is not a JSON object (400 `invalid_json`).
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// `model` is absent, empty or not a string (400 `missing_model`).
    #[error("{0}")]
    MissingModel(&'static str),
}

/// How much of a declared `content-length` is reserved before any of it arrives;
/// a larger body grows the buffer as its bytes come.
const RESERVE_AHEAD: u64 = 64 * 1024;

/// Reads a request body, refusing it as soon as it passes `limit` bytes (whether
/// the client declared a `content-length` or streams it chunked).
pub async fn read_bounded<B>(
    body: B,
    declared_len: Option<u64>,
    limit: u64,
) -> Result<Bytes, RequestBodyError>
where
    B: Body<Data = Bytes>,
    B::Error: fmt::Display,
{
    if declared_len.is_some_and(|len| len > limit) {
        return Err(RequestBodyError::TooLarge { limit });
    }
    let mut body = std::pin::pin!(body);
    // Room for the declared length, but not for more than arrives: a client that
    // declares 10 MiB and sends nothing must not hold 10 MiB until it times out.
    let capacity = declared_len.unwrap_or(0).min(limit).min(RESERVE_AHEAD) as usize;
    let mut buf = BytesMut::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| RequestBodyError::Read(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(RequestBodyError::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// The parts of an OpenAI-style request body the gateway uses.
#[derive(Debug)]
pub struct RequestView {
    body: Bytes,
    /// Byte ranges of each top-level member: (key as written, raw value).
    members: Vec<Member>,
    model: String,
    streaming: bool,
    /// The client set `stream_options.include_usage` to true.
    client_asked_usage: bool,
    max_output_tokens: Option<u32>,
    input_tokens_estimate: u32,
}

#[derive(Debug)]
struct Member {
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
    kind: MemberKind,
}

/// The members a rewrite may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberKind {
    Model,
    StreamOptions,
    Other,
}

/// `stream_options` as far as the gateway reads it.
#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// The `stream_options` the gateway sends for a client that did not ask for
/// usage: the upstream then ends the stream with a usage-only chunk, which the
/// gateway reads and keeps from the client (see `stream::events`).
const USAGE_REQUESTED: &[u8] = br#"{"include_usage":true}"#;

impl RequestView {
    /// Parses a JSON request body.
    pub fn parse(body: Bytes) -> Result<RequestView, RequestBodyError> {
        // One UTF-8 check of the whole body up front: parsed from bytes, serde_json
        // would check each raw member again when it hands it out as `str`.
        let text = std::str::from_utf8(&body)
            .map_err(|e| RequestBodyError::InvalidJson(format!("the body is not UTF-8: {e}")))?;
        let top: TopLevel<'_> = {
            let mut de = serde_json::Deserializer::from_str(text);
            let top = de
                .deserialize_map(TopLevelVisitor)
                .map_err(|e| RequestBodyError::InvalidJson(e.to_string()))?;
            de.end()
                .map_err(|e| RequestBodyError::InvalidJson(e.to_string()))?;
            top
        };
        if nesting_exceeds(&body, MAX_NESTING) {
            return Err(RequestBodyError::InvalidJson(format!(
                "nesting deeper than {MAX_NESTING} levels"
            )));
        }
        let base = body.as_ptr() as usize;
        let range_of = |s: &str| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let mut model = None;
        let mut streaming = None;
        let mut stream_options = None;
        let mut max_completion = None;
        let mut max_tokens = None;
        let mut prompt_bytes = 0usize;
        let mut members = Vec::with_capacity(top.0.len());
        for (key, raw, key_raw) in &top.0 {
            let text = raw.get();
            // A member the gateway acts on must be there once: an upstream that
            // kept the other copy would serve what no policy approved.
            let twice =
                |name: &str| RequestBodyError::InvalidJson(format!("`{name}` appears twice"));
            let mut kind = MemberKind::Other;
            match key.as_ref() {
                "model" => {
                    let value: Cow<'_, str> = serde_json::from_str(text)
                        .map_err(|_| RequestBodyError::MissingModel("`model` must be a string"))?;
                    if model.replace(value.into_owned()).is_some() {
                        return Err(twice("model"));
                    }
                    kind = MemberKind::Model;
                }
                "stream" => {
                    let value = match text {
                        "true" => true,
                        "false" | "null" => false,
                        _ => {
                            return Err(RequestBodyError::InvalidJson(
                                "`stream` must be a boolean".into(),
                            ));
                        }
                    };
                    if streaming.replace(value).is_some() {
                        return Err(twice("stream"));
                    }
                }
                "stream_options" => {
                    let value: Option<StreamOptions> =
                        serde_json::from_str(text).map_err(|_| {
                            RequestBodyError::InvalidJson(
                                "`stream_options` must be an object with a boolean `include_usage`"
                                    .into(),
                            )
                        })?;
                    if stream_options.replace(value).is_some() {
                        return Err(twice("stream_options"));
                    }
                    kind = MemberKind::StreamOptions;
                }
                "max_completion_tokens" => max_completion = parse_token_limit(text),
                "max_tokens" => max_tokens = parse_token_limit(text),
                "messages" | "input" | "prompt" => prompt_bytes += text.len(),
                _ => {}
            }
            members.push(Member {
                key: range_of(key_raw),
                value: range_of(text),
                kind,
            });
        }
        let model = match model {
            Some(model) if !model.is_empty() => model,
            Some(_) => return Err(RequestBodyError::MissingModel("`model` must not be empty")),
            None => return Err(RequestBodyError::MissingModel("the request has no `model`")),
        };
        drop(top);
        let client_asked_usage = stream_options
            .flatten()
            .and_then(|options| options.include_usage)
            .unwrap_or(false);
        Ok(RequestView {
            body,
            members,
            model,
            streaming: streaming.unwrap_or(false),
            client_asked_usage,
            max_output_tokens: max_completion.or(max_tokens),
            input_tokens_estimate: u32::try_from(prompt_bytes.div_ceil(4)).unwrap_or(u32::MAX),
        })
    }

    /// The model the client asked for.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the client asked for an SSE stream.
    pub fn streaming(&self) -> bool {
        self.streaming
    }

    /// `max_completion_tokens`, else `max_tokens`, when set.
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.max_output_tokens
    }

    /// About a token for every 4 bytes of the prompt (`messages`, `input` or `prompt`).
    pub fn input_tokens_estimate(&self) -> u32 {
        self.input_tokens_estimate
    }

    /// Size of the body in bytes.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Whether the client asked for a stream without its usage: the gateway
    /// then asks the upstream for it (`stream_options.include_usage`), so that
    /// tokens and cost are counted, and keeps the usage chunk from the client.
    pub fn adds_usage_request(&self) -> bool {
        self.streaming && !self.client_asked_usage
    }

    /// The body to send to an upstream that calls the model `upstream_model`,
    /// with `stream_options.include_usage` set when `request_usage` is true: the
    /// original bytes when nothing changes, else the same members with `model`
    /// (and `stream_options`) replaced.
    pub fn body_for(&self, upstream_model: &str, request_usage: bool) -> Bytes {
        if upstream_model == self.model && !request_usage {
            return self.body.clone();
        }
        let mut out =
            Vec::with_capacity(self.body.len() + upstream_model.len() + USAGE_REQUESTED.len() + 20);
        out.push(b'{');
        let mut usage_written = false;
        for (i, member) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&self.body[member.key.clone()]);
            out.push(b':');
            let value = &self.body[member.value.clone()];
            match member.kind {
                MemberKind::Model => serde_json::to_writer(&mut out, upstream_model)
                    .expect("writing to a Vec cannot fail"),
                MemberKind::StreamOptions if request_usage => {
                    with_usage_requested(value, &mut out);
                    usage_written = true;
                }
                _ => out.extend_from_slice(value),
            }
        }
        if request_usage && !usage_written {
            if !self.members.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(b"\"stream_options\":");
            out.extend_from_slice(USAGE_REQUESTED);
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

/// Writes the client's `stream_options` object with `include_usage` set to
/// true and its other members kept (`null` becomes the object itself).
fn with_usage_requested(value: &[u8], out: &mut Vec<u8>) {
    let mut options: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(value).unwrap_or_default();
    options.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
    serde_json::to_writer(out, &options).expect("writing to a Vec cannot fail");
}

/// The deepest nesting of arrays and objects accepted in a body, as serde_json's
/// own default. Raw members are skipped without recursion, so a deeper body would
/// parse; it is refused so that no upstream has to cope with it either.
pub const MAX_NESTING: usize = 128;

/// Whether valid JSON `body` nests arrays and objects deeper than `max`: one pass
/// over the bytes, skipping strings.
fn nesting_exceeds(body: &[u8], max: usize) -> bool {
    // Nesting deeper than `max` needs more than `max` opening brackets. Counting
    // them is a simple loop the compiler vectorizes; nearly every request has
    // far fewer, and then the byte-by-byte walk below is not needed.
    let openings = body.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if openings <= max {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn parse_token_limit(text: &str) -> Option<u32> {
    text.parse::<u64>()
        .ok()
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// Top-level members: (unescaped key, raw value, key as written with its quotes).
struct TopLevel<'a>(Vec<(Cow<'a, str>, &'a RawValue, &'a str)>);

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        // Keys are read raw so that the rewrite can copy them exactly as written.
        while let Some(key_raw) = map.next_key::<&'de RawValue>()? {
            let key = unquote(key_raw.get()).map_err(serde::de::Error::custom)?;
            let value: &'de RawValue = map.next_value()?;
            members.push((key, value, key_raw.get()));
        }
        Ok(TopLevel(members))
    }
}

/// The text of `raw`, a JSON string as written (quotes included). Without a
/// backslash it is the text between the quotes; escapes need a real parse.
fn unquote(raw: &str) -> Result<Cow<'_, str>, serde_json::Error> {
    match raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Ok(Cow::Borrowed(inner)),
        _ => serde_json::from_str(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(json: &str) -> Result<RequestView, RequestBodyError> {
        RequestView::parse(Bytes::from(json.to_string()))
    }

    #[test]
    fn reads_model_stream_and_limits() {
        let v = view(r#"{"model":"gpt-4o","stream":true,"max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}"#)
            .unwrap();
        assert_eq!(v.model(), "gpt-4o");
        assert!(v.streaming());
        assert_eq!(v.max_output_tokens(), Some(100));
        assert!(v.input_tokens_estimate() > 0);
    }

    #[test]
    fn max_completion_tokens_wins() {
        let v = view(r#"{"model":"m","max_tokens":100,"max_completion_tokens":7}"#).unwrap();
        assert_eq!(v.max_output_tokens(), Some(7));
    }

    #[test]
    fn rewrite_keeps_everything_else_byte_for_byte() {
        let body = r#"{ "messages" : [ {"role":"user","content":"a\"b"} ], "model":"gpt-4o", "x":{"y":1.50} }"#;
        let v = view(body).unwrap();
        let rewritten = v.body_for("openai.gpt-oss-120b-1:0", false);
        let text = std::str::from_utf8(&rewritten).unwrap();
        assert_eq!(
            text,
            r#"{"messages":[ {"role":"user","content":"a\"b"} ],"model":"openai.gpt-oss-120b-1:0","x":{"y":1.50}}"#
        );
        let same = v.body_for("gpt-4o", false);
        assert_eq!(&same[..], body.as_bytes());
    }

    #[test]
    fn a_stream_without_usage_asks_the_upstream_for_it() {
        let plain = view(r#"{"model":"m","stream":true,"messages":[]}"#).unwrap();
        assert!(plain.adds_usage_request());
        let sent: serde_json::Value = serde_json::from_slice(&plain.body_for("m", true)).unwrap();
        assert_eq!(
            sent["stream_options"],
            serde_json::json!({"include_usage": true})
        );
        assert_eq!(sent["messages"], serde_json::json!([]));

        // The client's other options stay; false and null become true.
        for options in [r#"{"include_usage":false,"x":1}"#, "null", "{}"] {
            let body = format!(r#"{{"model":"m","stream":true,"stream_options":{options}}}"#);
            let v = view(&body).unwrap();
            assert!(v.adds_usage_request(), "{options}");
            let sent: serde_json::Value =
                serde_json::from_slice(&v.body_for("other", true)).unwrap();
            assert_eq!(sent["stream_options"]["include_usage"], true, "{options}");
            assert_eq!(sent["model"], "other");
            if options.contains("\"x\"") {
                assert_eq!(sent["stream_options"]["x"], 1);
            }
        }

        // Asked for by the client, or not a stream: nothing to add.
        let asked =
            view(r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert!(!asked.adds_usage_request());
        assert!(!view(r#"{"model":"m"}"#).unwrap().adds_usage_request());
    }

    #[test]
    fn members_the_gateway_acts_on_must_appear_once() {
        for body in [
            r#"{"model":"cheap","model":"expensive"}"#,
            r#"{"model":"m","stream":false,"stream":true}"#,
            r#"{"model":"m","stream_options":{},"stream_options":{}}"#,
        ] {
            match view(body) {
                Err(RequestBodyError::InvalidJson(message)) => {
                    assert!(message.contains("twice"), "{body}: {message}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(matches!(
            view(r#"{"model":"m","stream_options":3}"#),
            Err(RequestBodyError::InvalidJson(_))
        ));
    }

    #[test]
    fn escaped_keys_survive_rewrite() {
        let v = view(r#"{"mod\u0065l":"a","k\"q":1}"#).unwrap();
        assert_eq!(v.model(), "a");
        let out = v.body_for("b", false);
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["model"], "b");
        assert_eq!(parsed["k\"q"], 1);
    }

    #[test]
    fn refuses_bad_bodies() {
        assert!(matches!(
            view("not json"),
            Err(RequestBodyError::InvalidJson(_))
        ));
        assert!(matches!(
            view("[1,2]"),
            Err(RequestBodyError::InvalidJson(_))
        ));
        assert!(matches!(
            view(r#"{"model":"a"} trailing"#),
            Err(RequestBodyError::InvalidJson(_))
        ));
        assert!(matches!(
            view(r#"{"messages":[]}"#),
            Err(RequestBodyError::MissingModel(_))
        ));
        assert!(matches!(
            view(r#"{"model":42}"#),
            Err(RequestBodyError::MissingModel(_))
        ));
        assert!(matches!(
            view(r#"{"model":""}"#),
            Err(RequestBodyError::MissingModel(_))
        ));
        assert!(matches!(
            view(r#"{"model":"a","stream":"yes"}"#),
            Err(RequestBodyError::InvalidJson(_))
        ));
        // A raw control character is not allowed in a key (nor anywhere in a string).
        assert!(matches!(
            view("{\"mo\tdel\":\"a\"}"),
            Err(RequestBodyError::InvalidJson(_))
        ));
    }

    #[test]
    fn nesting_up_to_the_limit_is_accepted() {
        let at_limit = format!(
            r#"{{"model":"a","x":{}{}}}"#,
            "[".repeat(MAX_NESTING - 1),
            "]".repeat(MAX_NESTING - 1)
        );
        assert!(view(&at_limit).is_ok());
        // Many brackets side by side are not deep.
        let wide = format!(
            r#"{{"model":"a","x":[{}0]}}"#,
            "[],".repeat(10 * MAX_NESTING)
        );
        assert!(view(&wide).is_ok());
        // Brackets inside strings do not count.
        let quoted = format!(r#"{{"model":"a","x":"{}"}}"#, "[".repeat(10 * MAX_NESTING));
        assert!(view(&quoted).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let deep = format!(
            r#"{{"model":"a","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(view(&deep), Err(RequestBodyError::InvalidJson(_))));
        let within = format!(
            r#"{{"model":"a","x":{}"[{{\"]"{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(view(&within).is_ok(), "{within}");
    }

    #[test]
    fn invalid_utf8_is_invalid_json() {
        let mut body = br#"{"model":"a","messages":""#.to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(br#""}"#);
        assert!(matches!(
            RequestView::parse(Bytes::from(body)),
            Err(RequestBodyError::InvalidJson(_))
        ));
    }
}
