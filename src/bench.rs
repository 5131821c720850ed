//! `pims bench`: many simulated devices against running server replicas, phase by phase
//! (enroll, OTP with PIN, OTP without PIN, relying-party verify), printing throughput, latency
//! percentiles and, given the servers' process ids, server CPU time per operation.
//!
//! The servers must run with `dev_issuer = true` (the bench mints its own access tokens) and
//! the webhook SMS gateway pointed at the bench (`--sms-listen`), which reads the codes from
//! the messages as a phone's autofill would. Simulated devices stretch their PIN with a cheap
//! Argon2 setting of their own: stretching runs only on the device, the server never sees it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::{engine::general_purpose::STANDARD, Engine};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use pims_proto::pin::opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use pims_proto::pin::PinSuite;
use pims_proto::*;
use rand::rngs::OsRng;
use serde::de::DeserializeOwned;
use serde::Serialize;

const PIN: &str = "1234";

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Server base URL; repeat for replicas (devices are spread over them).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Simulated devices (each its own account and phone number).
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Length of each timed phase.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Server process ids, to report server CPU time per operation (descendants included:
    /// add the PostgreSQL postmaster's pid to count the database's CPU too).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Where the servers' webhook SMS gateway delivers.
    #[arg(long, default_value = "127.0.0.1:9099")]
    sms_listen: SocketAddr,
    #[arg(long, default_value = "demo-rp")]
    rp_id: String,
    #[arg(long, default_value = "demo-rp-secret")]
    rp_secret: String,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let inbox = SmsInbox::start(args.sms_listen).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()?;
    let bench = Arc::new(Bench {
        http,
        urls: args.urls.clone(),
        inbox,
        rp: (args.rp_id.clone(), args.rp_secret.clone()),
        next_verifier: AtomicUsize::new(0),
    });
    let cpu = CpuMeter::new(args.server_pids.clone());
    println!(
        "pims bench: {} devices, {} in flight, {:.0} s phases, {} server(s), server CPU {}",
        args.devices,
        args.concurrency,
        args.seconds,
        args.urls.len(),
        if args.server_pids.is_empty() {
            "not measured (no --server-pid)".to_string()
        } else {
            format!("of pids {:?}", args.server_pids)
        }
    );
    println!(
        "{:<16} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9} {:>14}",
        "operation", "ops", "errors", "ops/s", "p50 ms", "p90 ms", "p99 ms", "server µs/op"
    );

    // Tokens are the identity provider's job, not an operation measured here.
    let mut devices = Vec::with_capacity(args.devices);
    for i in 0..args.devices {
        let url = bench.urls[i % bench.urls.len()].clone();
        let token = bench
            .token(&url, &format!("bench-{}-{i}", std::process::id()))
            .await?;
        devices.push(SimDevice::new(url, token, i));
    }

    // Enroll: every device once, `concurrency` at a time.
    let queue = Arc::new(Mutex::new(devices));
    let enrolled = Arc::new(Mutex::new(Vec::new()));
    let report = phase(&cpu, args.concurrency, f64::INFINITY, |_| {
        let (queue, enrolled, bench) = (queue.clone(), enrolled.clone(), bench.clone());
        async move {
            let mut d = queue.lock().unwrap().pop()?;
            let started = Instant::now();
            let ok = bench.enroll(&mut d).await;
            let elapsed = started.elapsed();
            if ok.is_ok() {
                enrolled.lock().unwrap().push(d);
            } else if let Err(e) = &ok {
                eprintln!("enroll failed: {e:#}");
            }
            Some((elapsed, ok.is_ok()))
        }
    })
    .await;
    report.print("enroll");
    let devices: Vec<SimDevice> = std::mem::take(&mut *enrolled.lock().unwrap());
    if devices.is_empty() {
        bail!("no device enrolled");
    }

    // Devices are dealt to workers so that one device never runs two operations at once.
    let workers = args.concurrency.min(devices.len());
    let mut pools: Vec<Vec<SimDevice>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, d) in devices.into_iter().enumerate() {
        pools[i % workers].push(d);
    }
    let pools: Vec<Arc<tokio::sync::Mutex<DevicePool>>> = pools
        .into_iter()
        .map(|p| Arc::new(tokio::sync::Mutex::new((p, 0))))
        .collect();
    let otps = Arc::new(Mutex::new(Vec::new()));

    for (name, with_pin) in [("otp with PIN", true), ("otp without PIN", false)] {
        let report = phase(&cpu, workers, args.seconds, |w| {
            let (pool, bench, otps) = (pools[w].clone(), bench.clone(), otps.clone());
            async move {
                let mut guard = pool.lock().await;
                let (devices, next) = &mut *guard;
                let i = *next % devices.len();
                *next += 1;
                let started = Instant::now();
                let result = bench.otp(&mut devices[i], with_pin).await;
                let elapsed = started.elapsed();
                match result {
                    Ok(otp) => {
                        if !with_pin {
                            otps.lock().unwrap().push(otp);
                        }
                        Some((elapsed, true))
                    }
                    Err(e) => {
                        eprintln!("{name} failed: {e:#}");
                        Some((elapsed, false))
                    }
                }
            }
        })
        .await;
        report.print(name);
    }

    // Verify each OTP issued above once, until they run out or time does.
    let report = phase(&cpu, args.concurrency, args.seconds, |_| {
        let (otps, bench) = (otps.clone(), bench.clone());
        async move {
            let otp = otps.lock().unwrap().pop()?;
            let started = Instant::now();
            let ok = bench.verify(&otp).await;
            if let Err(e) = &ok {
                eprintln!("verify failed: {e:#}");
            }
            Some((started.elapsed(), ok.is_ok()))
        }
    })
    .await;
    report.print("rp verify");
    Ok(())
}

/// A worker's devices and the index of the next one to use.
type DevicePool = (Vec<SimDevice>, usize);

// ---- phases and figures ------------------------------------------------------------------

struct Report {
    latencies: Vec<Duration>,
    errors: usize,
    wall: Duration,
    server_cpu: Option<Duration>,
}

impl Report {
    fn print(&self, name: &str) {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        let pct = |p: f64| -> f64 {
            if l.is_empty() {
                return 0.0;
            }
            let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
            l[i].as_secs_f64() * 1e3
        };
        let ops = l.len();
        let per_op = match self.server_cpu {
            Some(cpu) if ops > 0 => format!("{:.0}", cpu.as_secs_f64() * 1e6 / ops as f64),
            _ => "-".to_string(),
        };
        println!(
            "{:<16} {:>8} {:>7} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>14}",
            name,
            ops,
            self.errors,
            ops as f64 / self.wall.as_secs_f64().max(1e-9),
            pct(0.50),
            pct(0.90),
            pct(0.99),
            per_op
        );
    }
}

/// Runs `workers` loops of `op` (which returns `None` when out of work) for `seconds`.
async fn phase<F, Fut>(cpu: &CpuMeter, workers: usize, seconds: f64, op: F) -> Report
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Option<(Duration, bool)>> + Send + 'static,
{
    let cpu_before = cpu.read();
    let started = Instant::now();
    let deadline = (seconds.is_finite()).then(|| started + Duration::from_secs_f64(seconds));
    let op = Arc::new(op);
    let results = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let mut tasks = Vec::new();
    // The workers run on this task: device-side crypto then uses one core, leaving the
    // other to the server on a two-core machine.
    for w in 0..workers.max(1) {
        let fut_factory = op.clone();
        let results = results.clone();
        let mut next = Some(fut_factory(w));
        let worker = async move {
            while let Some(fut) = next.take() {
                match fut.await {
                    None => break,
                    Some((elapsed, ok)) => {
                        let mut r = results.lock().unwrap();
                        if ok {
                            r.0.push(elapsed);
                        } else {
                            r.1 += 1;
                        }
                    }
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                next = Some(fut_factory(w));
            }
        };
        tasks.push(worker);
    }
    futures::future::join_all(tasks).await;
    let wall = started.elapsed();
    let server_cpu = cpu_before.and_then(|b| cpu.read().map(|a| a.saturating_sub(b)));
    let (latencies, errors) = std::mem::take(&mut *results.lock().unwrap());
    Report {
        latencies,
        errors,
        wall,
        server_cpu,
    }
}

/// Sum of user + system CPU time of the server processes, from `/proc/<pid>/stat`.
struct CpuMeter {
    pids: Vec<u32>,
    ticks_per_second: u64,
}

impl CpuMeter {
    fn new(pids: Vec<u32>) -> CpuMeter {
        let ticks_per_second = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100);
        CpuMeter {
            pids,
            ticks_per_second,
        }
    }

    /// CPU of the given processes and all their descendants (PostgreSQL backends are children
    /// of the postmaster, so passing its pid counts the database too).
    fn read(&self) -> Option<Duration> {
        if self.pids.is_empty() {
            return None;
        }
        let mut stats: HashMap<u32, (u32, u64)> = HashMap::new();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(stat) = proc_stat(pid) {
                stats.insert(pid, stat);
            }
        }
        let mut ticks = 0u64;
        let mut todo = self.pids.clone();
        let mut seen = std::collections::HashSet::new();
        while let Some(pid) = todo.pop() {
            if !seen.insert(pid) {
                continue;
            }
            ticks += stats.get(&pid)?.1;
            todo.extend(
                stats
                    .iter()
                    .filter(|(_, (ppid, _))| *ppid == pid)
                    .map(|(child, _)| *child),
            );
        }
        Some(Duration::from_secs_f64(
            ticks as f64 / self.ticks_per_second as f64,
        ))
    }
}

/// `(parent pid, user + system ticks)` from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: ppid is the 4th field, utime and stime the
    // 14th and 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((ppid, ticks))
}

// ---- the SMS inbox (webhook receiver) ----------------------------------------------------

#[derive(Clone)]
struct SmsInbox {
    codes: Arc<Mutex<HashMap<String, String>>>,
}

impl SmsInbox {
    async fn start(addr: SocketAddr) -> anyhow::Result<SmsInbox> {
        let inbox = SmsInbox {
            codes: Arc::new(Mutex::new(HashMap::new())),
        };
        let codes = inbox.codes.clone();
        let app = axum::Router::new().route(
            "/sms",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let codes = codes.clone();
                async move {
                    let to = body["to"].as_str().unwrap_or_default().to_string();
                    let text = body["text"].as_str().unwrap_or_default();
                    if let Some(code) = pims_server::sms::code_from_text(text) {
                        codes.lock().unwrap().insert(to, code);
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the SMS inbox on {addr}"))?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(inbox)
    }

    /// The server delivers before it answers, so the code is there once the send returned.
    fn code(&self, to: &str) -> anyhow::Result<String> {
        self.codes.lock().unwrap().get(to).cloned().ok_or_else(|| {
            anyhow!(
                "no SMS reached the bench for {to}: is the server's sms_gateway the bench webhook?"
            )
        })
    }
}

// ---- simulated devices -------------------------------------------------------------------

struct SimDevice {
    url: String,
    token: String,
    phone: String,
    key: SigningKey,
    id: String,
    activation_nonce: Vec<u8>,
    counter: u64,
}

impl SimDevice {
    fn new(url: String, token: String, i: usize) -> SimDevice {
        // Distinct numbers per run too, so the per-number SMS limit never binds.
        let run = std::process::id() % 1000;
        SimDevice {
            url,
            token,
            phone: format!("+336{run:03}{i:05}"),
            key: SigningKey::random(&mut OsRng),
            id: String::new(),
            activation_nonce: Vec::new(),
            counter: 0,
        }
    }

    fn public_key(&self) -> Vec<u8> {
        self.key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// Low-S, as the SDK signs: the server refuses the high-S twin.
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.key.sign(message);
        let sig = sig.normalize_s().unwrap_or(sig);
        DerSignature::from(sig).as_bytes().to_vec()
    }
}

/// The device-side PIN stretching of simulated devices: cheap on purpose (see module doc).
fn ksf() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(8, 1, 1, None).expect("valid Argon2 parameters"),
    )
}

struct Bench {
    http: reqwest::Client,
    urls: Vec<String>,
    inbox: SmsInbox,
    rp: (String, String),
    next_verifier: AtomicUsize,
}

impl Bench {
    async fn token(&self, url: &str, subject: &str) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!("{url}/v1/dev/tokens"))
            .json(&DevTokenRequest {
                subject: subject.into(),
            })
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "minting a token failed ({}): the bench needs dev_issuer = true",
                r.status()
            );
        }
        Ok(r.json::<DevToken>().await?.access_token)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        d: &SimDevice,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let r = self
            .http
            .post(format!("{}{path}", d.url))
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .header(TRANSACTION_HEADER, uuid::Uuid::new_v4().to_string())
            .bearer_auth(&d.token)
            .json(body)
            .send()
            .await?;
        let status = r.status();
        let bytes = r.bytes().await?;
        if !status.is_success() {
            let error = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| format!("{:?}", b.error))
                .unwrap_or_else(|_| status.to_string());
            bail!("{path}: {error}");
        }
        if bytes.is_empty() {
            // 204 answers: decode `null`.
            return Ok(serde_json::from_slice(b"null")?);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Certify the number, register the PIN, enroll and activate: one full enrollment.
    async fn enroll(&self, d: &mut SimDevice) -> anyhow::Result<()> {
        let _: SmsCodeSent = self
            .post(
                d,
                "/v1/sms-codes",
                &SendSmsCode {
                    purpose: SmsPurpose::PhoneCertification,
                    phone_number: Some(d.phone.clone()),
                    region: None,
                },
            )
            .await?;
        let code = self.inbox.code(&d.phone)?;
        let _: Option<()> = self
            .post(
                d,
                "/v1/phone-number",
                &AddPhoneNumber {
                    phone_number: d.phone.clone(),
                    region: None,
                    sms_code: code,
                },
            )
            .await?;
        let _: SmsCodeSent = self
            .post(
                d,
                "/v1/sms-codes",
                &SendSmsCode {
                    purpose: SmsPurpose::Enrollment,
                    phone_number: None,
                    region: None,
                },
            )
            .await?;
        let code = self.inbox.code(&d.phone)?;
        let registration = ClientRegistration::<PinSuite>::start(&mut OsRng, PIN.as_bytes())
            .map_err(|e| anyhow!("OPAQUE start: {e:?}"))?;
        let started: EnrollmentStarted = self
            .post(
                d,
                "/v1/enrollments",
                &StartEnrollment {
                    sms_code: code,
                    phone_number: None,
                    region: None,
                    pin: PinStart::Register(registration.message.serialize().to_vec().into()),
                },
            )
            .await?;
        let PinStart::Register(response) = &started.pin else {
            bail!("the server asked for a PIN login on a new account");
        };
        let ksf = ksf();
        let done = registration
            .state
            .finish(
                &mut OsRng,
                PIN.as_bytes(),
                RegistrationResponse::deserialize(response.as_slice())
                    .map_err(|e| anyhow!("OPAQUE response: {e:?}"))?,
                ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&ksf)),
            )
            .map_err(|e| anyhow!("OPAQUE finish: {e:?}"))?;
        let pin = PinFinish::Register(done.message.serialize().to_vec().into());
        let signature = d.sign(&transcript::enrollment(
            &started.enrollment_id,
            started.nonce.as_slice(),
            &d.public_key(),
            pin.proof(),
        ));
        let finished: EnrollmentFinished = self
            .post(
                d,
                &format!("/v1/enrollments/{}/finish", started.enrollment_id),
                &FinishEnrollment {
                    idempotency_key: uuid::Uuid::new_v4().to_string(),
                    pin,
                    device: NewDevice {
                        public_key: d.public_key().into(),
                        name: "bench device".into(),
                        platform: Platform::Android,
                    },
                    signature: signature.into(),
                },
            )
            .await?;
        d.id = finished.device_id;
        d.activation_nonce = finished.activation_nonce.0;
        d.counter += 1;
        let signature = d.sign(&transcript::activation(
            &d.id,
            &d.activation_nonce,
            d.counter,
        ));
        let _: Option<()> = self
            .post(
                d,
                &format!("/v1/devices/{}/activate", d.id),
                &ActivateDevice {
                    counter: d.counter,
                    signature: signature.into(),
                },
            )
            .await?;
        Ok(())
    }

    /// Challenge then OTP; returns the OTP.
    async fn otp(&self, d: &mut SimDevice, with_pin: bool) -> anyhow::Result<String> {
        let login = if with_pin {
            Some(
                ClientLogin::<PinSuite>::start(&mut OsRng, PIN.as_bytes())
                    .map_err(|e| anyhow!("OPAQUE start: {e:?}"))?,
            )
        } else {
            None
        };
        let request: Option<Bytes> = login
            .as_ref()
            .map(|l| l.message.serialize().to_vec().into());
        let proof = request.as_ref().map(|r| {
            d.counter += 1;
            LoginProof {
                counter: d.counter,
                signature: d
                    .sign(&transcript::login_start(&d.id, d.counter, r.as_slice()))
                    .into(),
            }
        });
        let challenge: OtpChallenge = self
            .post(
                d,
                "/v1/otp/challenges",
                &OtpChallengeRequest {
                    device_id: d.id.clone(),
                    pin: request,
                    audience: None,
                    proof,
                },
            )
            .await?;
        let pin = match login {
            None => None,
            Some(l) => {
                let response = challenge
                    .pin
                    .as_ref()
                    .ok_or_else(|| anyhow!("no PIN response in the challenge"))?;
                let ksf = ksf();
                let done = l
                    .state
                    .finish(
                        &mut OsRng,
                        PIN.as_bytes(),
                        CredentialResponse::deserialize(response.as_slice())
                            .map_err(|e| anyhow!("OPAQUE response: {e:?}"))?,
                        ClientLoginFinishParameters::new(None, Identifiers::default(), Some(&ksf)),
                    )
                    .map_err(|e| anyhow!("OPAQUE login finish: {e:?}"))?;
                Some(PinFinish::Login(done.message.serialize().to_vec().into()))
            }
        };
        d.counter += 1;
        let proof = pin.as_ref().map_or(&[][..], PinFinish::proof);
        let signature = d.sign(&transcript::otp(
            &challenge.challenge_id,
            challenge.nonce.as_slice(),
            &d.id,
            d.counter,
            proof,
        ));
        let issued: OtpIssued = self
            .post(
                d,
                "/v1/otp",
                &OtpRequest {
                    challenge_id: challenge.challenge_id,
                    counter: d.counter,
                    pin,
                    signature: signature.into(),
                },
            )
            .await?;
        Ok(issued.otp)
    }

    async fn verify(&self, otp: &str) -> anyhow::Result<()> {
        let i = self.next_verifier.fetch_add(1, Ordering::Relaxed);
        let url = &self.urls[i % self.urls.len()];
        let r = self
            .http
            .post(format!("{url}/v1/otp/verify"))
            .header(
                "authorization",
                format!(
                    "Basic {}",
                    STANDARD.encode(format!("{}:{}", self.rp.0, self.rp.1))
                ),
            )
            .json(&VerifyOtp { otp: otp.into() })
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("verify answered {}", r.status());
        }
        Ok(())
    }
}
