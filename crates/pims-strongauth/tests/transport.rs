//! The SDK's requests under the proxy settings of the environment. The variables must be set
//! before any thread starts (another thread may read the environment meanwhile), which only a
//! test binary of its own can do: hence a single test here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pims_core::Pims;
use pims_strongauth::host::{Host, StaticToken};
use pims_strongauth::StrongAuthFactory;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "secret-access-token";

#[test]
fn the_token_never_reaches_a_proxy_in_clear_and_loopback_is_never_proxied() {
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        std::env::set_var(name, &proxy_url);
    }
    // Nothing exempts loopback from the proxy but the SDK itself.
    for name in ["NO_PROXY", "no_proxy", "REQUEST_METHOD"] {
        std::env::remove_var(name);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(proxy));
}

async fn run(proxy: std::net::TcpListener) {
    let proxy = Recorder::start(
        proxy,
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );

    // Plain http to loopback: straight to the server, token included.
    for host in ["127.0.0.1", "localhost"] {
        let server = Recorder::start(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        );
        let url = format!("http://{host}:{}", server.port);
        send_sms_code(&url).await;
        let received = server.received();
        assert_eq!(received.len(), 1, "{url}: {received:?}");
        let request = String::from_utf8_lossy(&received[0]).to_ascii_lowercase();
        assert!(
            request.starts_with("post /v1/sms-codes ")
                && request.contains(&format!("\r\nauthorization: bearer {TOKEN}\r\n")),
            "{url}: {request}"
        );
    }

    // https to loopback: direct too (a TLS handshake reaches the port).
    let tls = Recorder::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), b"");
    send_sms_code(&format!("https://127.0.0.1:{}", tls.port)).await;
    let received = tls.received();
    assert!(!received.is_empty(), "https://127.0.0.1 not reached");
    assert!(
        received.iter().all(|r| r.first() == Some(&0x16)),
        "{received:?}"
    );

    assert_eq!(
        proxy.received(),
        Vec::<Vec<u8>>::new(),
        "loopback went through the proxy"
    );

    // https elsewhere may use the proxy, as a tunnel only: it sees where, never what.
    send_sms_code("https://pims.example.invalid").await;
    let received = proxy.received();
    assert!(
        !received.is_empty(),
        "the proxy of the environment is not used"
    );
    for request in received {
        let request = String::from_utf8_lossy(&request);
        assert!(
            request.starts_with("CONNECT pims.example.invalid:443 ") && !request.contains(TOKEN),
            "{request}"
        );
    }
}

/// GET `pims.authentication.smscode` (one POST to the server) through the facade, configured
/// for `url`.
async fn send_sms_code(url: &str) {
    let data = tempfile::tempdir().unwrap();
    let host = Host::new(Arc::new(StaticToken(Some(TOKEN.into()))));
    let pims = Pims::builder()
        .component(StrongAuthFactory::new(host))
        .build();
    let config = json!({"components": {"strongAuthentication": {
        "serverUrl": url, "dataDirectory": data.path(), "platform": "ios",
        "requestTimeoutSeconds": 5
    }}});
    let m = pims.initialize_async(config).await;
    assert_eq!(m.status.as_str(), "SUCCEEDED", "{m}");
    pims.get_async("pims.authentication.smscode", json!({"type": "enrollment"}))
        .await;
}

/// Accepts connections, records what each sends (up to the end of a request head, or what came
/// within a moment), answers `answer` and closes.
struct Recorder {
    port: u16,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    fn start(listener: std::net::TcpListener, answer: &'static [u8]) -> Recorder {
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let listener = TcpListener::from_std(listener).unwrap();
        let received = Arc::<Mutex<Vec<Vec<u8>>>>::default();
        let record = received.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !data.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tokio::time::timeout(
                            Duration::from_millis(300),
                            stream.read(&mut buf),
                        )
                        .await
                        {
                            Ok(Ok(n)) if n > 0 => data.extend_from_slice(&buf[..n]),
                            _ => break,
                        }
                    }
                    record.lock().unwrap().push(data);
                    let _ = stream.write_all(answer).await;
                });
            }
        });
        Recorder { port, received }
    }

    fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }
}
