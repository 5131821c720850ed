//! `pims demo`: a server on loopback, two phones, one account, every step shown.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pims_core::{Message, Pims};
use pims_proto::endpoint::{self as ep, Endpoint};
use serde_json::{json, Value};

const SUBJECT: &str = "driver-0001";
const VIN: &str = "VR3UPHNKSKT101603";
const PHONE_NUMBER: &str = "+33612345678";
const PIN: &str = "2580";

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = pims_server::ServerConfig::development(dir.path());
    // The car listens first, so the command service knows where to relay.
    let car_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let car_url = format!("http://{}", car_listener.local_addr()?);
    config.commands.vehicles = vec![pims_server::config::VehicleEndpoint {
        vin: VIN.into(),
        url: car_url.clone(),
    }];
    let key_file = config.key_file.clone();
    let audience = config.commands.audience.clone();
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
    let car = pims_vehicle::Vehicle::open(pims_vehicle::VehicleConfig {
        vin: VIN.into(),
        audience,
        data: dir.path().join("car.sqlite3"),
        pin_cosign_key: None,
        server: Some(url.clone()),
        policy: Default::default(),
        clock: None,
    })
    .await?;
    let router = car.router();
    tokio::spawn(async move { axum::serve(car_listener, router).await });
    println!("  car       {VIN} at {car_url} (its own key, state and keychain)");

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

    remote_command(&phone_b, &car, &key_file).await?;

    for pims in [phone_a, phone_b] {
        pims.release_async().await;
    }
    server.shutdown().await;
    println!("\nDone: two devices enrolled, one OTP issued and accepted exactly once, the car");
    println!("unlocked by a command signed with the PIN, and a forged unlock refused by the car.");
    Ok(())
}

/// Phone B pairs with the car, unlocks it with the PIN in a signed command the car verifies
/// itself, locks it; then a cloud holding every server key forges an unlock the car refuses.
async fn remote_command(
    phone: &Pims,
    car: &pims_vehicle::Vehicle,
    key_file: &Path,
) -> anyhow::Result<()> {
    section("Phone B pairs with the car and unlocks it with a signed command");
    expect_ok(
        phone,
        "set",
        "pims.vehicle.vin",
        json!({"actionType": "remote", "vin": VIN}),
    )
    .await?;
    let code = car.new_pairing_code()?;
    println!("  car screen: pairing code {code}");
    expect_ok(
        phone,
        "set",
        "pims.vehicle.pairing",
        json!({"pairingCode": code}),
    )
    .await?;
    let unlock = json!({"action": "doors", "doorState": "unlock"});
    expect_code(phone, "set", "pims.vehicle.command", unlock.clone(), 2302).await?;
    let mut with_pin = unlock;
    with_pin["pinCode"] = json!(PIN);
    expect_ok(phone, "set", "pims.vehicle.command", with_pin).await?;
    println!("  car's verdict: {}", verdict(car)?);
    expect_ok(
        phone,
        "set",
        "pims.vehicle.command",
        json!({"action": "doors", "doorState": "lock"}),
    )
    .await?;
    println!("  car's verdict: {}", verdict(car)?);

    section("A cloud with the database and every server key forges an unlock");
    let keys = pims_server::keys::Keys::load(key_file)?;
    let forged = forged_unlock(&keys, car)?;
    let receipt = car.command(&forged)?;
    println!(
        "  car: {} {} — {}",
        receipt.code,
        receipt.fault.as_deref().unwrap_or("executed"),
        verdict(car)?
    );
    if receipt.code == 200 || !car.state()?.locked {
        bail!("the car accepted a forged unlock");
    }
    Ok(())
}

fn verdict(car: &pims_vehicle::Vehicle) -> anyhow::Result<&'static str> {
    Ok(if car.state()?.locked {
        "doors locked"
    } else {
        "doors unlocked"
    })
}

/// An unlock proof under the key id of every key on the car's keychain, signed with a key of
/// the attacker's own, co-signed with the server's real PIN co-signing key.
fn forged_unlock(
    keys: &pims_server::keys::Keys,
    car: &pims_vehicle::Vehicle,
) -> anyhow::Result<Vec<u8>> {
    use p256::ecdsa::signature::Signer;
    let sign = |key: &p256::ecdsa::SigningKey, message: &[u8]| {
        let s: p256::ecdsa::Signature = key.sign(message);
        s.normalize_s().unwrap_or(s).to_der().as_bytes().to_vec()
    };
    let attacker = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let key_id = car
        .owner_key_ids()?
        .into_iter()
        .next()
        .context("the car has an owner key")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let envelope = pims_command::Envelope {
        vin: VIN.into(),
        audience: "pims-commands".into(),
        command: pims_command::Command::UnlockDoors,
        key_id,
        counter: u64::MAX / 2,
        expires_at: now + 20,
        challenge: vec![0; 16],
        pin_binding: Some([0; 32]),
    }
    .encode();
    let device_signature = sign(&attacker, &pims_command::device_message(&envelope));
    let cosignature = keys
        .command_cosign
        .sign(&pims_command::pin_message(&envelope))?;
    Ok(pims_command::encode_proof(
        &envelope,
        &device_signature,
        Some(&cosignature),
    ))
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
                        ("pinCode" | "smsCode" | "otp" | "pairingCode", Value::String(s)) => {
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
