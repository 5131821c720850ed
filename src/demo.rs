//! `pims demo`: a server on loopback, two phones, one account, every step shown.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pims_core::{Message, Pims};
use pims_proto::endpoint::{self as ep, Endpoint};
use serde_json::{json, Value};

const SUBJECT: &str = "driver-0001";
const PHONE_NUMBER: &str = "+33612345678";
const PIN: &str = "2580";

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = pims_server::ServerConfig::development(dir.path());
    let outbox = config.sms_outbox.clone();
    let database = config.database_path.clone();
    let rp = config
        .relying_parties
        .first()
        .cloned()
        .context("development configuration has a relying party")?;
    let server = pims_server::start(config).await?;
    let url = server.url();

    println!("PIMS enrollment demo");
    println!("  server    {url}  (SQLite {})", database.display());
    let token = dev_token(&url, SUBJECT).await?;
    println!("  user      signed in as \"{SUBJECT}\" (token from the development issuer)");

    section("Phone A: the account's first device");
    let phone_a = phone(&token, &url, dir.path().join("phone-a"), "Phone A").await?;
    let sms = Sms { outbox: &outbox };
    let account = json!({"actionType": "strong", "type": "isDeviceActivated"});
    expect_ok(
        &phone_a,
        "get",
        "pims.authentication.account",
        account.clone(),
    )
    .await?;
    expect_ok(
        &phone_a,
        "get",
        "pims.authentication.account",
        json!({"actionType": "strong", "type": "isAccountBlocked"}),
    )
    .await?;
    expect_code(
        &phone_a,
        "get",
        "pims.authentication.trustedphonenumber",
        json!({}),
        2307,
    )
    .await?;
    expect_ok(
        &phone_a,
        "get",
        "pims.authentication.smscode",
        json!({"type": "phoneNumberCertification", "phoneNumber": PHONE_NUMBER}),
    )
    .await?;
    let code = sms.read(PHONE_NUMBER)?;
    expect_ok(
        &phone_a,
        "set",
        "pims.authentication.smscode",
        json!({"type": "addPhoneNumber", "phoneNumber": PHONE_NUMBER, "smsCode": code}),
    )
    .await?;
    expect_ok(
        &phone_a,
        "get",
        "pims.authentication.trustedphonenumber",
        json!({}),
    )
    .await?;
    expect_ok(
        &phone_a,
        "get",
        "pims.authentication.smscode",
        json!({"type": "enrollment"}),
    )
    .await?;
    let code = sms.read(PHONE_NUMBER)?;
    expect_ok(
        &phone_a,
        "set",
        "pims.authentication.smscode",
        json!({"action": "enrollment", "smsCode": code}),
    )
    .await?;
    expect_ok(
        &phone_a,
        "set",
        "pims.authentication.enrollment",
        json!({"action": "enroll", "pinCode": PIN, "smsCode": code}),
    )
    .await?;
    expect_ok(
        &phone_a,
        "get",
        "pims.authentication.account",
        account.clone(),
    )
    .await?;

    section("Phone B: a second device proves the same PIN");
    let phone_b = phone(&token, &url, dir.path().join("phone-b"), "Phone B").await?;
    expect_ok(
        &phone_b,
        "get",
        "pims.authentication.account",
        account.clone(),
    )
    .await?;
    expect_ok(
        &phone_b,
        "get",
        "pims.authentication.smscode",
        json!({"type": "enrollment"}),
    )
    .await?;
    let code = sms.read(PHONE_NUMBER)?;
    expect_ok(
        &phone_b,
        "set",
        "pims.authentication.smscode",
        json!({"action": "enrollment", "smsCode": code}),
    )
    .await?;
    expect_ok(
        &phone_b,
        "set",
        "pims.authentication.enrollment",
        json!({"action": "enroll", "pinCode": PIN, "smsCode": code}),
    )
    .await?;

    section("Phone B asks for a one-time proof with the PIN; a car service verifies it");
    let message = expect_ok(
        &phone_b,
        "get",
        "pims.authentication.otp",
        json!({"action": "withPIN", "pinCode": PIN}),
    )
    .await?;
    let otp = message
        .result
        .as_ref()
        .and_then(|r| r["otp"].as_str())
        .context("otp in result")?;
    let http = reqwest::Client::new();
    for attempt in ["first use", "second use"] {
        let response = http
            .post(format!("{url}{}", ep::OtpVerify::ROUTE.path))
            .basic_auth(&rp.id, Some(&rp.secret))
            .json(&json!({ "otp": otp }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        println!("  relying party POST /v1/otp/verify ({attempt})");
        println!("      ← {} {}", status.as_u16(), body);
    }

    for pims in [phone_a, phone_b] {
        pims.release_async().await;
    }
    server.shutdown().await;
    println!("\nDone: two devices enrolled, one OTP issued and accepted exactly once.");
    Ok(())
}

async fn dev_token(url: &str, subject: &str) -> anyhow::Result<String> {
    let response: Value = reqwest::Client::new()
        .post(format!("{url}{}", ep::DevTokens::ROUTE.path))
        .json(&json!({ "subject": subject }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    response["accessToken"]
        .as_str()
        .map(str::to_owned)
        .context("token in development issuer answer")
}

async fn phone(token: &str, url: &str, data: PathBuf, name: &str) -> anyhow::Result<Pims> {
    let pims = crate::facade(Some(token.to_owned()));
    let config = json!({
        "environnement": "development",
        "monitoring": {"logLevel": "warning"},
        "components": {"strongAuthentication": {
            "serverUrl": url, "dataDirectory": data, "platform": "ios", "deviceName": name
        }}
    });
    println!("  pims.initialize(components.strongAuthentication = {{platform: ios, deviceName: {name}}})");
    let message = pims.initialize_async(config).await;
    show(&message);
    if message.error.is_some() {
        bail!("initialize failed");
    }
    Ok(pims)
}

struct Sms<'a> {
    outbox: &'a Path,
}

impl Sms<'_> {
    /// Plays the phone: reads the newest SMS sent to `number`, as autofill would.
    fn read(&self, number: &str) -> anyhow::Result<String> {
        let messages = pims_server::sms::read_outbox(self.outbox)?;
        // Security notices (a device enrolled, …) carry no code: the newest SMS that has one.
        let code = messages
            .iter()
            .rev()
            .filter(|m| m.to == number)
            .find_map(|m| pims_server::sms::code_from_text(&m.text))
            .context("an SMS with a code in the outbox")?;
        println!(
            "  📱 SMS received on {number}, code read from it ({} digits)",
            code.len()
        );
        Ok(code)
    }
}

fn section(title: &str) {
    println!("\n── {title}");
}

async fn call(pims: &Pims, verb: &str, api: &str, params: Value) -> Message {
    println!("  pims.{verb}(\"{api}\", {})", masked(&params));
    let message = match verb {
        "get" => pims.get_async(api, params).await,
        _ => pims.set_async(api, params).await,
    };
    show(&message);
    message
}

async fn expect_ok(pims: &Pims, verb: &str, api: &str, params: Value) -> anyhow::Result<Message> {
    let message = call(pims, verb, api, params).await;
    if message.error.is_some() {
        bail!("{api} failed: {message}");
    }
    Ok(message)
}

async fn expect_code(
    pims: &Pims,
    verb: &str,
    api: &str,
    params: Value,
    code: u32,
) -> anyhow::Result<()> {
    let message = call(pims, verb, api, params).await;
    if message.code() != Some(code) {
        bail!("{api}: expected error {code}, got {message}");
    }
    Ok(())
}

fn show(message: &Message) {
    println!("      ← {}", masked(&message.to_json()));
}

/// PINs, SMS codes and OTPs are shown as dots.
fn masked(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("pinCode" | "smsCode" | "otp", Value::String(s)) => {
                            Value::String("•".repeat(s.len().min(8)))
                        }
                        _ => masked(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}
