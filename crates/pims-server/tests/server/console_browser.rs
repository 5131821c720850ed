//! The console in headless Chromium, driven through chromedriver's W3C WebDriver HTTP API (plain
//! JSON over loopback, so reqwest is the client). Screenshots of each page go to
//! `docs/console/`. Without chromium/chromedriver the test prints a notice and passes, unless
//! `PIMS_REQUIRE_BROWSER=1`.

use std::process::Stdio;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::common::{enrolled_account, PHONE};
use crate::console::{blocked_alice, setup};
use crate::oidc::*;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Option<Browser> {
        if which("chromium").is_none() || which("chromedriver").is_none() {
            missing("chromium or chromedriver is not installed")?;
        }
        let port = free_port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({ "capabilities": { "alwaysMatch": { "goog:chromeOptions": {
            "binary": which("chromium").unwrap(),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--window-size=1100,800", format!("--user-data-dir={}", profile.path().display())],
        }}}});
        let mut session = None;
        for _ in 0..100 {
            if let Ok(r) = http
                .post(format!("{base}/session"))
                .json(&caps)
                .send()
                .await
            {
                let body: Value = r.json().await.unwrap();
                session = Some(
                    body["value"]["sessionId"]
                        .as_str()
                        .expect("a session")
                        .to_string(),
                );
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Some(Browser {
            http,
            session: format!("{base}/session/{}", session.expect("chromedriver started")),
            _driver: driver,
            _profile: profile,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self.http.request(method, format!("{}{path}", self.session));
        let r = if body.is_null() { r } else { r.json(&body) };
        let v: Value = r.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// The element, once the page shows it.
    async fn find(&self, css: &str) -> String {
        let query = json!({ "using": "css selector", "value": css });
        for _ in 0..100 {
            let v = self
                .call(reqwest::Method::POST, "/element", query.clone())
                .await;
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_string();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no {css} in {}", self.source().await);
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The page source once it contains `text` (navigations after a click may still run).
    async fn wait_for(&self, text: &str) -> String {
        for _ in 0..100 {
            let page = self.source().await;
            if page.contains(text) {
                return page;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no {text:?} in {}", self.source().await);
    }

    async fn screenshot(&self, name: &str) {
        let png = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/console");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{name}.png")),
            STANDARD.decode(png.as_str().unwrap()).unwrap(),
        )
        .unwrap();
    }

    async fn sign_in(&self, admin: &str, (user, password): (&str, &str)) {
        self.go(&format!("{admin}/console/")).await;
        self.type_into("#login", user).await;
        self.type_into("#password", password).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends Chromium; chromedriver itself is killed with its handle.
        let session = self.session.clone();
        let _ = std::thread::spawn(move || {
            let _ = std::process::Command::new("curl")
                .args(["-s", "-X", "DELETE", &session])
                .output();
        })
        .join();
    }
}

fn which(name: &str) -> Option<String> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| format!("{dir}/{name}"))
        .find(|p| std::path::Path::new(p).exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_an_operator_disables_a_device_unblocks_and_sees_both_in_the_audit() {
    let Some(setup) = setup().await else { return };
    let Some(browser) = Browser::start().await else {
        return;
    };
    blocked_alice(&setup.server).await;
    browser.sign_in(&setup.admin, OLGA).await;
    browser.screenshot("1-provider-login").await;
    browser.click("#submit").await;
    // The "Signed in" page refreshes to the console's home.
    browser.wait_for("Find an account").await;
    browser.screenshot("2-find-account").await;
    browser.type_into("#q", PHONE).await;
    browser.click("form[role=search] button").await;
    browser.find("#unblock").await;
    assert!(
        browser.source().await.contains("<strong>yes</strong>"),
        "blocked"
    );
    browser.screenshot("3-account").await;
    // Disable asks why and for a confirmation before it does anything.
    browser
        .type_into(
            "form[action$='/disable'] input[name=reason]",
            "reported stolen",
        )
        .await;
    browser
        .click("form[action$='/disable'] input[name=confirm]")
        .await;
    browser.click("form[action$='/disable'] button").await;
    browser.wait_for("The device was disabled.").await;
    browser.find("form[action$='/enable'] button").await;
    browser.click("#unblock").await;
    browser.wait_for("The PIN was unblocked.").await;
    browser.screenshot("4-account-after-actions").await;
    browser.click("a[href$='/audit']").await;
    let audit = browser.wait_for("Audit trail of").await;
    assert!(audit.contains("<td>device_disabled</td>"));
    assert!(audit.contains("<td>account_unblocked</td>"));
    assert_eq!(audit.matches("console operator olga").count(), 2);
    assert!(audit.contains("console operator olga: reported stolen"));
    browser.screenshot("5-audit-trail").await;
}

/// The helpdesk's remedy for a phone thief who moved the number, in a browser: the account page
/// shows the hold and the masked number of before it; Restore gives it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_an_operator_restores_a_number_a_thief_moved() {
    let Some(setup) = setup().await else { return };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let s = &setup.server;
    let (token, mut thief) = enrolled_account(s, "victim", PHONE, "1234").await;
    crate::management::move_number(s, &token, &mut thief, crate::management::PHONE2, None)
        .await
        .unwrap();
    browser.sign_in(&setup.admin, OLGA).await;
    browser.click("#submit").await;
    browser.wait_for("Find an account").await;
    browser.type_into("#q", "victim").await;
    browser.click("form[role=search] button").await;
    let page = browser
        .wait_for("Recovery hold after a number change")
        .await;
    assert!(page.contains(&format!("{}78", "•".repeat(PHONE.len() - 2))));
    browser.screenshot("7-recovery-hold").await;
    browser.click("#restore").await;
    browser.wait_for("The trusted number was restored").await;
    browser.screenshot("8-restored").await;
    // On a phone-sized window (375 px) nothing scrolls sideways but the audit's table.
    browser
        .call(
            reqwest::Method::POST,
            "/window/rect",
            json!({ "width": 375, "height": 812 }),
        )
        .await;
    let width = || async {
        browser
            .call(
                reqwest::Method::POST,
                "/execute/sync",
                json!({ "script": "return [document.documentElement.scrollWidth, window.innerWidth];", "args": [] }),
            )
            .await
    };
    for path in ["/console/accounts/victim", "/console/audit", "/console/"] {
        browser.go(&format!("{}{path}", setup.admin)).await;
        browser.wait_for("PIMS helpdesk").await;
        let w = width().await;
        assert!(
            w[0].as_i64().unwrap() <= w[1].as_i64().unwrap(),
            "{path} scrolls sideways at 375 px: {w}"
        );
    }
    browser.screenshot("9-narrow").await;
    assert_eq!(
        s.status(&token, None).await.phone_number.as_deref(),
        Some(PHONE)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_a_non_operator_is_refused() {
    let Some(setup) = setup().await else { return };
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.sign_in(&setup.admin, NINA).await;
    browser.click("#submit").await;
    browser.wait_for("Not an operator").await;
    browser.screenshot("6-not-an-operator").await;
}
