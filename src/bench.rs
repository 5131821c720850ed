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
use base64::{engine::general_purpose::STANDARD, Engine};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use pims_device::Stretching;
use pims_proto::endpoint::{self as ep, Endpoint};
use pims_proto::*;
use rand::rngs::OsRng;

const PIN: &str = "1234";

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Server base URL; repeat for replicas (devices are spread over them).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Simulated devices (each its own account and phone number).
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// Accounts to enroll before the timed phases, so that they run against a larger table.
    /// Each gets what a real enrollment leaves (a certified number, the PIN, one active
    /// device), through the same API calls as the enroll phase; not counted in any figure.
    /// Raise the servers' `sms_sends_per_hour_per_address`: every account takes two SMS.
    #[arg(long, default_value_t = 0)]
    accounts: usize,
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
    /// Run a simulated car in this process, listening here, and add the signed-command phases
    /// (server CPU per command relayed, with and without the PIN). The servers must relay to
    /// it: `[[commands.vehicles]]` with `--vin` and this address. The car's own CPU is this
    /// process's, not counted as the server's.
    #[arg(long)]
    car_listen: Option<SocketAddr>,
    #[arg(long, default_value = "VR3UPHNKSKT101603")]
    vin: String,
    #[arg(long, default_value = "demo-rp")]
    rp_id: String,
    #[arg(long, default_value = "demo-rp-secret")]
    rp_secret: String,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.devices + args.accounts > NUMBERS_PER_RUN {
        bail!("--devices plus --accounts may not exceed {NUMBERS_PER_RUN}");
    }
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
    let car_dir = tempfile::tempdir()?;
    let car = match args.car_listen {
        None => None,
        Some(listen) => Some(start_car(&args, listen, car_dir.path()).await?),
    };
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
    if args.accounts > 0 {
        prepopulate(&bench, args.devices, args.accounts, args.concurrency).await?;
    }
    println!(
        "{:<16} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9} {:>14} {:>12}",
        "operation",
        "ops",
        "errors",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "server µs/op",
        "disk KiB/op"
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

    if let Some(car) = &car {
        // Each device's key on the car's keychain, by the code the car shows.
        for pool in &pools {
            for d in pool.lock().await.0.iter() {
                let code = car.new_pairing_code()?;
                let mac = pims_command::pairing_mac(&code, &args.vin, &d.public_key());
                let pair = PairVehicle {
                    device_id: d.id.clone(),
                    mac: mac.to_vec().into(),
                };
                bench
                    .call::<ep::VehiclePair>(d, &[&args.vin], &pair)
                    .await?;
            }
        }
        for (name, with_pin) in [("command no PIN", false), ("command with PIN", true)] {
            let report = phase(&cpu, workers, args.seconds, |w| {
                let (pool, bench, vin) = (pools[w].clone(), bench.clone(), args.vin.clone());
                async move {
                    let mut guard = pool.lock().await;
                    let (devices, next) = &mut *guard;
                    let i = *next % devices.len();
                    *next += 1;
                    let started = Instant::now();
                    let result = bench.command(&mut devices[i], &vin, with_pin).await;
                    if let Err(e) = &result {
                        eprintln!("{name} failed: {e:#}");
                    }
                    Some((started.elapsed(), result.is_ok()))
                }
            })
            .await;
            report.print(name);
        }
    }

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
    floor(500)?;
    Ok(())
}

// ---- the floor ----------------------------------------------------------------------------

/// What an OTP with PIN cannot cost less than on this machine, timed in this process right
/// after the phases (the servers idle then), on one thread: the server's side of one OPAQUE login (start
/// and finish, the device's side not counted), the ECDSA P-256 verification the server runs
/// (twice per OTP with PIN: the signed login start and the OTP request), and two small SQLite
/// transactions (one per request) in WAL mode without their fsync — the server's group commit
/// shares one fsync among all the steps waiting, so under load a step's share of it is small.
/// `rounds` of each.
fn floor(rounds: usize) -> anyhow::Result<()> {
    // The median of five batches: the floor is what this machine does when nothing else runs.
    let mut batches = (0..5)
        .map(|_| floor_batch(rounds / 5))
        .collect::<anyhow::Result<Vec<_>>>()?;
    batches.sort_by(|a, b| a.3.total_cmp(&b.3));
    let (login, verify, two, _) = batches[2];
    println!(
        "floor (this process, µs per op, median of 5 batches): OPAQUE server login \
         {login:.0} µs, ECDSA verify {verify:.0} µs, two transactions (fsync shared) {two:.0} \
         µs; OTP with PIN floor (login + 2 verify + 2 transactions) {:.0} µs, OTP without PIN \
         (verify + 2 transactions) {:.0} µs",
        login + 2.0 * verify + two,
        verify + two
    );
    Ok(())
}

/// One batch of the floor: µs per op of the login, the verify, two transactions, and the
/// OTP-with-PIN sum.
fn floor_batch(rounds: usize) -> anyhow::Result<(f64, f64, f64, f64)> {
    use pims_proto::pin::opaque_ke::ServerSetup;
    use pims_server::service::crypto;

    let setup = ServerSetup::<pims_proto::pin::PinSuite>::new(&mut OsRng);
    let pin = PIN.as_bytes();
    let (exchange, request) = pims_device::pin::start(pin, true);
    let response = crypto::registration_response(&setup, "floor", "c", request.as_slice())
        .map_err(|e| anyhow!("{e:?}"))?;
    let PinFinish::Register(upload) =
        pims_device::pin::finish(exchange, pin, &response, Stretching::Cheap)
            .map_err(|_| anyhow!("registration"))?
    else {
        bail!("registration did not finish");
    };
    let record = crypto::registration_record(upload.as_slice()).map_err(|e| anyhow!("{e:?}"))?;
    let mut login = Duration::ZERO;
    for _ in 0..rounds {
        let (exchange, request) = pims_device::pin::start(pin, false);
        let before = Instant::now();
        let started = crypto::login_start(&setup, "floor", "c", &record, request.as_slice())?;
        login += before.elapsed();
        let finish = pims_device::pin::finish(exchange, pin, &started.message, Stretching::Cheap)
            .map_err(|_| anyhow!("login"))?;
        let PinFinish::Login(finalization) = finish else {
            bail!("the floor's login failed");
        };
        let before = Instant::now();
        let ok = crypto::login_finish(&started.state, finalization.as_slice());
        login += before.elapsed();
        anyhow::ensure!(ok, "the floor's login did not verify");
    }

    let device = SimDevice::new(String::new(), String::new(), 0);
    let message = [7u8; 200];
    let signature = device.sign(&message);
    let public_key = device.public_key();
    let before = Instant::now();
    for _ in 0..rounds {
        anyhow::ensure!(crypto::signature_ok(&public_key, &message, &signature));
    }
    let verify = before.elapsed();

    let dir = tempfile::tempdir()?;
    let db = rusqlite::Connection::open(dir.path().join("floor.sqlite3"))?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);",
    )?;
    let before = Instant::now();
    for _ in 0..rounds * 2 {
        db.execute_batch("BEGIN IMMEDIATE; INSERT INTO t (v) VALUES (randomblob(64)); COMMIT;")?;
    }
    let transactions = before.elapsed();

    let us = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    let (login, verify, two) = (
        us(login, rounds),
        us(verify, rounds),
        us(transactions, rounds),
    );
    Ok((login, verify, two, login + 2.0 * verify + two))
}

/// A simulated car in this process, pinning the first server's co-signing key.
async fn start_car(
    args: &BenchArgs,
    listen: SocketAddr,
    dir: &std::path::Path,
) -> anyhow::Result<Arc<pims_vehicle::Vehicle>> {
    let car = pims_vehicle::Vehicle::open(pims_vehicle::VehicleConfig {
        vin: args.vin.clone(),
        audience: "pims-commands".into(),
        data: dir.join("car.sqlite3"),
        pin_cosign_key: None,
        server: Some(args.urls[0].clone()),
        policy: Default::default(),
        clock: None,
    })
    .await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let router = car.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(car)
}

/// A worker's devices and the index of the next one to use.
type DevicePool = (Vec<SimDevice>, usize);

/// Enrolls `count` accounts, numbered after the `devices` simulated devices, `concurrency` at a
/// time; stops at the first failure, since a partial table would mislabel the figures.
async fn prepopulate(
    bench: &Arc<Bench>,
    devices: usize,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    use futures::{StreamExt, TryStreamExt};
    let started = Instant::now();
    futures::stream::iter(devices..devices + count)
        .map(Ok)
        .try_for_each_concurrent(concurrency.max(1), |i| {
            let bench = bench.clone();
            async move {
                let url = bench.urls[i % bench.urls.len()].clone();
                let token = bench
                    .token(&url, &format!("bench-{}-{i}", std::process::id()))
                    .await?;
                let mut account = SimDevice::new(url, token, i);
                bench
                    .enroll(&mut account)
                    .await
                    .with_context(|| format!("pre-populating account {i}"))
            }
        })
        .await?;
    println!(
        "pre-populated {count} accounts in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---- phases and figures ------------------------------------------------------------------

struct Report {
    latencies: Vec<Duration>,
    errors: usize,
    wall: Duration,
    server: Option<Usage>,
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
        let (per_op, written) = match &self.server {
            Some(u) if ops > 0 => (
                format!("{:.0}", u.cpu.as_secs_f64() * 1e6 / ops as f64),
                format!("{:.1}", u.written as f64 / 1024.0 / ops as f64),
            ),
            _ => ("-".to_string(), "-".to_string()),
        };
        println!(
            "{:<16} {:>8} {:>7} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>14} {:>12}",
            name,
            ops,
            self.errors,
            ops as f64 / self.wall.as_secs_f64().max(1e-9),
            pct(0.50),
            pct(0.90),
            pct(0.99),
            per_op,
            written
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
    let server = cpu_before.and_then(|b| cpu.read().map(|a| a.since(&b)));
    let (latencies, errors) = std::mem::take(&mut *results.lock().unwrap());
    Report {
        latencies,
        errors,
        wall,
        server,
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

    /// CPU and storage writes of the given processes and all their descendants (PostgreSQL
    /// backends are children of the postmaster, so passing its pid counts the database too).
    fn read(&self) -> Option<Usage> {
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
        let (mut ticks, mut written) = (0u64, 0u64);
        let mut todo = self.pids.clone();
        let mut seen = std::collections::HashSet::new();
        while let Some(pid) = todo.pop() {
            if !seen.insert(pid) {
                continue;
            }
            ticks += stats.get(&pid)?.1;
            written += proc_write_bytes(pid).unwrap_or(0);
            todo.extend(
                stats
                    .iter()
                    .filter(|(_, (ppid, _))| *ppid == pid)
                    .map(|(child, _)| *child),
            );
        }
        Some(Usage {
            cpu: Duration::from_secs_f64(ticks as f64 / self.ticks_per_second as f64),
            written,
        })
    }
}

/// What the server processes used: CPU time, and bytes they sent to storage (the WAL, pages
/// and checkpoints; `write_bytes` of `/proc/<pid>/io`).
struct Usage {
    cpu: Duration,
    written: u64,
}

impl Usage {
    fn since(&self, before: &Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(before.cpu),
            written: self.written.saturating_sub(before.written),
        }
    }
}

/// `write_bytes` from `/proc/<pid>/io`.
fn proc_write_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))?
        .trim()
        .parse()
        .ok()
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
        SimDevice {
            url,
            token,
            phone: phone_number(std::process::id(), i),
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

/// Numbers available to one run (simulated devices plus pre-populated accounts).
const NUMBERS_PER_RUN: usize = 200_000;
/// Runs that get numbers of their own; runs are told apart by process id.
const RUNS: u32 = 400;
/// The digits that may follow `+33 6` with any seven digits after them: libphonenumber's French
/// mobile pattern is `6(?:[0-24-8]\d|3[0-8]|9[589])\d{6}`, so 63x and 69x are left out.
const FRENCH_MOBILE_SECOND_DIGITS: &[u8; 8] = b"01245678";

/// A valid French mobile number, distinct for each `(pid % RUNS, index)` so that the
/// per-number SMS limit never binds across runs: `+33 6 D SSSSSSS`, where the serial
/// `run * NUMBERS_PER_RUN + index` (below 8 × 10^7) picks D and the seven digits S.
fn phone_number(pid: u32, index: usize) -> String {
    assert!(index < NUMBERS_PER_RUN, "index {index} out of range");
    let serial = (pid % RUNS) as usize * NUMBERS_PER_RUN + index;
    let second = FRENCH_MOBILE_SECOND_DIGITS[serial / 10_000_000] as char;
    format!("+336{second}{:07}", serial % 10_000_000)
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
            .post(format!("{url}{}", ep::DevTokens::ROUTE.path))
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

    /// A device's call of operation `E` (a POST), its path parameters filled by `values`.
    async fn call<E: Endpoint>(
        &self,
        d: &SimDevice,
        values: &[&str],
        body: &E::Request,
    ) -> anyhow::Result<E::Response> {
        let path = E::ROUTE.path(values);
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
            // 204 answers.
            return Ok(serde_json::from_slice(b"{}")?);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Certify the number, register the PIN, enroll and activate: one full enrollment.
    async fn enroll(&self, d: &mut SimDevice) -> anyhow::Result<()> {
        self.call::<ep::SmsCodes>(
            d,
            &[],
            &SendSmsCode {
                purpose: SmsPurpose::PhoneCertification,
                phone_number: Some(d.phone.clone()),
                region: None,
            },
        )
        .await?;
        let code = self.inbox.code(&d.phone)?;
        self.call::<ep::PhoneNumberAdd>(
            d,
            &[],
            &AddPhoneNumber {
                phone_number: d.phone.clone(),
                region: None,
                sms_code: code,
            },
        )
        .await?;
        self.call::<ep::SmsCodes>(
            d,
            &[],
            &SendSmsCode {
                purpose: SmsPurpose::Enrollment,
                phone_number: None,
                region: None,
            },
        )
        .await?;
        let code = self.inbox.code(&d.phone)?;
        let (enrollment, start) =
            pims_device::start_enrollment(code, None, None, PIN.as_bytes(), true);
        let started = self.call::<ep::EnrollmentStart>(d, &[], &start).await?;
        let device = NewDevice {
            public_key: d.public_key().into(),
            name: "bench device".into(),
            platform: Platform::Android,
        };
        let key = uuid::Uuid::new_v4().to_string();
        let finish = enrollment
            .finish(PIN.as_bytes(), &started, device, key, Stretching::Cheap)
            .map_err(|_| anyhow!("the server's enrollment answer is malformed"))?;
        let request = finish.sign_with(|t| d.sign(t));
        let finished = self
            .call::<ep::EnrollmentFinish>(d, &[&started.enrollment_id], &request)
            .await?;
        d.id = finished.device_id;
        d.activation_nonce = finished.activation_nonce.0;
        d.counter += 1;
        let activation = pims_device::activation(&d.id, &d.activation_nonce, d.counter);
        let request = activation.sign_with(|t| d.sign(t));
        self.call::<ep::DeviceActivate>(d, &[&d.id], &request)
            .await?;
        Ok(())
    }

    /// Challenge then OTP; returns the OTP.
    async fn otp(&self, d: &mut SimDevice, with_pin: bool) -> anyhow::Result<String> {
        let login = with_pin.then(|| pims_device::pin::start(PIN.as_bytes(), false));
        let proof = login.as_ref().map(|(_, request)| {
            d.counter += 1;
            let proof = pims_device::login_proof(&d.id, d.counter, request.as_slice());
            proof.sign_with(|t| d.sign(t))
        });
        let challenge = self
            .call::<ep::OtpChallenges>(
                d,
                &[],
                &OtpChallengeRequest {
                    device_id: d.id.clone(),
                    pin: login.as_ref().map(|(_, request)| request.clone()),
                    audience: None,
                    proof,
                },
            )
            .await?;
        let pin = match login {
            None => None,
            Some((exchange, _)) => {
                let response = challenge
                    .pin
                    .as_ref()
                    .ok_or_else(|| anyhow!("no PIN response in the challenge"))?;
                let finish = pims_device::pin::finish(
                    exchange,
                    PIN.as_bytes(),
                    response.as_slice(),
                    Stretching::Cheap,
                )
                .map_err(|_| anyhow!("the server's PIN answer is malformed"))?;
                Some(finish)
            }
        };
        d.counter += 1;
        let otp = pims_device::otp_request(&challenge, &d.id, d.counter, pin);
        let request = otp.sign_with(|t| d.sign(t));
        let issued = self.call::<ep::Otp>(d, &[], &request).await?;
        Ok(issued.otp)
    }

    /// A signed command relayed to the car: horn without the PIN, unlock with it (the car
    /// answers 200 or 2360 "already unlocked": both are a verified, executed proof).
    async fn command(&self, d: &mut SimDevice, vin: &str, with_pin: bool) -> anyhow::Result<()> {
        let login = with_pin.then(|| pims_device::pin::start(PIN.as_bytes(), false));
        let proof = login.as_ref().map(|(_, request)| {
            d.counter += 1;
            let proof = pims_device::login_proof(&d.id, d.counter, request.as_slice());
            proof.sign_with(|t| d.sign(t))
        });
        let request = DeviceChallengeRequest {
            login: login.as_ref().map(|(_, request)| request.clone()),
            proof,
        };
        let challenge = self
            .call::<ep::DeviceChallenges>(d, &[&d.id], &request)
            .await?;
        let pin = match login {
            None => None,
            Some((exchange, _)) => {
                let response = challenge
                    .login
                    .as_ref()
                    .ok_or_else(|| anyhow!("no PIN response in the challenge"))?;
                let finish = pims_device::pin::finish(
                    exchange,
                    PIN.as_bytes(),
                    response.as_slice(),
                    Stretching::Cheap,
                )
                .map_err(|_| anyhow!("the server's PIN answer is malformed"))?;
                Some(pims_device::CommandPin::Login(finish))
            }
        };
        let command = match with_pin {
            true => pims_command::Command::UnlockDoors,
            false => pims_command::Command::Horn,
        };
        let expires_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            + 30;
        let order = pims_device::CommandOrder {
            vin: vin.into(),
            audience: "pims-commands".into(),
            command,
            expires_at,
        };
        d.counter += 1;
        let public_key = d.public_key();
        let request = pims_device::command(&challenge, &d.id, &public_key, d.counter, order, pin)
            .sign_with(|t| d.sign(t));
        let sent = self.call::<ep::Commands>(d, &[], &request).await?;
        match sent.receipt.code {
            200 | 2360 => Ok(()),
            code => bail!("the car answered {code} ({:?})", sent.receipt.fault),
        }
    }

    async fn verify(&self, otp: &str) -> anyhow::Result<()> {
        let i = self.next_verifier.fetch_add(1, Ordering::Relaxed);
        let url = &self.urls[i % self.urls.len()];
        let r = self
            .http
            .post(format!("{url}{}", ep::OtpVerify::ROUTE.path))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every run's first and last number, hence every second digit the numbers can start with,
    /// passes the server's own check (the `phonenumber` crate), and no two coincide.
    #[test]
    fn every_generated_number_is_a_distinct_valid_french_mobile() {
        let mut seen = std::collections::HashSet::new();
        for run in 0..RUNS {
            for index in [0, 1, NUMBERS_PER_RUN - 1] {
                let number = phone_number(run, index);
                assert_eq!(
                    pims_server::service::phone::parse_e164(&number, None).as_deref(),
                    Ok(number.as_str()),
                    "run {run}, index {index}"
                );
                assert!(seen.insert(number), "run {run}, index {index} repeats");
            }
        }
        // A process id past RUNS wraps onto a run's numbers rather than leaving the range.
        assert_eq!(phone_number(RUNS + 7, 3), phone_number(7, 3));
        let seconds: std::collections::HashSet<_> = seen.iter().map(|n| &n[4..5]).collect();
        assert_eq!(seconds.len(), FRENCH_MOBILE_SECOND_DIGITS.len());
    }
}
