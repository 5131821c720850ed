//! The console in headless Chromium, driven through chromedriver's W3C WebDriver HTTP API (plain
//! JSON over loopback, so reqwest is the client). Screenshots of each page go to
//! `docs/console/`. Without chromium/chromedriver the test prints a notice and passes, unless
//! `PIMS_REQUIRE_BROWSER=1`.

use std::process::Stdio;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::common::{decode, enrolled_account, PHONE};
use crate::console::{blocked, blocked_alice, setup, setup_on_postgres, Setup, ADMIN_TOKEN};
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
        for _ in 0..100 {
            if let Some(id) = self.find_now(css).await {
                return id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no {css} in {}", self.source().await);
    }

    /// The element if the page shows it now.
    async fn find_now(&self, css: &str) -> Option<String> {
        let query = json!({ "using": "css selector", "value": css });
        let v = self.call(reqwest::Method::POST, "/element", query).await;
        v[ELEMENT].as_str().map(str::to_string)
    }

    async fn attribute(&self, css: &str, name: &str) -> String {
        let id = self.find(css).await;
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{id}/attribute/{name}"),
                Value::Null,
            )
            .await;
        v.as_str()
            .unwrap_or_else(|| panic!("no {name} on {css}"))
            .to_string()
    }

    async fn url(&self) -> String {
        let v = self.call(reqwest::Method::GET, "/url", Value::Null).await;
        v.as_str().unwrap().to_string()
    }

    /// `name=value` of the browser's cookie `name` (for a request made beside the browser).
    async fn cookie(&self, name: &str) -> Option<String> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/cookie/{name}"),
                Value::Null,
            )
            .await;
        v["value"].as_str().map(|value| format!("{name}={value}"))
    }

    async fn delete_cookie(&self, name: &str) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/cookie/{name}"),
            Value::Null,
        )
        .await;
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

    async fn sign_in(&self, admin: &str, user: (&str, &str)) {
        self.go(&format!("{admin}/console/")).await;
        self.fill_in_provider_login(user).await;
    }

    /// Types `user` into the provider's login form, once it shows.
    async fn fill_in_provider_login(&self, (user, password): (&str, &str)) {
        self.type_into("#login", user).await;
        self.type_into("#password", password).await;
    }

    /// Signs in at the console's home and waits for it.
    async fn signed_in(&self, admin: &str, user: (&str, &str)) {
        self.sign_in(admin, user).await;
        self.click("#submit").await;
        self.wait_for("Find an account").await;
    }

    /// Types `query` into the console's search and waits for the account page it leads to.
    async fn search(&self, admin: &str, query: &str, account: &str) -> String {
        self.go(&format!("{admin}/console/")).await;
        self.type_into("#q", query).await;
        self.click("form[role=search] button").await;
        self.wait_for(&format!("<h1>Account <code>{account}</code></h1>"))
            .await
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
    for path in [
        "/console/accounts/victim",
        "/console/audit",
        "/console/timezone",
        "/console/",
    ] {
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

/// Calls the admin API on the same admin listener, as another operator would meanwhile.
async fn admin_api(setup: &Setup, route: pims_proto::endpoint::Route, values: &[&str]) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}{}", setup.admin, route.path(values)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    decode(r).await.unwrap()
}

/// The audit rows of `account` as `event detail` lines (the admin API's view, oldest first).
async fn trail(setup: &Setup, account: &str) -> Vec<String> {
    let r = reqwest::Client::new()
        .get(format!(
            "{}{}?account={account}&limit=1000",
            setup.admin,
            pims_proto::endpoint::admin::AUDIT.path(&[])
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let page: pims_server::admin::AuditPage = decode(r).await.unwrap();
    page.events
        .into_iter()
        .map(|e| format!("{} {}", e.event, e.detail.unwrap_or_default()))
        .collect()
}

/// Anyone can start sign-ins: 1,500 anonymous starts before, and more all the while the
/// operator signs in in the browser (at most 5,000), who gets in at once; every start was
/// answered (303, never 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_an_operator_signs_in_at_once_through_a_flood_of_sign_in_starts() {
    use futures::StreamExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let Some(setup) = setup().await else { return };
    let Some(browser) = Browser::start().await else {
        return;
    };
    /// Up to `count` anonymous `GET /console/login`, `at_once` at a time, until `stop`; their
    /// statuses.
    async fn flood(login: String, count: usize, at_once: usize, stop: Arc<AtomicBool>) -> Vec<u16> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        futures::stream::iter(0..count)
            .take_while(|_| std::future::ready(!stop.load(Ordering::Relaxed)))
            .map(|_| {
                let (client, login) = (client.clone(), login.clone());
                async move { client.get(login).send().await.unwrap().status().as_u16() }
            })
            .buffer_unordered(at_once)
            .collect()
            .await
    }
    let login = format!("{}/console/login", setup.admin);
    let started = Instant::now();
    let statuses = flood(login.clone(), 1_500, 16, Arc::new(AtomicBool::new(false))).await;
    let flood_time = started.elapsed();
    assert_eq!(statuses.len(), 1_500);
    assert!(statuses.iter().all(|s| *s == 303), "{statuses:?}");
    assert!(
        flood_time < Duration::from_secs(60),
        "1,500 starts took {flood_time:?}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn(flood(login, 5_000, 4, stop.clone()));
    let started = Instant::now();
    browser.signed_in(&setup.admin, OLGA).await;
    let sign_in_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let page = browser.source().await;
    assert!(
        page.contains("Signed in as <strong>OLGA (display name)</strong>"),
        "{page}"
    );
    let statuses = during.await.unwrap();
    assert!(
        statuses.len() >= 100,
        "the flood ran while signing in: {}",
        statuses.len()
    );
    assert!(statuses.iter().all(|s| *s == 303), "{statuses:?}");
    // At once: the time the browser takes to sign in on the provider's page while the machine
    // also serves the flood; nothing like the minute a full cap of pending sign-ins asked for.
    assert!(
        sign_in_time < Duration::from_secs(20),
        "signing in took {sign_in_time:?}"
    );
    eprintln!(
        "flood: 1,500 sign-in starts in {flood_time:?}; the operator signed in in \
         {sign_in_time:?} while {} more ran",
        statuses.len()
    );
}

/// A deep link survives signing in; a second replica (same PostgreSQL database and key file,
/// another port) serves the browser's session and acts; signing out ends the provider's session, so visiting
/// the console asks for the password again instead of signing straight back in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_a_deep_link_a_second_replica_and_sign_out_at_the_provider() {
    let Some(setup) = setup_on_postgres().await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    blocked_alice(&setup.server).await;
    // Signed out, a link to an account leads to the provider, then to that account.
    browser
        .go(&format!("{}/console/accounts/alice", setup.admin))
        .await;
    browser.fill_in_provider_login(OLGA).await;
    browser.click("#submit").await;
    browser
        .wait_for("<h1>Account <code>alice</code></h1>")
        .await;
    assert_eq!(
        browser.url().await,
        format!("{}/console/accounts/alice", setup.admin)
    );

    // Replica B: the same configuration on another admin port.
    let port = crate::oidc::free_port();
    let mut config = setup.server.config.clone();
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin_listen = Some(([127, 0, 0, 1], port).into());
    let replica = pims_server::start(config).await.unwrap();
    let b = format!("http://127.0.0.1:{port}");
    browser.go(&format!("{b}/console/accounts/alice")).await;
    let page = browser
        .wait_for("<h1>Account <code>alice</code></h1>")
        .await;
    assert!(page.contains("Signed in as <strong>OLGA (display name)</strong>"));
    assert_eq!(browser.url().await, format!("{b}/console/accounts/alice"));
    // And acts there: B unblocks, A's trail shows it.
    browser.click("#unblock").await;
    browser.wait_for("The PIN was unblocked.").await;
    assert!(trail(&setup, "alice")
        .await
        .contains(&"account_unblocked console operator olga".to_string()));

    // The provider's session alone signs the browser straight back in: without the console's
    // cookie, the console is back without a password asked.
    browser.delete_cookie("pims_console").await;
    browser.go(&format!("{}/console/", setup.admin)).await;
    browser.wait_for("<h1>Find an account</h1>").await;

    // Signing out (on B) ends that too: the provider asks to confirm, then the console asks for
    // the password again.
    browser.click("form.signout button").await;
    browser.wait_for("Yes, sign me out").await;
    browser.screenshot("10-sign-out-at-the-provider").await;
    browser.click("button[name=logout][value=yes]").await;
    let page = browser.wait_for("Test identity provider").await;
    assert!(page.contains("id=\"password\""), "{page}");
    browser
        .go(&format!("{}/console/accounts/alice", setup.admin))
        .await;
    let page = browser.wait_for("Test identity provider").await;
    assert!(page.contains("id=\"password\""), "{page}");
    assert!(!page.contains("Find an account") && !page.contains("Account <code>"));
    browser.go(&format!("{b}/console/")).await;
    let page = browser.wait_for("Test identity provider").await;
    assert!(
        page.contains("id=\"password\""),
        "no session on B either: {page}"
    );
    replica.shutdown().await;
}

/// Actions say what they did: Unblock is not offered on an account with nothing to unblock;
/// from a page another operator overtook, Unblock and Enable again answer that nothing
/// changed and leave no audit row; a device an operator disabled is enabled again by a click.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_no_op_actions_say_nothing_changed_and_a_device_is_enabled_again() {
    let Some(setup) = setup().await else { return };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let s = &setup.server;
    let (_, device) = enrolled_account(s, "carol", PHONE, "1234").await;
    browser.signed_in(&setup.admin, OLGA).await;
    let page = browser.search(&setup.admin, "carol", "carol").await;
    assert!(
        !page.contains("id=\"unblock\""),
        "nothing to unblock: {page}"
    );
    assert!(page.contains("<dt>PIN blocked</dt><dd>no</dd>"), "{page}");

    // Disable (reason, confirmation), then Enable again by a click.
    browser
        .type_into("form[action$='/disable'] input[name=reason]", "lost")
        .await;
    browser
        .click("form[action$='/disable'] input[name=confirm]")
        .await;
    browser.click("form[action$='/disable'] button").await;
    browser.wait_for("The device was disabled.").await;
    let page = browser.source().await;
    assert!(page.contains("<td>disabled</td>"), "{page}");
    assert!(
        !page.contains("/disable\" class=\"disable\""),
        "no Disable: {page}"
    );
    browser.click("form[action$='/enable'] button").await;
    let page = browser.wait_for("The device was enabled again.").await;
    assert!(page.contains("<td>active</td>"), "{page}");
    assert!(!page.contains("Enable again</button>"), "{page}");
    browser.screenshot("11-enabled-again").await;
    let user = s.token("carol").await;
    assert_eq!(
        s.status(&user, Some(&device.id)).await.device,
        Some(pims_proto::DeviceState::Active)
    );

    // Disabled again; the page offers Enable again, but another operator enables it first.
    browser
        .type_into("form[action$='/disable'] input[name=reason]", "lost again")
        .await;
    browser
        .click("form[action$='/disable'] input[name=confirm]")
        .await;
    browser.click("form[action$='/disable'] button").await;
    browser.wait_for("The device was disabled.").await;
    let answer = admin_api(
        &setup,
        pims_proto::endpoint::admin::DEVICE_ENABLE,
        &["carol", &device.id],
    )
    .await;
    assert_eq!(answer, json!({ "changed": true }));
    browser.click("form[action$='/enable'] button").await;
    browser
        .wait_for("The device was not disabled: nothing changed.")
        .await;
    browser.screenshot("12-nothing-changed").await;

    // The same for Unblock: blocked, the page offers it, another operator unblocks first.
    blocked(s, "dave", crate::management::PHONE2).await;
    browser.search(&setup.admin, "dave", "dave").await;
    let answer = admin_api(&setup, pims_proto::endpoint::admin::UNBLOCK, &["dave"]).await;
    assert_eq!(answer, json!({ "changed": true }));
    browser.click("#unblock").await;
    let page = browser
        .wait_for("The PIN had no failed attempt to clear: nothing changed.")
        .await;
    assert!(!page.contains("id=\"unblock\""), "{page}");

    // The trail holds what was done, once each, and nothing of the no-ops.
    let operators = |rows: Vec<String>| -> Vec<String> {
        rows.into_iter()
            .filter(|r| r.contains("admin") || r.contains("console operator"))
            .collect()
    };
    assert_eq!(
        operators(trail(&setup, "carol").await),
        [
            "device_disabled console operator olga: lost",
            "device_enabled console operator olga",
            "device_disabled console operator olga: lost again",
            "device_enabled admin",
        ]
    );
    assert_eq!(
        operators(trail(&setup, "dave").await),
        ["account_unblocked admin"]
    );
}

/// The national-number search and the shift's audit view: each account found by its number as
/// typed nationally (`06 …`), unblocked; the audit of every account filtered by operator and
/// event lists both, newest first; the CSV the page links holds those rows; times shown in the
/// operator's chosen zone with UTC beside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_national_numbers_find_accounts_and_the_audit_of_every_account_has_its_csv() {
    let Some(setup) = setup().await else { return };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let s = &setup.server;
    blocked_alice(s).await;
    blocked(s, "bob", crate::management::PHONE2).await;
    browser.signed_in(&setup.admin, OLGA).await;
    for (typed, account) in [("06 12 34 56 78", "alice"), ("0698765432", "bob")] {
        browser.search(&setup.admin, typed, account).await;
        assert_eq!(
            browser.url().await,
            format!("{}/console/accounts/{account}", setup.admin)
        );
        browser.click("#unblock").await;
        browser.wait_for("The PIN was unblocked.").await;
    }

    browser.go(&format!("{}/console/", setup.admin)).await;
    browser.click("a[href='/console/audit']").await;
    browser.wait_for("Audit trail of every account").await;
    browser.type_into("#by", "olga").await;
    browser
        .click("#event option[value='account_unblocked']")
        .await;
    browser.click("form.filters button").await;
    let page = browser.wait_for("<td>account_unblocked</td>").await;
    assert_eq!(
        page.matches("<td>account_unblocked</td>").count(),
        2,
        "{page}"
    );
    let (bob, alice) = (
        page.find("<a href=\"/console/accounts/bob\">bob</a>")
            .unwrap(),
        page.find("<a href=\"/console/accounts/alice\">alice</a>")
            .unwrap(),
    );
    assert!(bob < alice, "newest first");
    assert!(page.contains("Times in UTC."), "{page}");

    // The CSV the page links, fetched with the browser's session.
    let href = browser.attribute("#csv", "href").await;
    assert_eq!(
        href,
        "/console/audit?event=account_unblocked&by=olga&from=&to=&format=csv"
    );
    let session = browser.cookie("pims_console").await.expect("a session");
    let r = reqwest::Client::new()
        .get(format!("{}{href}", setup.admin))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert_eq!(rows[0], "id,at,account,event,device,detail");
    for (row, account) in rows[1..].iter().zip(["bob", "alice"]) {
        assert!(
            row.ends_with(&format!(
                " UTC,{account},account_unblocked,,console operator olga"
            )),
            "{csv}"
        );
    }

    // The operator's own time zone, UTC beside; the filter is kept.
    browser.click("#change-zone").await;
    browser.wait_for("<h1>Time zone</h1>").await;
    browser.click("#tz option[value='Asia/Kolkata']").await;
    browser.screenshot("13-time-zone").await;
    browser.click("#save-zone").await;
    let page = browser
        .wait_for("Times in <strong>Asia/Kolkata</strong>, UTC beside.")
        .await;
    assert_eq!(
        page.matches(" IST</time> <span class=\"utc\">").count(),
        2,
        "{page}"
    );
    assert_eq!(
        page.matches("<td>account_unblocked</td>").count(),
        2,
        "{page}"
    );
    assert!(browser.url().await.contains("by=olga"));
    browser.screenshot("14-audit-of-every-account").await;
}
