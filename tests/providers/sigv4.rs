//! Bedrock SigV4: the `Authorization` header the upstream receives is recomputed
//! with aws-sigv4 from what the upstream received (same `x-amz-date`, same body
//! bytes, same credentials) and must match exactly.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use super::support::{Call, Recorded, Reply, Upstream, adapter, env};

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION_TOKEN: &str = "FQoGZXIvYXdzEXAMPLETOKEN//+=";
const REGION: &str = "us-west-2";

/// `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization {
    credential: String,
    signed_headers: Vec<String>,
    signature: String,
}

fn parse_authorization(value: &str) -> Authorization {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .expect("SigV4 algorithm");
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|part| part.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {value}"))
            .to_string()
    };
    Authorization {
        credential: field("Credential="),
        signed_headers: field("SignedHeaders=")
            .split(';')
            .map(str::to_string)
            .collect(),
        signature: field("Signature="),
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(value: &str) -> SystemTime {
    assert_eq!(value.len(), 16, "{value}");
    let n = |range: std::ops::Range<usize>| value[range].parse::<i64>().unwrap();
    let days = days_from_civil(n(0..4), n(4..6), n(6..8));
    let secs = days * 86_400 + n(9..11) * 3600 + n(11..13) * 60 + n(13..15);
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

/// The `Authorization` value aws-sigv4 computes for the received request, over
/// `body`.
fn recompute(rec: &Recorded, session_token: Option<&str>, body: &[u8]) -> String {
    let auth = parse_authorization(rec.header("authorization").unwrap());
    let time = parse_amz_date(rec.header("x-amz-date").unwrap());
    // The signer adds x-amz-date (from `time`) and the token (from the credentials).
    let headers: Vec<(&str, &str)> = auth
        .signed_headers
        .iter()
        .filter(|h| !matches!(h.as_str(), "x-amz-date" | "x-amz-security-token"))
        .map(|h| {
            (
                h.as_str(),
                rec.header(h)
                    .unwrap_or_else(|| panic!("signed header {h} was sent")),
            )
        })
        .collect();
    let identity: Identity = Credentials::new(
        ACCESS_KEY,
        SECRET_KEY,
        session_token.map(str::to_string),
        None,
        "test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("http://{}{}", rec.header("host").unwrap(), rec.uri);
    let signable = SignableRequest::new(
        &rec.method,
        url,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
    instructions
        .headers()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .expect("the signer produced an authorization header")
        .1
        .to_string()
}

async fn signed_request(session_token: Option<&str>) -> Recorded {
    let upstream = Upstream::start(Reply::ok_json()).await;
    let mut vars = vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    if let Some(token) = session_token {
        vars.push(("AWS_SESSION_TOKEN", token));
    }
    let env = env(&vars);
    let cfg = format!(
        "name = \"br\"\nprovider = \"bedrock\"\nregion = \"{REGION}\"\nauth = \"sigv4\"\nendpoint = \"{}/\"\nmodels = {{ \"gpt-oss-120b\" = {{ model_id = \"openai.gpt-oss-120b-1:0\" }} }}",
        upstream.url()
    );
    let br = adapter(&cfg, &env);
    let call = Call::chat("openai.gpt-oss-120b-1:0")
        .header("authorization", "Bearer client-key")
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .header("user-agent", "openai-python/1.0");
    let (parts, _) = call.fetch(&br).await;
    assert_eq!(parts.status, 200);
    let rec = upstream.only();
    assert_eq!(rec.uri, "/openai/v1/chat/completions");
    assert_eq!(rec.body, call.body);
    assert!(
        rec.headers.get("x-amz-content-sha256").is_none(),
        "client x-amz-* headers are dropped"
    );
    rec
}

fn check_signature(rec: &Recorded, session_token: Option<&str>) {
    let received = rec.header("authorization").unwrap();
    let auth = parse_authorization(received);
    let date = &rec.header("x-amz-date").unwrap()[..8];
    assert_eq!(
        auth.credential,
        format!("{ACCESS_KEY}/{date}/{REGION}/bedrock/aws4_request")
    );
    for required in ["content-type", "host", "x-amz-date"] {
        assert!(
            auth.signed_headers.iter().any(|h| h == required),
            "{required} signed: {received}"
        );
    }
    assert_eq!(auth.signature.len(), 64);

    let signed_at = parse_amz_date(rec.header("x-amz-date").unwrap());
    let skew = SystemTime::now()
        .duration_since(signed_at)
        .unwrap_or_default();
    assert!(
        skew < Duration::from_secs(300),
        "signed at the time of sending"
    );

    assert_eq!(
        received,
        recompute(rec, session_token, &rec.body),
        "signature matches aws-sigv4's"
    );
    let mut tampered = rec.body.to_vec();
    tampered.push(b' ');
    assert_ne!(
        received,
        recompute(rec, session_token, &tampered),
        "the body is covered by the signature"
    );
}

#[tokio::test]
async fn sigv4_signature_verifies() {
    let rec = signed_request(None).await;
    check_signature(&rec, None);
    assert!(rec.headers.get("x-amz-security-token").is_none());
    let auth = parse_authorization(rec.header("authorization").unwrap());
    assert!(
        !auth
            .signed_headers
            .iter()
            .any(|h| h == "x-amz-security-token")
    );
}

#[tokio::test]
async fn sigv4_with_session_token() {
    let rec = signed_request(Some(SESSION_TOKEN)).await;
    assert_eq!(rec.header("x-amz-security-token"), Some(SESSION_TOKEN));
    let auth = parse_authorization(rec.header("authorization").unwrap());
    assert!(
        auth.signed_headers
            .iter()
            .any(|h| h == "x-amz-security-token")
    );
    check_signature(&rec, Some(SESSION_TOKEN));
}

#[test]
fn amz_date_parsing() {
    assert_eq!(parse_amz_date("19700101T000000Z"), UNIX_EPOCH);
    let t = parse_amz_date("20240229T120000Z");
    assert_eq!(
        t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
        1_709_208_000
    );
}
