//! Test harness: a real server on a loopback socket, a reqwest client, a real OPAQUE client and
//! P-256 device keys.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use base64::{engine::general_purpose::STANDARD, Engine};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use pims_device::Stretching;
use pims_proto::endpoint::{self as ep, Endpoint, Method, Route};
use pims_proto::*;
use pims_server::config::DatabaseUrl;
use pims_server::testing::{shared_cluster, TempCluster};
use pims_server::{start, Clock, RunningServer, ServerConfig};
use rand::rngs::OsRng;
use serde::de::DeserializeOwned;

pub const START: i64 = 1_800_000_000;
pub const PHONE: &str = "+33612345678";

pub struct TestServer {
    pub server: Option<RunningServer>,
    /// The PostgreSQL cluster when the server runs on one; kept alive by every replica.
    pub cluster: Option<Arc<TempCluster>>,
    pub config: ServerConfig,
    pub clock: Clock,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub url: String,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(START);
        let mut config = ServerConfig::development(dir.path());
        config.clock = clock.clone();
        adjust(&mut config);
        let server = start(config.clone()).await.unwrap();
        let url = server.url();
        TestServer {
            server: Some(server),
            cluster: None,
            config,
            clock,
            dir,
            http: reqwest::Client::new(),
            url,
        }
    }

    /// A server on a fresh PostgreSQL database, or `None` when PostgreSQL is not installed (and
    /// not required).
    pub async fn start_postgres(adjust: impl FnOnce(&mut ServerConfig)) -> Option<TestServer> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let cluster = shared_cluster().expect("starting PostgreSQL")?;
        let name = format!("server_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let url = cluster.create_database(&name).await.unwrap();
        let mut s = Self::start_with(|c| {
            c.database_url = Some(DatabaseUrl(url));
            adjust(c);
        })
        .await;
        s.cluster = Some(cluster);
        Some(s)
    }

    /// Another server on the same database, keys, SMS outbox and clock: a replica.
    pub async fn replica(&self) -> TestServer {
        let mut config = self.config.clone();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = start(config.clone()).await.unwrap();
        let url = server.url();
        TestServer {
            server: Some(server),
            cluster: self.cluster.clone(),
            config,
            clock: self.clock.clone(),
            dir: tempfile::tempdir().unwrap(),
            http: reqwest::Client::new(),
            url,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().addr
    }

    /// Stops the server and starts a new one on the same files and port.
    pub async fn restart(&mut self) {
        let addr = self.addr();
        self.server.take().unwrap().shutdown().await;
        let mut config = self.config.clone();
        config.listen = addr;
        let server = start(config).await.unwrap();
        assert_eq!(server.addr, addr);
        self.url = server.url();
        self.server = Some(server);
        self.http = reqwest::Client::new();
    }

    pub fn outbox(&self) -> PathBuf {
        self.config.sms_outbox.clone()
    }

    pub async fn token(&self, subject: &str) -> String {
        let r = self
            .http
            .post(format!("{}{}", self.url, ep::DevTokens::ROUTE.path))
            .json(&DevTokenRequest {
                subject: subject.into(),
            })
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<DevToken>().await.unwrap().access_token
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.url, path))
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .header(TRANSACTION_HEADER, "test-tx")
            .bearer_auth(token)
    }

    /// A device's request to `route` of the endpoint table, path parameters filled by
    /// `values`; the body is the caller's (or none), so tests can also send what the SDK never
    /// would.
    pub fn at(&self, route: Route, values: &[&str], token: &str) -> reqwest::RequestBuilder {
        let method = match route.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        self.request(method, &route.path(values), token)
    }

    /// Calls operation `E` as the SDK does (POST with a JSON body) and decodes the answer.
    pub async fn call<E: Endpoint>(
        &self,
        values: &[&str],
        token: &str,
        body: &E::Request,
    ) -> Result<E::Response, ApiError> {
        decode(
            self.at(E::ROUTE, values, token)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn status(&self, token: &str, device_id: Option<&str>) -> AccountStatus {
        let query: Vec<(&str, &str)> = device_id.map(|id| ("deviceId", id)).into_iter().collect();
        decode(
            self.at(ep::Account::ROUTE, &[], token)
                .query(&query)
                .send()
                .await
                .unwrap(),
        )
        .await
        .unwrap()
    }

    pub async fn send_code(
        &self,
        token: &str,
        purpose: SmsPurpose,
        phone: Option<&str>,
    ) -> Result<SmsCodeSent, ApiError> {
        self.call::<ep::SmsCodes>(
            &[],
            token,
            &SendSmsCode {
                purpose,
                phone_number: phone.map(str::to_string),
                region: None,
            },
        )
        .await
    }

    /// The code of the last SMS sent to `to`, read as a phone's autofill would.
    pub fn last_code(&self, to: &str) -> String {
        let msgs = pims_server::sms::read_outbox(&self.outbox()).unwrap();
        // Security notices carry no code: the newest message that has one.
        msgs.iter()
            .rev()
            .filter(|m| m.to == to)
            .find_map(|m| pims_server::sms::code_from_text(&m.text))
            .expect("an SMS with a code to that number")
    }

    pub async fn add_phone(&self, token: &str, phone: &str, code: &str) -> Result<(), ApiError> {
        let r = self
            .at(ep::PhoneNumberAdd::ROUTE, &[], token)
            .json(&AddPhoneNumber {
                phone_number: phone.into(),
                region: None,
                sms_code: code.into(),
            })
            .send()
            .await
            .unwrap();
        decode_empty(r).await
    }

    pub async fn certify_phone(&self, token: &str, phone: &str) {
        self.send_code(token, SmsPurpose::PhoneCertification, Some(phone))
            .await
            .unwrap();
        let code = self.last_code(phone);
        self.add_phone(token, phone, &code).await.unwrap();
    }

    pub async fn activate(&self, token: &str, device: &mut Device) -> Result<(), ApiError> {
        device.counter += 1;
        let activation =
            pims_device::activation(&device.id, &device.activation_nonce, device.counter);
        let request = activation.sign_with(|t| device.sign(t));
        let r = self
            .at(ep::DeviceActivate::ROUTE, &[&device.id], token)
            .json(&request)
            .send()
            .await
            .unwrap();
        decode_empty(r).await
    }

    /// Full enrollment of a new device with `pin` (registering it if the account has none),
    /// assuming the account has a trusted number; the device ends Active.
    pub async fn enroll(&self, token: &str, pin: &str) -> Result<Device, ApiError> {
        self.send_code(token, SmsPurpose::Enrollment, None).await?;
        let phone = self.status(token, None).await.phone_number.unwrap();
        let code = self.last_code(&phone);
        let mut device = Device::new();
        let started = self.start_enrollment(token, &code, pin, None).await?;
        let key = uuid::Uuid::new_v4().to_string();
        let finished = self
            .finish_enrollment(token, &device, started, &key)
            .await?;
        device.id = finished.device_id;
        device.activation_nonce = finished.activation_nonce.0;
        self.activate(token, &mut device).await?;
        Ok(device)
    }

    pub async fn start_enrollment(
        &self,
        token: &str,
        code: &str,
        pin: &str,
        phone: Option<&str>,
    ) -> Result<PinSession, ApiError> {
        let register = self.status(token, None).await.pin == PinState::NotSet;
        let (client, start) = pims_device::start_enrollment(
            code.into(),
            phone.map(str::to_string),
            None,
            pin.as_bytes(),
            register,
        );
        let started = self.call::<ep::EnrollmentStart>(&[], token, &start).await?;
        Ok(PinSession {
            started,
            client,
            pin: pin.to_string(),
        })
    }

    pub async fn finish_enrollment(
        &self,
        token: &str,
        device: &Device,
        session: PinSession,
        idempotency_key: &str,
    ) -> Result<EnrollmentFinished, ApiError> {
        let enrollment_id = session.started.enrollment_id.clone();
        let request = session.finish_request(device, idempotency_key);
        self.call::<ep::EnrollmentFinish>(&[&enrollment_id], token, &request)
            .await
    }

    /// Challenge + OTP for `device`, with the PIN when given.
    pub async fn otp(
        &self,
        token: &str,
        device: &mut Device,
        pin: Option<&str>,
    ) -> Result<OtpIssued, ApiError> {
        self.otp_for(token, device, pin, None).await
    }

    /// [`Self::otp`] for a named relying party.
    pub async fn otp_for(
        &self,
        token: &str,
        device: &mut Device,
        pin: Option<&str>,
        audience: Option<&str>,
    ) -> Result<OtpIssued, ApiError> {
        let login = pin.map(|p| pims_device::pin::start(p.as_bytes(), false));
        let request: Option<Bytes> = login.as_ref().map(|(_, request)| request.clone());
        let proof = request.as_ref().map(|r| device.login_proof(r));
        let challenge: OtpChallenge = self
            .call::<ep::OtpChallenges>(
                &[],
                token,
                &OtpChallengeRequest {
                    device_id: device.id.clone(),
                    pin: request,
                    audience: audience.map(str::to_string),
                    proof,
                },
            )
            .await?;
        let pin_finish = login.map(|(exchange, _)| {
            let response = challenge.pin.as_ref().unwrap().as_slice();
            pims_device::pin::finish(
                exchange,
                pin.unwrap().as_bytes(),
                response,
                Stretching::Cheap,
            )
            .unwrap()
        });
        device.counter += 1;
        let otp = pims_device::otp_request(&challenge, &device.id, device.counter, pin_finish);
        let request = otp.sign_with(|t| device.sign(t));
        self.call::<ep::Otp>(&[], token, &request).await
    }

    pub async fn verify(
        &self,
        rp_id: &str,
        secret: &str,
        otp: &str,
    ) -> Result<OtpVerified, ApiError> {
        let r = self
            .http
            .post(format!("{}{}", self.url, ep::OtpVerify::ROUTE.path))
            .header(
                "authorization",
                format!("Basic {}", STANDARD.encode(format!("{rp_id}:{secret}"))),
            )
            .json(&VerifyOtp { otp: otp.into() })
            .send()
            .await
            .unwrap();
        decode(r).await
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.config.database_path).unwrap()
    }
}

pub struct PinSession {
    pub started: EnrollmentStarted,
    pub client: pims_device::Enrollment,
    pub pin: String,
}

impl PinSession {
    pub fn finish_request(self, device: &Device, idempotency_key: &str) -> FinishEnrollment {
        let new_device = NewDevice {
            public_key: device.public_key().into(),
            name: "Test phone".into(),
            platform: Platform::Android,
        };
        let finish = self
            .client
            .finish(
                self.pin.as_bytes(),
                &self.started,
                new_device,
                idempotency_key.into(),
                Stretching::Cheap,
            )
            .expect("the server answered the PIN mode asked for");
        finish.sign_with(|t| device.sign(t))
    }
}

pub struct Device {
    pub key: SigningKey,
    pub id: String,
    pub activation_nonce: Vec<u8>,
    pub counter: u64,
}

impl Device {
    pub fn new() -> Device {
        Device {
            key: SigningKey::random(&mut OsRng),
            id: String::new(),
            activation_nonce: Vec::new(),
            counter: 0,
        }
    }

    /// The device's signature starting a PIN login, with its next counter.
    pub fn login_proof(&mut self, credential_request: &Bytes) -> LoginProof {
        self.counter += 1;
        let proof = pims_device::login_proof(&self.id, self.counter, credential_request.as_slice());
        proof.sign_with(|t| self.sign(t))
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// Low-S, as the SDK signs (the server refuses the high-S twin).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.key.sign(message);
        let sig = sig.normalize_s().unwrap_or(sig);
        DerSignature::from(sig).as_bytes().to_vec()
    }
}

/// The body of a success, or the error of the error envelope (checking its HTTP status).
pub async fn decode<T: DeserializeOwned>(r: reqwest::Response) -> Result<T, ApiError> {
    let status = r.status().as_u16();
    if r.status().is_success() {
        let bytes = r.bytes().await.unwrap();
        // A 204 has no body: the table's `Empty` reads `{}`.
        let bytes = if bytes.is_empty() { &b"{}"[..] } else { &bytes };
        return Ok(serde_json::from_slice(bytes).unwrap());
    }
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(status, body.error.status(), "status of {:?}", body.error);
    Err(body.error)
}

pub async fn decode_empty(r: reqwest::Response) -> Result<(), ApiError> {
    if r.status().is_success() {
        return Ok(());
    }
    let status = r.status().as_u16();
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(status, body.error.status(), "status of {:?}", body.error);
    Err(body.error)
}

/// A new account with a trusted number and one active device holding `pin`.
pub async fn enrolled_account(
    s: &TestServer,
    subject: &str,
    phone: &str,
    pin: &str,
) -> (String, Device) {
    let token = s.token(subject).await;
    s.certify_phone(&token, phone).await;
    let device = s.enroll(&token, pin).await.unwrap();
    (token, device)
}
