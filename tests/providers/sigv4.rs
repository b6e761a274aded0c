//! Bedrock SigV4: the `Authorization` header the upstream receives is checked by
//! a verifier written from the SigV4 specification (`sigv4/verifier.rs`), over
//! what the upstream received: method, path, signed headers and body bytes.

mod verifier;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use super::support::{Call, Recorded, Reply, Upstream, adapter, env};
use verifier::{Rejected, Signer, parse_authorization, verify};

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION_TOKEN: &str = "FQoGZXIvYXdzEXAMPLETOKEN//+=";
const REGION: &str = "us-west-2";

/// The credentials the gateway is configured with, and what it must sign.
fn bedrock(session_token: Option<&str>) -> Signer<'_> {
    Signer {
        access_key: ACCESS_KEY,
        secret_key: SECRET_KEY,
        region: REGION,
        service: "bedrock",
        session_token,
        must_sign: &["content-type", "host", "x-amz-date"],
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

/// The received signature verifies and was made at the time of sending.
fn check_signature(rec: &Recorded, session_token: Option<&str>) {
    if let Err(rejected) = verify(&bedrock(session_token), rec) {
        panic!("the gateway's signature does not verify: {rejected:?}");
    }
    let signed_at = parse_amz_date(rec.header("x-amz-date").unwrap());
    let skew = SystemTime::now()
        .duration_since(signed_at)
        .unwrap_or_default();
    assert!(
        skew < Duration::from_secs(300),
        "signed at the time of sending"
    );
    check_tampering_rejected(rec, session_token);
}

/// Verifies a scratch copy of `rec` changed by `edit`, for `signer`.
fn verify_edited(signer: &Signer, rec: &Recorded, edit: impl FnOnce(&mut Recorded)) -> Rejected {
    let mut copy = rec.clone();
    edit(&mut copy);
    verify(signer, &copy).expect_err("an altered request must not verify")
}

fn set_header(rec: &mut Recorded, name: &'static str, value: &str) {
    rec.headers
        .insert(name, HeaderValue::from_str(value).unwrap());
}

/// A signature made over other bytes, another region's key, another secret or
/// other header values is rejected, so a wrongly signing gateway fails the test.
fn check_tampering_rejected(rec: &Recorded, session_token: Option<&str>) {
    let signer = bedrock(session_token);
    let bad_signature = |r: Rejected| matches!(r, Rejected::Signature { .. });

    let flip_one_body_byte = |r: &mut Recorded| {
        let mut body = r.body.to_vec();
        body[0] ^= 0x01;
        r.body = body.into();
    };
    assert!(bad_signature(verify_edited(
        &signer,
        rec,
        flip_one_body_byte
    )));
    let append_byte = |r: &mut Recorded| r.body = [&r.body[..], b" "].concat().into();
    assert!(bad_signature(verify_edited(&signer, rec, append_byte)));

    // Scope claims us-east-1 and the verifier expects it: the us-west-2 key no longer fits.
    let east = Signer {
        region: "us-east-1",
        ..bedrock(session_token)
    };
    let claim_east = |r: &mut Recorded| {
        let auth = r
            .header("authorization")
            .unwrap()
            .replace("/us-west-2/", "/us-east-1/");
        set_header(r, "authorization", &auth);
    };
    assert!(bad_signature(verify_edited(&east, rec, claim_east)));
    assert!(matches!(verify(&east, rec), Err(Rejected::Scope(_))));

    let other_secret = Signer {
        secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ",
        ..bedrock(session_token)
    };
    assert!(bad_signature(verify(&other_secret, rec).unwrap_err()));

    let other_content_type = |r: &mut Recorded| set_header(r, "content-type", "text/plain");
    assert!(bad_signature(verify_edited(
        &signer,
        rec,
        other_content_type
    )));
    let other_second = |r: &mut Recorded| {
        let date = r.header("x-amz-date").unwrap();
        let second = if date.ends_with("00Z") { "01Z" } else { "00Z" };
        let date = format!("{}{second}", &date[..13]);
        set_header(r, "x-amz-date", &date);
    };
    assert!(bad_signature(verify_edited(&signer, rec, other_second)));

    let unsign_content_type = |r: &mut Recorded| {
        let auth = r
            .header("authorization")
            .unwrap()
            .replace("content-type;", "");
        set_header(r, "authorization", &auth);
    };
    let unsigned = verify_edited(&signer, rec, unsign_content_type);
    assert_eq!(unsigned, Rejected::Unsigned("content-type".into()));

    if let Some(token) = session_token {
        let other_token = format!("{token}X");
        let signer = bedrock(Some(&other_token));
        let swap_token = |r: &mut Recorded| set_header(r, "x-amz-security-token", &other_token);
        assert!(bad_signature(verify_edited(&signer, rec, swap_token)));
    }
}

#[tokio::test]
async fn sigv4_signature_verifies() {
    let rec = signed_request(None).await;
    check_signature(&rec, None);
    assert!(rec.headers.get("x-amz-security-token").is_none());
    let auth = parse_authorization(rec.header("authorization").unwrap()).unwrap();
    assert!(
        !auth
            .signed_headers
            .iter()
            .any(|h| h == "x-amz-security-token")
    );
}

/// Credentials from a profile of an AWS shared credentials file sign exactly
/// as the same ones from the environment: the verifier, given the file's
/// secret, accepts the signature, and rejects it for any other secret.
#[tokio::test]
async fn sigv4_from_a_shared_credentials_file() {
    let upstream = Upstream::start(Reply::ok_json()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = other\n\n\
             [gateway]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n\
             aws_session_token = {SESSION_TOKEN}\n"
        ),
    )
    .unwrap();
    let cfg = format!(
        "name = \"br\"\nprovider = \"bedrock\"\nregion = \"{REGION}\"\nauth = \"sigv4\"\nendpoint = \"{}/\"\naws_credentials_file = \"{}\"\naws_profile = \"gateway\"\nmodels = {{ \"m\" = {{ model_id = \"openai.gpt-oss-120b-1:0\" }} }}",
        upstream.url(),
        file.display()
    );
    // The environment's credentials, if any, are not the ones used.
    let env = env(&[
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", "env"),
    ]);
    let br = adapter(&cfg, &env);
    let (parts, _) = Call::chat("openai.gpt-oss-120b-1:0").fetch(&br).await;
    assert_eq!(parts.status, 200);
    let rec = upstream.only();
    assert_eq!(rec.header("x-amz-security-token"), Some(SESSION_TOKEN));
    check_signature(&rec, Some(SESSION_TOKEN));
    let other_secret = Signer {
        secret_key: "other",
        ..bedrock(Some(SESSION_TOKEN))
    };
    assert!(matches!(
        verify(&other_secret, &rec),
        Err(Rejected::Signature { .. })
    ));
}

#[tokio::test]
async fn sigv4_with_session_token() {
    let rec = signed_request(Some(SESSION_TOKEN)).await;
    assert_eq!(rec.header("x-amz-security-token"), Some(SESSION_TOKEN));
    let auth = parse_authorization(rec.header("authorization").unwrap()).unwrap();
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
