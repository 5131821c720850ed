//! Test fixtures: a real server on loopback with SQLite in a temporary directory, phones that
//! are real facades with the StrongAuthentication component, and a fault-injecting proxy.
#![allow(dead_code)]

pub mod proxy;

use std::path::PathBuf;
use std::sync::Arc;

use pims_core::{Message, Pims};
use pims_proto::endpoint::{self as ep, Endpoint};
use pims_server::{Clock, RunningServer, ServerConfig};
use serde_json::{json, Value};
use tempfile::TempDir;

pub const NUMBER: &str = "+33612345678";
pub const PIN: &str = "25804613";

pub struct TestServer {
    server: Option<RunningServer>,
    pub config: ServerConfig,
    pub clock: Clock,
    pub dir: TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the development configuration, changed by `adjust`, on a manual clock.
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::development(dir.path());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        config.clock = Clock::manual(now);
        adjust(&mut config);
        let clock = config.clock.clone();
        let server = pims_server::start(config.clone()).await.unwrap();
        TestServer {
            server: Some(server),
            config,
            clock,
            dir,
        }
    }

    pub fn url(&self) -> String {
        self.server.as_ref().expect("server running").url()
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Starts again on the same database and keys (on a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.server = Some(pims_server::start(self.config.clone()).await.unwrap());
    }

    pub async fn token(&self, subject: &str) -> String {
        let response: Value = reqwest::Client::new()
            .post(format!("{}{}", self.url(), ep::DevTokens::ROUTE.path))
            .json(&json!({ "subject": subject }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        response["accessToken"].as_str().unwrap().to_owned()
    }

    /// Every SMS sent to `number` so far, oldest first.
    pub fn sms_texts(&self, number: &str) -> Vec<String> {
        pims_server::sms::read_outbox(&self.config.sms_outbox)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.to == number)
            .map(|m| m.text)
            .collect()
    }

    /// The code of the newest SMS to `number`, read as a phone's autofill would.
    pub fn last_code(&self, number: &str) -> String {
        // Security notices carry no code: the newest message that has one.
        self.sms_texts(number)
            .iter()
            .rev()
            .find_map(|text| pims_server::sms::code_from_text(text))
            .expect("an SMS with a code was sent")
    }

    /// Rows in the server database, read directly: what the server really holds.
    pub fn query_i64(&self, sql: &str, subject: &str) -> i64 {
        let db = rusqlite::Connection::open(&self.config.database_path).unwrap();
        db.query_row(sql, [subject], |r| r.get(0)).unwrap()
    }

    pub fn devices(&self, subject: &str) -> i64 {
        self.query_i64("SELECT count(*) FROM devices WHERE account = ?1", subject)
    }

    pub async fn verify_otp(&self, otp: &str) -> (u16, Value) {
        let rp = &self.config.relying_parties[0];
        let response = reqwest::Client::new()
            .post(format!("{}{}", self.url(), ep::OtpVerify::ROUTE.path))
            .basic_auth(&rp.id, Some(&rp.secret))
            .json(&json!({ "otp": otp }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

pub struct Phone {
    pub pims: Pims,
    pub data: PathBuf,
    _dir: Option<TempDir>,
}

impl Phone {
    /// An initialized iOS phone talking to `url` as the user of `token`.
    pub async fn new(url: &str, token: Option<String>) -> Phone {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let mut phone = Phone::at(url, token, data, "ios").await;
        phone._dir = Some(dir);
        phone
    }

    /// A phone whose vault lives in `data` (to simulate restarts and copies).
    pub async fn at(url: &str, token: Option<String>, data: PathBuf, platform: &str) -> Phone {
        let host =
            pims_strongauth::host::Host::new(Arc::new(pims_strongauth::host::StaticToken(token)));
        Phone::with_host(url, host, data, platform, json!({})).await
    }

    /// A phone with its own host capabilities and extra `strongAuthentication` keys.
    pub async fn with_host(
        url: &str,
        host: pims_strongauth::host::Host,
        data: PathBuf,
        platform: &str,
        extra: Value,
    ) -> Phone {
        let pims = Pims::builder()
            .component(pims_strongauth::StrongAuthFactory::new(host))
            .build();
        let mut config = json!({
            "serverUrl": url, "dataDirectory": data, "platform": platform,
            "requestTimeoutSeconds": 5
        });
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            config[k] = v;
        }
        let m = pims
            .initialize_async(json!({"components": {"strongAuthentication": config}}))
            .await;
        assert_eq!(m.status.as_str(), "SUCCEEDED", "{m}");
        Phone {
            pims,
            data,
            _dir: None,
        }
    }

    pub async fn get(&self, api: &str, params: Value) -> Message {
        self.pims.get_async(api, params).await
    }

    pub async fn set(&self, api: &str, params: Value) -> Message {
        self.pims.set_async(api, params).await
    }

    pub async fn is_device_activated(&self) -> Message {
        self.get(
            "pims.authentication.account",
            json!({"actionType": "strong", "type": "isDeviceActivated"}),
        )
        .await
    }

    pub async fn enroll(&self, pin: &str, sms_code: &str) -> Message {
        self.set(
            "pims.authentication.enrollment",
            json!({"action": "enroll", "pinCode": pin, "smsCode": sms_code}),
        )
        .await
    }

    pub async fn request_enrollment_code(&self) {
        ok(&self
            .get("pims.authentication.smscode", json!({"type": "enrollment"}))
            .await);
    }

    pub async fn otp_with_pin(&self, pin: &str) -> Message {
        self.get(
            "pims.authentication.otp",
            json!({"action": "withPIN", "pinCode": pin}),
        )
        .await
    }

    /// Certifies and adds `number` as the trusted number.
    pub async fn add_phone_number(&self, server: &TestServer, number: &str) {
        ok(&self
            .get(
                "pims.authentication.smscode",
                json!({"type": "phoneNumberCertification", "phoneNumber": number}),
            )
            .await);
        let code = server.last_code(number);
        ok(&self
            .set(
                "pims.authentication.smscode",
                json!({"type": "addPhoneNumber", "phoneNumber": number, "smsCode": code}),
            )
            .await);
    }

    /// The full first-device path: trusted number, enrollment SMS, enroll with `PIN`.
    pub async fn enroll_first_device(&self, server: &TestServer) {
        self.add_phone_number(server, NUMBER).await;
        self.enroll_further_device(server).await;
    }

    pub async fn enroll_further_device(&self, server: &TestServer) {
        self.request_enrollment_code().await;
        let code = server.last_code(NUMBER);
        ok(&self.enroll(PIN, &code).await);
    }
}

/// Asserts SUCCEEDED and returns the result.
pub fn ok(m: &Message) -> Value {
    assert_eq!(
        m.status.as_str(),
        "SUCCEEDED",
        "expected SUCCEEDED, got {m}"
    );
    assert!(m.error.is_none());
    m.result.clone().expect("SUCCEEDED carries result")
}

/// Asserts FAILED with exactly `code` and `label`, and returns the error object.
pub fn failed(m: &Message, code: u32, label: &str) -> Value {
    assert_eq!(
        m.status.as_str(),
        "FAILED",
        "expected FAILED {code}, got {m}"
    );
    let json = m.to_json();
    assert!(
        json.get("result").is_none(),
        "FAILED must not carry result: {m}"
    );
    assert_eq!(json["error"]["code"], code, "{m}");
    assert_eq!(json["error"]["label"], label, "{m}");
    json["error"].clone()
}

/// The VIN of the test car.
pub const VIN: &str = "VR3UPHNKSKT101603";

/// A simulated car (`pims-vehicle`) on loopback, and a server whose command service relays
/// to it; the car pins the server's PIN co-signing key.
pub struct Garage {
    pub server: TestServer,
    pub car: Arc<pims_vehicle::Vehicle>,
    _dir: TempDir,
}

impl Garage {
    pub async fn open() -> Garage {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let car_url = format!("http://{}", listener.local_addr().unwrap());
        let server = TestServer::start_with(|c| {
            c.commands.vehicles = vec![pims_server::config::VehicleEndpoint {
                vin: VIN.into(),
                url: car_url,
            }]
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let car = pims_vehicle::Vehicle::open(pims_vehicle::VehicleConfig {
            vin: VIN.into(),
            audience: server.config.commands.audience.clone(),
            data: dir.path().join("car.sqlite3"),
            pin_cosign_key: None,
            server: Some(server.url()),
            policy: Default::default(),
            clock: None,
        })
        .await
        .unwrap();
        let router = car.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Garage {
            server,
            car,
            _dir: dir,
        }
    }
}
