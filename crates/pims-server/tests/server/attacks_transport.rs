//! Attacks from outside, over raw TCP and raw HTTP as an attacker would send them: slow and
//! exhausting connections, oversized bodies, malleated signatures, admin-token guessing,
//! disguised device names, SMS pumping. Each asserts the exact outcome.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p256::ecdsa::{DerSignature, Signature};
use pims_proto::endpoint::{self as ep, Endpoint};
use pims_proto::*;
use pims_server::config::AdminToken;
use pims_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const BYSTANDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A TCP connection to the server from `source` (any 127/8 address is this machine).
async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads one response (status, head, body) or fails after `within`.
async fn read_response(stream: &mut TcpStream, within: Duration) -> (u16, String, Vec<u8>) {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                return (status, head, buf[end + 4..end + 4 + length].to_vec());
            }
        }
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => panic!(
                "closed before a full response: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => panic!("no response within {within:?}"),
        }
    }
}

/// Whether the server closed `stream` (EOF or reset) within `within`; any bytes it sent
/// before closing (a 408, say) are skipped.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => return true,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => return true,
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => return false,
        }
    }
}

/// Still open: nothing to read, no EOF.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

async fn healthz_from(source: Ipv4Addr, server: SocketAddr) -> u16 {
    let mut c = connect_from(source, server).await;
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: pims\r\n\r\n")
        .await
        .unwrap();
    read_response(&mut c, Duration::from_secs(2)).await.0
}

/// Every log line written while `f` runs on this (current-thread) runtime.
async fn capture_logs<F: std::future::Future>(f: F) -> (F::Output, String) {
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let for_writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || for_writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let out = f.await;
    let text = String::from_utf8_lossy(&sink.0.lock().unwrap()).to_string();
    (out, text)
}

// ---- 1. slow-loris, connection exhaustion, body size --------------------------------------

#[tokio::test]
async fn slow_headers_neither_starve_others_nor_outlive_the_header_deadline() {
    const SLOW: usize = 300;
    let s = TestServer::start_with(|c| {
        c.http.header_read_timeout_seconds = 2;
        c.http.max_connections_per_address = 1000;
    })
    .await;
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut c = connect_from(ATTACKER, s.addr()).await;
        c.write_all(b"POST /v1/sms-codes HTTP/1.1\r\nHost: pims\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(c);
    }
    // A bystander is served at once while all of them hold their half-sent heads.
    let asked = Instant::now();
    assert_eq!(healthz_from(BYSTANDER, s.addr()).await, 200);
    assert!(asked.elapsed() < Duration::from_millis(1000));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "too slow to prove anything"
    );
    assert!(slow.iter().all(still_open));
    // Past the header deadline the server has closed every one of them.
    for (i, c) in slow.iter_mut().enumerate() {
        let left = Duration::from_secs(5).saturating_sub(started.elapsed());
        assert!(
            closed_within(c, left).await,
            "slow connection {i} still open"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed_at_once() {
    const CAP: usize = 4;
    let s = TestServer::start_with(|c| c.http.max_connections_per_address = CAP).await;
    let ((), logs) = capture_logs(async {
        let mut held = Vec::new();
        for _ in 0..CAP {
            held.push(connect_from(ATTACKER, s.addr()).await);
        }
        // Three more from the same address: each closed without being served.
        for _ in 0..3 {
            let mut extra = connect_from(ATTACKER, s.addr()).await;
            let _ = extra
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: pims\r\n\r\n")
                .await;
            assert!(closed_within(&mut extra, Duration::from_millis(500)).await);
        }
        // Another address is served; the admitted ones are still open and served too.
        assert_eq!(healthz_from(BYSTANDER, s.addr()).await, 200);
        assert!(held.iter().all(still_open));
        held[0]
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: pims\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            read_response(&mut held[0], Duration::from_secs(2)).await.0,
            200
        );
        // A place freed is a place for the same address again.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let mut c = connect_from(ATTACKER, s.addr()).await;
            let _ = c
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: pims\r\nConnection: close\r\n\r\n")
                .await;
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut answer)).await;
            if !answer.is_empty() {
                assert!(answer.starts_with(b"HTTP/1.1 200 "));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the freed place was never reused"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // One warning for the burst (rate-limited), naming the address.
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("connection refused: over the connection cap"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("WARN"));
    assert!(warnings[0].contains("client=127.0.0.1"));
    assert!(warnings[0].contains("cap=\"max_connections_per_address\""));
}

/// `127.0.block.host`: each `block` is its own /24, the unit of a connection share.
fn in_block(block: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, block, host)
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: pims\r\n\r\n";

/// A connection from `source` that has been served one request and is kept alive.
async fn served_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let mut c = connect_from(source, server).await;
    c.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut c, Duration::from_secs(2)).await.0, 200);
    c
}

#[tokio::test]
async fn connections_over_the_global_cap_are_closed_at_once_when_every_open_one_has_been_served() {
    let s = TestServer::start_with(|c| {
        c.http.max_connections = 3;
        c.http.max_connections_per_address = 100;
    })
    .await;
    // Three clients, each served and kept alive: none of them is closed to make room.
    let mut held = Vec::new();
    for block in [1, 2, 3] {
        held.push(served_from(in_block(block, 1), s.addr()).await);
    }
    let ((), logs) = capture_logs(async {
        for source in [in_block(4, 1), in_block(5, 1), in_block(6, 2)] {
            let mut extra = connect_from(source, s.addr()).await;
            let _ = extra.write_all(HEALTHZ).await;
            assert!(closed_within(&mut extra, Duration::from_millis(500)).await);
        }
    })
    .await;
    assert!(held.iter().all(still_open));
    held[2].write_all(HEALTHZ).await.unwrap();
    assert_eq!(
        read_response(&mut held[2], Duration::from_secs(2)).await.0,
        200
    );
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("connection refused: over the connection cap"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("cap=\"max_connections\""), "{logs}");
}

#[tokio::test]
async fn idle_connections_holding_the_global_cap_make_room_for_a_fresh_client() {
    // A share of 32 / 8 = 4 per /24: the attacker spreads 32 idle connections over 8 blocks
    // (two addresses each) and reopens each one as soon as the server closes it.
    const CAP: usize = 32;
    const ANSWERS: usize = 16;
    let s = TestServer::start_with(|c| {
        c.http.max_connections = CAP;
        c.http.max_connections_per_address = 100;
    })
    .await;
    let addr = s.addr();
    let sources: Vec<Ipv4Addr> = (0..CAP)
        .map(|i| in_block(10 + (i / 4) as u8, 1 + (i % 2) as u8))
        .collect();
    let mut first = Vec::new();
    for &source in &sources {
        first.push(connect_from(source, addr).await);
    }
    // The cap is full: every attacker connection is open, none sent a byte.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(first.iter().all(still_open));
    let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for (mut c, source) in first.into_iter().zip(sources) {
        let closed = closed.clone();
        attackers.push(tokio::spawn(async move {
            loop {
                let mut byte = [0u8; 1];
                let _ = c.read(&mut byte).await; // EOF or reset: closed by the server
                closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                c = connect_from(source, addr).await;
            }
        }));
    }
    // A fresh client from another block, one new connection per request, is answered each time.
    let started = Instant::now();
    for i in 0..ANSWERS {
        let mut c = connect_from(in_block(99, 1), addr).await;
        c.write_all(HEALTHZ).await.unwrap();
        let (status, _, _) = read_response(&mut c, Duration::from_secs(2)).await;
        assert_eq!(status, 200, "request {i}");
    }
    let took = started.elapsed();
    for a in &attackers {
        a.abort();
    }
    let closed = closed.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{ANSWERS}/{ANSWERS} answered in {took:?}; attacker connections closed: {closed}");
    assert!(closed > 0);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test]
async fn one_address_block_holds_at_most_its_share_of_the_global_cap() {
    // A share of 32 / 8 = 4 connections per /24, whatever the addresses inside it.
    let s = TestServer::start_with(|c| {
        c.http.max_connections = 32;
        c.http.max_connections_per_address = 100;
    })
    .await;
    let ((), logs) = capture_logs(async {
        let mut held = Vec::new();
        for host in 1..=4 {
            held.push(connect_from(in_block(20, host), s.addr()).await);
        }
        // Past the share, from further addresses of the same /24: closed at once, unserved.
        for host in [5, 6, 1] {
            let mut extra = connect_from(in_block(20, host), s.addr()).await;
            let _ = extra.write_all(HEALTHZ).await;
            assert!(closed_within(&mut extra, Duration::from_millis(500)).await);
        }
        // Another /24 still connects and is served, and so are the block's admitted ones.
        assert_eq!(healthz_from(in_block(21, 1), s.addr()).await, 200);
        assert!(held.iter().all(still_open));
        held[3].write_all(HEALTHZ).await.unwrap();
        assert_eq!(
            read_response(&mut held[3], Duration::from_secs(2)).await.0,
            200
        );
    })
    .await;
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("connection refused: over the connection cap"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("client=127.0.20.0/24"), "{logs}");
    assert!(
        warnings[0].contains("cap=\"max_connections share of an address block\""),
        "{logs}"
    );
}

#[tokio::test]
async fn a_served_kept_alive_connection_is_not_evicted_for_newcomers_but_idle_ones_are() {
    // One connection per /24 (a share of 4 / 8, at least one), so that only the global cap acts.
    let s = TestServer::start_with(|c| {
        c.http.max_connections = 4;
        c.http.max_connections_per_address = 100;
    })
    .await;
    let addr = s.addr();
    let ((), logs) = capture_logs(async {
        // The oldest connection is a client served once and kept alive; three idle ones follow.
        let mut client = served_from(in_block(30, 1), addr).await;
        let mut idle = Vec::new();
        for block in [31, 32, 33] {
            idle.push(connect_from(in_block(block, 1), addr).await);
        }
        // Each newcomer at the full cap closes the oldest idle one, not the client, and is
        // served itself (then kept alive).
        let mut newcomers = Vec::new();
        for (i, block) in [34, 35, 36].into_iter().enumerate() {
            newcomers.push(served_from(in_block(block, 1), addr).await);
            assert!(
                closed_within(&mut idle[i], Duration::from_millis(500)).await,
                "idle connection {i} still open"
            );
            assert!(idle[i + 1..].iter().all(still_open), "after newcomer {i}");
            assert!(still_open(&client));
        }
        // No idle connection is left: the next newcomer is refused, and nobody is closed.
        let mut refused = connect_from(in_block(37, 1), addr).await;
        let _ = refused.write_all(HEALTHZ).await;
        assert!(closed_within(&mut refused, Duration::from_millis(500)).await);
        assert!(still_open(&client));
        assert!(newcomers.iter().all(still_open));
        // The kept-alive client answers its second request on the same connection.
        client.write_all(HEALTHZ).await.unwrap();
        assert_eq!(
            read_response(&mut client, Duration::from_secs(2)).await.0,
            200
        );
    })
    .await;
    // The three evictions: one warning (rate-limited) naming the first one closed.
    let evictions: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("connection closed before its first request to admit another"))
        .collect();
    assert_eq!(evictions.len(), 1, "{logs}");
    assert!(evictions[0].contains("client=127.0.31.1"), "{logs}");
    assert!(evictions[0].contains("cap=\"max_connections\""), "{logs}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let s = TestServer::start_with(|c| c.http.keep_alive_timeout_seconds = 1).await;
    let mut c = connect_from(ATTACKER, s.addr()).await;
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: pims\r\n\r\n")
        .await
        .unwrap();
    let (status, head, _) = read_response(&mut c, Duration::from_secs(2)).await;
    assert_eq!(status, 200);
    assert!(!head.to_ascii_lowercase().contains("connection: close"));
    let answered = Instant::now();
    assert!(!closed_within(&mut c, Duration::from_millis(500)).await);
    assert!(closed_within(&mut c, Duration::from_secs(2)).await);
    assert!(answered.elapsed() >= Duration::from_secs(1));
}

async fn raw_post(s: &TestServer, token: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut c = connect_from(ATTACKER, s.addr()).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: pims\r\nAuthorization: Bearer {token}\r\n\
         {PROTOCOL_HEADER}: {PROTOCOL_VERSION}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    // The server may answer before reading it all: write and read at once.
    let (mut reader, mut writer) = c.into_split();
    let body = body.to_vec();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&body).await;
        writer
    });
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut buf)).await;
    drop(writing.await);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn a_one_mebibyte_body_gets_413_unread() {
    let s = TestServer::start().await;
    let token = s.token("mallory").await;
    let mut body = br#"{"purpose":"phone_certification","phoneNumber":""#.to_vec();
    body.extend(std::iter::repeat_n(b'1', 1 << 20));
    body.extend_from_slice(br#""}"#);
    let (status, text) = raw_post(&s, &token, ep::SmsCodes::ROUTE.path, &body).await;
    assert_eq!(status, 413, "{text}");
    // A chunked body (no length announced) is cut at the limit too.
    let mut c = connect_from(ATTACKER, s.addr()).await;
    let head = format!(
        "POST /v1/sms-codes HTTP/1.1\r\nHost: pims\r\nAuthorization: Bearer {token}\r\n\
         {PROTOCOL_HEADER}: {PROTOCOL_VERSION}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "1".repeat(16 * 1024));
    for _ in 0..5 {
        c.write_all(chunk.as_bytes()).await.unwrap();
    }
    assert_eq!(read_response(&mut c, Duration::from_secs(5)).await.0, 413);
    // A body within the limit is still read and judged.
    assert_eq!(
        s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
            .await
            .map(|_| ()),
        Ok(())
    );
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_408_at_the_request_deadline() {
    let s = TestServer::start_with(|c| c.http.request_timeout_seconds = 1).await;
    let token = s.token("mallory").await;
    let mut c = connect_from(ATTACKER, s.addr()).await;
    let head = format!(
        "POST /v1/sms-codes HTTP/1.1\r\nHost: pims\r\nAuthorization: Bearer {token}\r\n\
         {PROTOCOL_HEADER}: {PROTOCOL_VERSION}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"purpose\":"
    );
    let sent = Instant::now();
    c.write_all(head.as_bytes()).await.unwrap();
    let (status, head, _) = read_response(&mut c, Duration::from_secs(3)).await;
    assert_eq!(status, 408);
    assert!(sent.elapsed() >= Duration::from_secs(1));
    assert!(head.to_ascii_lowercase().contains("connection: close"));
    assert!(closed_within(&mut c, Duration::from_secs(2)).await);
}

// ---- 2. development issuer --------------------------------------------------------------

#[tokio::test]
async fn the_development_issuer_never_starts_on_a_network_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::development(dir.path());
    config.listen = "0.0.0.0:0".parse().unwrap();
    let e = pims_server::start(config).await.err().expect("refused");
    assert!(
        e.to_string()
            .contains("dev_issuer = true needs a loopback listen address"),
        "{e:#}"
    );
}

// ---- 3./4. files and durability -----------------------------------------------------------

#[cfg(unix)]
#[tokio::test]
async fn database_wal_shm_and_outbox_are_private_and_commits_are_full_sync() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.certify_phone(&token, PHONE).await;
    let db = s.config.database_path.clone();
    let side = |suffix: &str| {
        let mut p = db.as_os_str().to_os_string();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    for path in [db.clone(), side("-wal"), side("-shm"), s.outbox()] {
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
    // The store's own connection (pragmas are per connection) runs synchronous=FULL (2).
    let dir = tempfile::tempdir().unwrap();
    let store = pims_server::store::sqlite::SqliteStore::open(
        &dir.path().join("x.sqlite3"),
        pims_server::audit::AuditKey::new([7; 32]),
    )
    .unwrap();
    assert_eq!(store.pragma("synchronous").await.unwrap(), 2);
    assert_eq!(
        std::fs::metadata(dir.path().join("x.sqlite3"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

// ---- 6. malleated signatures --------------------------------------------------------------

/// `(r, n − s)`: the other valid encoding of the same signature.
fn high_s_twin(der: &[u8]) -> Vec<u8> {
    let sig = Signature::from_der(der).unwrap();
    assert!(sig.normalize_s().is_none(), "the original is low-S");
    let (r, s) = sig.split_scalars();
    let twin = Signature::from_scalars(r, -*s).unwrap();
    assert!(twin.normalize_s().is_some());
    DerSignature::from(twin).as_bytes().to_vec()
}

async fn otp_signed_with(
    s: &TestServer,
    token: &str,
    device: &Device,
    counter: u64,
    twin: bool,
) -> Result<OtpIssued, ApiError> {
    let challenge: OtpChallenge = s
        .call::<ep::OtpChallenges>(
            &[],
            token,
            &OtpChallengeRequest {
                device_id: device.id.clone(),
                pin: None,
                audience: None,
                proof: None,
            },
        )
        .await
        .unwrap();
    let mut signature = device.sign(&transcript::otp(
        &challenge.challenge_id,
        challenge.nonce.as_slice(),
        &device.id,
        counter,
        &[],
    ));
    if twin {
        signature = high_s_twin(&signature);
    }
    s.call::<ep::Otp>(
        &[],
        token,
        &OtpRequest {
            challenge_id: challenge.challenge_id,
            counter,
            pin: None,
            signature: signature.into(),
        },
    )
    .await
}

#[tokio::test]
async fn a_high_s_twin_of_a_valid_signature_is_refused_and_counters_still_hold() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    let next = device.counter + 1;
    assert_eq!(
        otp_signed_with(&s, &token, &device, next, true).await.err(),
        Some(ApiError::BadSignature)
    );
    // The refused twin burnt no counter: the device's own low-S signature at it is accepted.
    otp_signed_with(&s, &token, &device, next, false)
        .await
        .unwrap();
    device.counter = next;
    // And the replay rule holds for twins: the used counter again, high-S, is still refused
    // as a bad signature, low-S as a replay that disables the device.
    assert_eq!(
        otp_signed_with(&s, &token, &device, next, true).await.err(),
        Some(ApiError::BadSignature)
    );
    assert_eq!(
        otp_signed_with(&s, &token, &device, next, false)
            .await
            .err(),
        Some(ApiError::DeviceUnknown)
    );
}

// ---- 7. admin-token guessing --------------------------------------------------------------

const ADMIN: &str = "admin-token-admin-token-admin-token";

async fn admin_get_from(s: &TestServer, source: Ipv4Addr, token: &str) -> (u16, String, Vec<u8>) {
    let mut c = connect_from(source, s.addr()).await;
    let req = format!(
        "GET /admin/v1/audit HTTP/1.1\r\nHost: pims\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    c.write_all(req.as_bytes()).await.unwrap();
    read_response(&mut c, Duration::from_secs(2)).await
}

#[tokio::test]
async fn admin_token_guesses_are_logged_without_the_token_and_slowed_never_locking_out() {
    let s = TestServer::start_with(|c| c.admin_token = Some(AdminToken(ADMIN.into()))).await;
    let guesses: Vec<String> = (0..6).map(|i| format!("guess-{i}-Zq8vX3")).collect();
    let ((), logs) = capture_logs(async {
        for guess in &guesses {
            let (status, _, body) = admin_get_from(&s, ATTACKER, guess).await;
            assert_eq!(status, 401);
            let body: ErrorBody = serde_json::from_slice(&body).unwrap();
            assert_eq!(body.error, ApiError::Unauthenticated);
        }
        // The right token from the same address (the helpdesk behind the same NAT) is never
        // refused, however many wrong ones came first.
        assert_eq!(admin_get_from(&s, ATTACKER, ADMIN).await.0, 200);
    })
    .await;
    assert_eq!(admin_get_from(&s, BYSTANDER, ADMIN).await.0, 200);
    let failures: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("admin API: wrong or missing admin token"))
        .collect();
    assert_eq!(failures.len(), 6, "{logs}");
    for line in &failures {
        assert!(
            line.contains("WARN") && line.contains("client=127.0.0.1"),
            "{line}"
        );
    }
    // The five free guesses are answered at once, the sixth after a second.
    let delays: Vec<bool> = failures
        .iter()
        .map(|l| l.contains("delay_ms=1000"))
        .collect();
    assert_eq!(delays, [false, false, false, false, false, true]);
    assert!(failures[..5].iter().all(|l| l.contains("delay_ms=0")));
    for guess in &guesses {
        assert!(!logs.contains(guess.as_str()));
    }
    assert!(!logs.contains(ADMIN));
}

// ---- 8. disguised device names ------------------------------------------------------------

#[tokio::test]
async fn device_names_with_bidi_or_zero_width_characters_are_refused() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.certify_phone(&token, PHONE).await;
    for name in [
        "Alice\u{202e}enohp",
        "Alice\u{200b}'s phone",
        "\u{2066}Alice\u{2069}",
        "Alice\u{feff}",
        "Alice\u{0007}",
    ] {
        s.send_code(&token, SmsPurpose::Enrollment, None)
            .await
            .unwrap();
        let code = s.last_code(PHONE);
        let device = Device::new();
        let session = s
            .start_enrollment(&token, &code, "1234", None)
            .await
            .unwrap();
        let path = ep::EnrollmentFinish::ROUTE.path(&[&session.started.enrollment_id]);
        let mut request = session.finish_request(&device, &uuid::Uuid::new_v4().to_string());
        request.device.name = name.into();
        let r = s
            .request(reqwest::Method::POST, &path, &token)
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name:?}");
        assert_eq!(
            r.json::<ErrorBody>().await.unwrap().error,
            ApiError::InvalidParameter {
                name: "deviceName".into()
            },
            "{name:?}"
        );
    }
    let listed: DeviceList = decode(s.at(ep::Devices::ROUTE, &[], &token).send().await.unwrap())
        .await
        .unwrap();
    assert!(listed.devices.is_empty());
}

// ---- 10. SMS pumping ----------------------------------------------------------------------

async fn send_code_as(s: &TestServer, subject: &str, from: &str, phone: &str) -> u16 {
    let token = s.token(subject).await;
    s.at(ep::SmsCodes::ROUTE, &[], &token)
        .header("x-forwarded-for", from)
        .json(&SendSmsCode {
            purpose: SmsPurpose::PhoneCertification,
            phone_number: Some(phone.into()),
            region: None,
        })
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn one_ipv6_64_is_one_sms_budget() {
    let s = TestServer::start_with(|c| {
        c.trust_forwarded_for = true;
        c.limits.sms_sends_per_hour_per_address = 2;
    })
    .await;
    // Three addresses of one /64: the third send is over the budget of the prefix.
    assert_eq!(
        send_code_as(&s, "a1", "2001:db8:1:2::1", "+33612340001").await,
        200
    );
    assert_eq!(
        send_code_as(&s, "a2", "2001:db8:1:2:ffff::2", "+33612340002").await,
        200
    );
    assert_eq!(
        send_code_as(&s, "a3", "2001:db8:1:2::3", "+33612340003").await,
        429
    );
    // The next /64 has its own.
    assert_eq!(
        send_code_as(&s, "a4", "2001:db8:1:3::1", "+33612340004").await,
        200
    );
    // IPv4 and its IPv4-mapped IPv6 form are one address.
    assert_eq!(
        send_code_as(&s, "b1", "203.0.113.9", "+33612340005").await,
        200
    );
    assert_eq!(
        send_code_as(&s, "b2", "::ffff:203.0.113.9", "+33612340006").await,
        200
    );
    assert_eq!(
        send_code_as(&s, "b3", "203.0.113.9", "+33612340007").await,
        429
    );
    assert_eq!(
        send_code_as(&s, "b4", "203.0.113.10", "+33612340008").await,
        200
    );
}

#[tokio::test]
async fn premium_rate_and_satellite_numbers_are_not_trusted_numbers() {
    let s = TestServer::start().await;
    let token = s.token("mallory").await;
    for number in [
        "+33891123456",  // French premium rate
        "+33884012345",  // French shared cost
        "+870301234567", // Inmarsat
        "+881612345678", // Global Mobile Satellite System
        "+8823421234",   // International Networks
        "+883510012345", // International Networks
        "+979123456789", // International premium rate
    ] {
        assert_eq!(
            s.send_code(&token, SmsPurpose::PhoneCertification, Some(number))
                .await
                .err(),
            Some(ApiError::PhoneNumberRefused {
                reason: NumberRefusal::NotMobile
            }),
            "{number}"
        );
    }
    assert!(pims_server::sms::read_outbox(&s.outbox())
        .unwrap_or_default()
        .is_empty());
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
        .unwrap();
}
