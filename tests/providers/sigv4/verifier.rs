//! An AWS Signature Version 4 verifier written from the specification, with no
//! code shared with the signer the gateway uses: canonical request → string to
//! sign → signing key (HMAC-SHA256 over date, region, service, `aws4_request`)
//! → signature. Checked against vectors of AWS's published SigV4 test suite.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::providers::support::Recorded;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Who must have signed, and what the signature must cover.
pub struct Signer<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// The `x-amz-security-token` expected (and then required to be signed).
    pub session_token: Option<&'a str>,
    /// Headers that must be among `SignedHeaders`.
    pub must_sign: &'a [&'a str],
}

/// Why a request does not verify.
#[derive(Debug, PartialEq)]
pub enum Rejected {
    /// Missing or unparsable `Authorization`, `x-amz-date`, signed header or path.
    Malformed(String),
    /// The credential scope names another key, day, region or service.
    Scope(String),
    /// A header that must be signed is not in `SignedHeaders`.
    Unsigned(String),
    /// `x-amz-content-sha256` is not the SHA-256 of the body received.
    PayloadHash,
    /// `x-amz-security-token` is not the expected one (or is unexpected).
    Token,
    /// The signature differs from the one computed here.
    Signature { canonical_request: String },
}

/// The intermediate results of a successful verification.
#[derive(Debug)]
pub struct Verified {
    pub canonical_request: String,
    pub string_to_sign: String,
}

/// The parts of `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug)]
pub struct Authorization {
    pub credential: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

fn malformed(what: impl Into<String>) -> Rejected {
    Rejected::Malformed(what.into())
}

/// Parses an `Authorization` value; each field must appear exactly once.
pub fn parse_authorization(value: &str) -> Result<Authorization, Rejected> {
    let fields = value
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| malformed(format!("not {ALGORITHM}: {value}")))?;
    let field = |name: &str| {
        let mut found = fields
            .split(',')
            .filter_map(|part| part.trim().strip_prefix(name)?.strip_prefix('='));
        match (found.next(), found.next()) {
            (Some(v), None) => Ok(v.to_string()),
            _ => Err(malformed(format!("{name} once in {value}"))),
        }
    };
    let signed_headers: Vec<String> = field("SignedHeaders")?
        .split(';')
        .map(str::to_string)
        .collect();
    let sorted_lowercase = signed_headers.windows(2).all(|w| w[0] < w[1])
        && signed_headers
            .iter()
            .all(|h| !h.is_empty() && *h == h.to_ascii_lowercase());
    if !sorted_lowercase {
        return Err(malformed(format!(
            "SignedHeaders not sorted, unique, lowercase: {value}"
        )));
    }
    let signature = field("Signature")?;
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(format!("Signature not 64 hex digits: {value}")));
    }
    Ok(Authorization {
        credential: field("Credential")?,
        signed_headers,
        signature,
    })
}

/// The single value of a header, as text.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, Rejected> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .map_err(|_| malformed(format!("{name} not text"))),
        _ => Err(malformed(format!("exactly one {name}"))),
    }
}

/// `YYYYMMDDTHHMMSSZ`.
fn is_amz_date(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

/// `Credential` must be `key/day/region/service/aws4_request` for this signer, on
/// the day of `x-amz-date`.
fn check_scope(credential: &str, signer: &Signer, amz_date: &str) -> Result<String, Rejected> {
    let day = &amz_date[..8];
    let expected = format!(
        "{}/{day}/{}/{}/aws4_request",
        signer.access_key, signer.region, signer.service
    );
    if credential != expected {
        return Err(Rejected::Scope(format!(
            "{credential}, expected {expected}"
        )));
    }
    Ok(format!(
        "{day}/{}/{}/aws4_request",
        signer.region, signer.service
    ))
}

/// Percent-encodes every byte but RFC 3986's unreserved ones (and `/` if asked),
/// with upper-case hex, as SigV4 requires.
fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undoes `%XX` escapes (others are kept as they are).
fn percent_decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'%')
            .then(|| std::str::from_utf8(b.get(i + 1..i + 3)?).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// The path as received, encoded once more: for services other than S3 the
/// specification encodes each segment twice, and the wire carries the first.
/// Dot and empty segments are refused rather than normalized.
fn canonical_uri(path: &str) -> Result<String, Rejected> {
    let segments: Vec<&str> = path
        .strip_prefix('/')
        .ok_or_else(|| malformed(format!("path {path}")))?
        .split('/')
        .collect();
    let inner = &segments[..segments.len() - 1];
    if inner.contains(&"") || segments.iter().any(|s| matches!(*s, "." | "..")) {
        return Err(malformed(format!("path not normalized: {path}")));
    }
    Ok(uri_encode(path.as_bytes(), true))
}

/// `key=value` pairs, each side decoded then encoded the SigV4 way, sorted by key
/// then value, joined with `&`.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    joined.join("&")
}

/// A value trimmed, with each run of spaces inside it made one space.
fn canonical_value(value: &str) -> String {
    value.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

/// `name:value\n` for every signed header, in `SignedHeaders` order; repeated
/// headers are joined with commas.
fn canonical_headers(headers: &HeaderMap, signed: &[String]) -> Result<String, Rejected> {
    let mut out = String::new();
    for name in signed {
        let values = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| v.to_str().map(canonical_value))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| malformed(format!("{name} not text")))?;
        if values.is_empty() {
            return Err(malformed(format!("signed header {name} not received")));
        }
        out.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Ok(out)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `HMAC("AWS4" + secret, day)`, then region, service and `aws4_request` in turn.
fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> Vec<u8> {
    [day, region, service, "aws4_request"]
        .iter()
        .fold(format!("AWS4{secret}").into_bytes(), |key, part| {
            hmac_sha256(&key, part.as_bytes())
        })
}

/// Checks the `Authorization` of a request as received, for `signer`.
pub fn verify(signer: &Signer, rec: &Recorded) -> Result<Verified, Rejected> {
    let auth = parse_authorization(header(&rec.headers, "authorization")?)?;
    let amz_date = header(&rec.headers, "x-amz-date")?;
    if !is_amz_date(amz_date) {
        return Err(malformed(format!("x-amz-date {amz_date}")));
    }
    let scope = check_scope(&auth.credential, signer, amz_date)?;
    let token_header = signer.session_token.map(|_| "x-amz-security-token");
    for name in signer.must_sign.iter().copied().chain(token_header) {
        if !auth.signed_headers.iter().any(|h| h == name) {
            return Err(Rejected::Unsigned(name.to_string()));
        }
    }
    let token = rec
        .headers
        .get("x-amz-security-token")
        .map(|v| v.as_bytes());
    if token != signer.session_token.map(str::as_bytes) {
        return Err(Rejected::Token);
    }
    let payload_hash = sha256_hex(&rec.body);
    if rec
        .headers
        .get("x-amz-content-sha256")
        .is_some_and(|v| v.as_bytes() != payload_hash.as_bytes())
    {
        return Err(Rejected::PayloadHash);
    }

    let (path, query) = rec.uri.split_once('?').unwrap_or((&rec.uri, ""));
    let canonical_request = [
        rec.method.clone(),
        canonical_uri(path)?,
        canonical_query(query),
        canonical_headers(&rec.headers, &auth.signed_headers)?,
        auth.signed_headers.join(";"),
        payload_hash,
    ]
    .join("\n");
    let string_to_sign = [
        ALGORITHM,
        amz_date,
        &scope,
        &sha256_hex(canonical_request.as_bytes()),
    ]
    .join("\n");
    let key = signing_key(
        signer.secret_key,
        &amz_date[..8],
        signer.region,
        signer.service,
    );
    if hex::encode(hmac_sha256(&key, string_to_sign.as_bytes())) != auth.signature {
        return Err(Rejected::Signature { canonical_request });
    }
    Ok(Verified {
        canonical_request,
        string_to_sign,
    })
}

/// Vectors from AWS's Signature Version 4 test suite (`aws-sig-v4-test-suite`):
/// its `.req`, `.creq`, `.sts` and `.authz` files.
mod published {
    use super::*;

    const SUITE: Signer<'static> = Signer {
        access_key: "AKIDEXAMPLE",
        secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
        service: "service",
        session_token: None,
        must_sign: &["host", "x-amz-date"],
    };

    /// The suite's request: `example.amazonaws.com`, 2015-08-30 12:36:00, plus
    /// `headers` and the `Authorization` of its `.authz` file.
    fn request(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
        authz: &str,
    ) -> Recorded {
        let mut map = HeaderMap::new();
        let fixed = [
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            ("authorization", authz),
        ];
        for (name, value) in fixed.iter().chain(headers) {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        Recorded {
            method: method.to_string(),
            uri: uri.to_string(),
            headers: map,
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    const FORM_AUTHZ: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a";

    fn form(body: &str) -> Recorded {
        let content_type = [("content-type", "application/x-www-form-urlencoded")];
        request("POST", "/", &content_type, body, FORM_AUTHZ)
    }

    /// `post-x-www-form-urlencoded`: every stage equals the suite's.
    #[test]
    fn suite_post_x_www_form_urlencoded() {
        let verified = verify(&SUITE, &form("Param1=value1")).expect("suite vector verifies");
        assert_eq!(
            verified.canonical_request,
            "POST\n/\n\n\
             content-type:application/x-www-form-urlencoded\n\
             host:example.amazonaws.com\n\
             x-amz-date:20150830T123600Z\n\n\
             content-type;host;x-amz-date\n\
             9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert_eq!(
            verified.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"
        );
    }

    /// One body byte changed, or another key, region or day: no longer verifies.
    #[test]
    fn suite_vector_altered_is_rejected() {
        assert!(matches!(
            verify(&SUITE, &form("Param1=value2")),
            Err(Rejected::Signature { .. })
        ));
        let other_secret = Signer {
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ",
            ..SUITE
        };
        assert!(matches!(
            verify(&other_secret, &form("Param1=value1")),
            Err(Rejected::Signature { .. })
        ));
        let other_region = Signer {
            region: "us-east-2",
            ..SUITE
        };
        assert!(matches!(
            verify(&other_region, &form("Param1=value1")),
            Err(Rejected::Scope(_))
        ));
        let mut next_day = form("Param1=value1");
        next_day
            .headers
            .insert("x-amz-date", "20150831T123600Z".parse().unwrap());
        assert!(matches!(verify(&SUITE, &next_day), Err(Rejected::Scope(_))));
    }

    /// An `x-amz-content-sha256` (unsigned here) must be the body's hash.
    #[test]
    fn sigv4_content_sha256_must_match_the_body() {
        let mut rec = form("Param1=value1");
        let body_hash = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e";
        rec.headers
            .insert("x-amz-content-sha256", body_hash.parse().unwrap());
        verify(&SUITE, &rec).expect("matching payload hash verifies");
        rec.headers
            .insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
        assert_eq!(verify(&SUITE, &rec).unwrap_err(), Rejected::PayloadHash);
    }

    #[test]
    fn suite_post_vanilla() {
        let authz = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b";
        verify(&SUITE, &request("POST", "/", &[], "", authz)).expect("post-vanilla verifies");
    }

    /// `get-vanilla-query-order-key-case`: parameters are sorted by key.
    #[test]
    fn suite_get_vanilla_query_order_key_case() {
        let authz = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";
        let rec = request("GET", "/?Param2=value2&Param1=value1", &[], "", authz);
        let verified = verify(&SUITE, &rec).expect("query vector verifies");
        assert_eq!(
            verified.canonical_request.lines().nth(2),
            Some("Param1=value1&Param2=value2")
        );
    }

    /// `get-header-value-trim`: values are trimmed and inner runs of spaces squeezed.
    #[test]
    fn suite_get_header_value_trim() {
        let authz = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736";
        let headers = [("my-header1", " value1"), ("my-header2", " \"a   b   c\"")];
        verify(&SUITE, &request("GET", "/", &headers, "", authz)).expect("trim vector verifies");
    }

    #[test]
    fn sigv4_encoding_helpers() {
        assert_eq!(uri_encode("a b/ሴ~".as_bytes(), true), "a%20b/%E1%88%B4~");
        assert_eq!(uri_encode(b"a/b", false), "a%2Fb");
        assert_eq!(percent_decode("%E1%88%b4%zz"), "ሴ%zz".as_bytes());
        assert_eq!(canonical_query("b=2&a=%7e&a=1&c"), "a=1&a=~&b=2&c=");
        assert_eq!(canonical_uri("/model/a%3A0/x").unwrap(), "/model/a%253A0/x");
        assert!(canonical_uri("/a/../b").is_err());
        assert!(canonical_uri("/a//b").is_err());
    }
}
