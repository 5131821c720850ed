//! The helpdesk console over HTTP, signed in on the real provider's login page (`oidc.rs`),
//! on a separate admin listener. The same flows in a real browser: `console_browser.rs`.

use pims_proto::endpoint;
use pims_proto::*;
use pims_server::console::ConsoleConfig;

use crate::common::*;
use crate::oidc::*;

/// The admin API's token on the same admin listener: the other operators' door.
pub const ADMIN_TOKEN: &str = "admin-token-admin-token-admin-token";

pub struct Setup {
    pub provider: Provider,
    pub server: TestServer,
    /// `http://127.0.0.1:port` of the admin listener.
    pub admin: String,
}

/// A provider, and a server whose console on its own admin listener signs in there.
pub async fn setup() -> Option<Setup> {
    setup_on(false).await
}

/// [`setup`] on PostgreSQL, the database replicas share; `None` when PostgreSQL is not
/// installed (and not required).
pub async fn setup_on_postgres() -> Option<Setup> {
    setup_on(true).await
}

async fn setup_on(postgres: bool) -> Option<Setup> {
    let port = free_port();
    let admin = format!("http://127.0.0.1:{port}");
    let redirect = format!("{admin}/console/callback");
    let provider = Provider::start(&redirect).await?;
    let issuer = provider.issuer.clone();
    let adjust = move |c: &mut pims_server::ServerConfig| {
        c.admin_listen = Some(([127, 0, 0, 1], port).into());
        c.console = Some(ConsoleConfig {
            issuer,
            client_id: "console".into(),
            client_secret: "console-secret".into(),
            redirect_url: redirect,
            operator_claim: "groups".into(),
            operator_value: OPERATOR_GROUP.into(),
            read_only_value: Some(READ_ONLY_GROUP.into()),
            default_region: Some("FR".into()),
            session_seconds: 3600,
        });
        c.admin_token = Some(pims_server::config::AdminToken(ADMIN_TOKEN.into()));
    };
    let server = if postgres {
        TestServer::start_postgres(adjust).await?
    } else {
        TestServer::start_with(adjust).await
    };
    to_real_time(&server.clock);
    Some(Setup {
        provider,
        server,
        admin,
    })
}

/// `alice` with a trusted number, an enrolled device and her PIN blocked by wrong PINs.
pub async fn blocked_alice(s: &TestServer) -> Device {
    blocked(s, "alice", PHONE).await
}

/// `subject` with the trusted number `phone`, an enrolled device and its PIN blocked.
pub async fn blocked(s: &TestServer, subject: &str, phone: &str) -> Device {
    let (token, device) = enrolled_account(s, subject, phone, "1234").await;
    for _ in 0..s.config.limits.pin_attempts {
        s.send_code(&token, SmsPurpose::Enrollment, None)
            .await
            .unwrap();
        let code = s.last_code(phone);
        let _ = s.start_enrollment(&token, &code, "0000", None).await;
    }
    assert_eq!(s.status(&token, None).await.pin_attempts_remaining, 0);
    device
}

/// Signs `user` in to the console with `client`; returns the callback's response.
async fn sign_in(setup: &Setup, client: &reqwest::Client, user: (&str, &str)) -> reqwest::Response {
    let callback = format!("{}/console/callback", setup.admin);
    let back = setup
        .provider
        .sign_in(
            client,
            &format!("{}/console/", setup.admin),
            user,
            &callback,
        )
        .await;
    client.get(back).send().await.unwrap()
}

/// The id of the first device a page's Disable form names.
fn at_least_one_device(page: &str) -> String {
    let at = page.find("/devices/").expect("a device form") + 9;
    page[at..at + page[at..].find('/').unwrap()].to_string()
}

fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

async fn page(client: &reqwest::Client, url: &str) -> (u16, String) {
    let r = client.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn an_operator_finds_an_account_disables_a_device_unblocks_it_and_reads_the_audit() {
    let Some(setup) = setup().await else { return };
    let s = &setup.server;
    let device = blocked_alice(s).await;
    let client = Provider::browser();
    let r = sign_in(&setup, &client, OLGA).await;
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .find(|c| c.starts_with("pims_console="))
        .expect("a session cookie");
    assert!(cookie.starts_with("pims_console="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    // Loopback: no Secure, or the browser would drop it on plain http.
    assert!(!cookie.contains("Secure"), "{cookie}");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");

    // Found by trusted number.
    let r = client
        .get(format!("{}/console/search?q=%2B33612345678", setup.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/accounts/alice");
    let account = format!("{}/console/accounts/alice", setup.admin);
    let (status, html) = page(&client, &account).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("{}78", "•".repeat(PHONE.len() - 2))),
        "number masked"
    );
    assert!(!html.contains("612345678"), "number masked");
    assert!(html.contains("<dt>PIN blocked</dt><dd><strong>yes</strong>"));
    assert!(html.contains("Test phone"));
    let token = csrf(&html);

    let disable = format!("{account}/devices/{}/disable", device.id);
    // Without a reason, or unconfirmed, nothing happens.
    for form in [
        vec![("csrf", token.as_str()), ("confirm", "yes")],
        vec![("csrf", token.as_str()), ("reason", "reported stolen")],
    ] {
        let r = client.post(&disable).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 400);
    }
    let user = s.token("alice").await;
    assert_eq!(
        s.status(&user, Some(&device.id)).await.device,
        Some(DeviceState::Active)
    );
    let confirmed = [
        ("csrf", token.as_str()),
        ("reason", "reported stolen"),
        ("confirm", "yes"),
    ];
    let r = client.post(&disable).form(&confirmed).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/console/accounts/alice?done=disabled"
    );
    // Again: said to have changed nothing.
    let r = client.post(&disable).form(&confirmed).send().await.unwrap();
    assert_eq!(
        r.headers()["location"],
        "/console/accounts/alice?done=already-disabled"
    );
    let (_, html) = page(&client, &format!("{account}?done=already-disabled")).await;
    assert!(html.contains("already disabled: nothing changed"), "{html}");
    assert!(html.contains("Enable again"), "{html}");
    let r = client
        .post(format!("{account}/unblock"))
        .form(&[("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let user = s.token("alice").await;
    let status = s.status(&user, Some(&device.id)).await;
    assert_eq!(status.device, Some(DeviceState::Disabled));
    assert_eq!(status.pin_attempts_remaining, s.config.limits.pin_attempts);

    let (_, html) = page(&client, &format!("{account}/audit?event=device_disabled")).await;
    assert_eq!(html.matches("<td>device_disabled</td>").count(), 1);
    assert!(html.contains("console operator olga: reported stolen"));
    assert!(!html.contains("<td>account_unblocked</td>"), "filtered out");
    let (_, html) = page(&client, &format!("{account}/audit?event=account_unblocked")).await;
    assert!(html.contains("<td>account_unblocked</td>"));
    assert!(html.contains("console operator olga"));
}

#[tokio::test]
async fn the_console_metrics_and_admin_api_are_on_the_admin_listener_only() {
    let Some(setup) = setup().await else { return };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/console/", "/metrics"] {
        let public = client
            .get(format!("{}{path}", setup.server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(public.status(), 404, "{path} on the public listener");
    }
    let metrics = client
        .get(format!("{}/metrics", setup.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    // Not signed in: to the provider.
    let r = client
        .get(format!("{}/console/", setup.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/login?next=%2Fconsole%2F");
    let r = client
        .get(format!("{}/console/login", setup.admin))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{}/auth?", setup.provider.issuer)),
        "{location}"
    );
    for part in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
    ] {
        assert!(location.contains(part), "{location}");
    }
    // The console's requests pass through the request span, which counts them.
    let metrics = client
        .get(format!("{}/metrics", setup.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pims_http_requests_total")
                && l.contains("route=\"/console/login\"")
                && l.contains("status=\"303\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn someone_without_the_operator_group_is_refused() {
    let Some(setup) = setup().await else { return };
    let client = Provider::browser();
    let r = sign_in(&setup, &client, NINA).await;
    assert_eq!(r.status(), 403);
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|c| !c.to_str().unwrap().starts_with("pims_console=")));
    let html = r.text().await.unwrap();
    // The page names what is missing and offers a way out.
    assert!(html.contains("<code>pims-operators</code> in its <code>groups</code> claim"));
    assert!(
        html.contains("href=\"/console/login?switch=true\""),
        "{html}"
    );
    let r = client
        .get(format!("{}/console/", setup.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["location"],
        "/console/login?next=%2Fconsole%2F",
        "no session"
    );
    // "Sign in as someone else" asks the provider for a fresh sign-in.
    let r = client
        .get(format!("{}/console/login?switch=true", setup.admin))
        .send()
        .await
        .unwrap();
    let to = r.headers()["location"].to_str().unwrap();
    assert!(to.contains("prompt=login"), "{to}");
}

#[tokio::test]
async fn a_form_post_without_the_csrf_token_or_session_is_refused() {
    let Some(setup) = setup().await else { return };
    let device = blocked_alice(&setup.server).await;
    let client = Provider::browser();
    assert_eq!(sign_in(&setup, &client, OLGA).await.status(), 200);
    let account = format!("{}/console/accounts/alice", setup.admin);
    let (_, html) = page(&client, &account).await;
    let token = csrf(&html);
    let disable = format!("{account}/devices/{}/disable", device.id);
    for form in [vec![], vec![("csrf", "forged")]] {
        let r = client.post(&disable).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 403);
    }
    // The right token from a client without the session cookie.
    let r = reqwest::Client::new()
        .post(&disable)
        .form(&[("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let user = setup.server.token("alice").await;
    assert_eq!(
        setup.server.status(&user, Some(&device.id)).await.device,
        Some(DeviceState::Active)
    );
}

#[tokio::test]
async fn a_sign_in_callback_is_good_once_and_only_in_the_browser_that_started_it() {
    let Some(setup) = setup().await else { return };
    let client = Provider::browser();
    let callback = format!("{}/console/callback", setup.admin);
    let back = setup
        .provider
        .sign_in(
            &client,
            &format!("{}/console/", setup.admin),
            OLGA,
            &callback,
        )
        .await;
    // Another browser (an attacker's link) cannot finish it: no sign-in cookie.
    assert_eq!(
        Provider::browser()
            .get(back.clone())
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(client.get(back.clone()).send().await.unwrap().status(), 200);
    // Replayed: refused.
    assert_eq!(client.get(back).send().await.unwrap().status(), 400);
}

/// The `action` of the page's form whose action ends in `tail`.
fn form_action(page: &str, tail: &str) -> String {
    page.split("action=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .find(|action| action.ends_with(tail))
        .unwrap_or_else(|| panic!("no form posting to …{tail}"))
        .to_string()
}

#[tokio::test]
async fn a_subject_with_dot_segments_cannot_aim_the_console_forms_at_another_account() {
    let Some(setup) = setup().await else { return };
    let s = &setup.server;
    blocked(s, "victim", PHONE).await;
    blocked(s, "x/../victim", "+33698765432").await;
    let client = Provider::browser();
    assert_eq!(sign_in(&setup, &client, OLGA).await.status(), 200);
    let (status, html) = page(
        &client,
        &format!("{}/console/accounts/x%2F..%2Fvictim", setup.admin),
    )
    .await;
    assert_eq!(status, 200);
    let unblock = form_action(&html, "/unblock");
    assert_eq!(unblock, "/console/accounts/x%2F..%2Fvictim/unblock");
    assert!(
        form_action(&html, "/disable").starts_with("/console/accounts/x%2F..%2Fvictim/devices/")
    );
    assert!(html.contains("href=\"/console/accounts/x%2F..%2Fvictim/audit\""));
    let r = client
        .post(format!("{}{unblock}", setup.admin))
        .form(&[("csrf", csrf(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/console/accounts/x%2F..%2Fvictim?done=unblocked"
    );
    let limit = s.config.limits.pin_attempts;
    let remaining = |subject: &'static str| async move {
        s.status(&s.token(subject).await, None)
            .await
            .pin_attempts_remaining
    };
    assert_eq!(
        remaining("x/../victim").await,
        limit,
        "the account shown was unblocked"
    );
    assert_eq!(
        remaining("victim").await,
        0,
        "the other account stays blocked"
    );
}

#[tokio::test]
async fn a_flood_of_anonymous_sign_in_starts_keeps_no_operator_out() {
    let Some(setup) = setup().await else { return };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = format!("{}/console/login", setup.admin);
    // Anyone can start a sign-in; the server keeps nothing of it (it is in the cookie).
    for _ in 0..1_500 {
        assert_eq!(client.get(&login).send().await.unwrap().status(), 303);
    }
    let operator = Provider::browser();
    assert_eq!(sign_in(&setup, &operator, OLGA).await.status(), 200);
    let (status, html) = page(&operator, &format!("{}/console/", setup.admin)).await;
    assert_eq!(status, 200);
    // The operator's name from the ID token, not the raw subject.
    assert!(
        html.contains("<strong>OLGA (display name)</strong>"),
        "{html}"
    );
}

/// A sealed sign-in cookie from one browser does not finish a sign-in started in another, and
/// a sign-in cookie never opens as a session (each is sealed for its own purpose).
#[tokio::test]
async fn a_sign_in_cookie_is_not_a_session() {
    let Some(setup) = setup().await else { return };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(format!("{}/console/login", setup.admin))
        .send()
        .await
        .unwrap();
    let sealed = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let r = client
        .get(format!("{}/console/", setup.admin))
        .header("cookie", format!("pims_console={sealed}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "not signed in");
}

/// Sessions live in their sealed cookie: another replica with the same key file serves them,
/// a deep link survives signing in, and signing out sends the browser to end the provider's
/// session too.
#[tokio::test]
async fn another_replica_serves_the_session_a_deep_link_survives_and_sign_out_ends_the_provider_session(
) {
    let Some(setup) = setup().await else { return };
    blocked_alice(&setup.server).await;
    let client = Provider::browser();
    // A deep link, before signing in.
    let r = client
        .get(format!("{}/console/accounts/alice", setup.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["location"],
        "/console/login?next=%2Fconsole%2Faccounts%2Falice"
    );
    let callback = format!("{}/console/callback", setup.admin);
    let back = setup
        .provider
        .sign_in(
            &client,
            &format!(
                "{}/console/login?next=%2Fconsole%2Faccounts%2Falice",
                setup.admin
            ),
            OLGA,
            &callback,
        )
        .await;
    let r = client.get(back).send().await.unwrap();
    let html = r.text().await.unwrap();
    assert!(
        html.contains("content=\"0; url=/console/accounts/alice\""),
        "{html}"
    );

    // Another replica on another admin port, same database and key file.
    let port = free_port();
    let mut config = setup.server.config.clone();
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin_listen = Some(([127, 0, 0, 1], port).into());
    let replica = pims_server::start(config).await.unwrap();
    let (status, html) = page(
        &client,
        &format!("http://127.0.0.1:{port}/console/accounts/alice"),
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Account <code>alice</code>"));

    let r = client
        .post(format!("{}/console/logout", setup.admin))
        .form(&[("csrf", csrf(&html))])
        .send()
        .await
        .unwrap();
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("pims_console=;")));
    let html = r.text().await.unwrap();
    let at = html.find("url=").expect("a refresh to the provider") + 4;
    let to = html[at..at + html[at..].find('"').unwrap()]
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    assert!(to.starts_with(&setup.provider.issuer), "{to}");
    assert!(to.contains("id_token_hint="), "{to}");
    assert!(to.contains("post_logout_redirect_uri="), "{to}");
    replica.shutdown().await;
}

/// A read-only operator (the second value of the claim) sees accounts and the audit, is
/// offered no action, and cannot post one.
#[tokio::test]
async fn a_read_only_operator_looks_but_cannot_act() {
    let Some(setup) = setup().await else { return };
    let device = blocked_alice(&setup.server).await;
    let client = Provider::browser();
    assert_eq!(sign_in(&setup, &client, RITA).await.status(), 200);
    let account = format!("{}/console/accounts/alice", setup.admin);
    let (status, html) = page(&client, &account).await;
    assert_eq!(status, 200);
    assert!(!html.contains("id=\"unblock\"") && !html.contains("/disable"));
    let r = client
        .post(format!("{account}/devices/{}/disable", device.id))
        .form(&[
            ("csrf", csrf(&html).as_str()),
            ("reason", "x"),
            ("confirm", "yes"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let user = setup.server.token("alice").await;
    assert_eq!(
        setup.server.status(&user, Some(&device.id)).await.device,
        Some(DeviceState::Active)
    );
}

#[test]
fn a_console_on_a_public_listen_address_needs_an_admin_listener() {
    let console = ConsoleConfig {
        read_only_value: None,
        default_region: None,
        issuer: "http://127.0.0.1:1".into(),
        client_id: "console".into(),
        client_secret: "console-secret".into(),
        redirect_url: "https://console.example/console/callback".into(),
        operator_claim: "groups".into(),
        operator_value: OPERATOR_GROUP.into(),
        session_seconds: 3600,
    };
    let mut config = pims_server::ServerConfig {
        listen: ([0, 0, 0, 0], 8080).into(),
        console: Some(console),
        ..Default::default()
    };
    let refused = config.validate().unwrap_err().to_string();
    assert!(refused.contains("needs admin_listen"), "{refused}");
    config.admin_listen = Some(([10, 0, 0, 5], 9090).into());
    config.validate().unwrap();
    config.admin_listen = None;
    config.listen = ([127, 0, 0, 1], 8080).into();
    config.validate().unwrap();
}

#[tokio::test]
async fn a_console_search_by_a_shared_number_lists_every_account_with_it() {
    let Some(setup) = setup().await else { return };
    let s = &setup.server;
    enrolled_account(s, "alice", PHONE, "1234").await;
    enrolled_account(s, "bob/2", PHONE, "1234").await;
    let client = Provider::browser();
    assert_eq!(sign_in(&setup, &client, OLGA).await.status(), 200);
    let (status, html) = page(
        &client,
        &format!("{}/console/search?q=%2B33612345678", setup.admin),
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("2 accounts match"), "{html}");
    for link in ["/console/accounts/alice", "/console/accounts/bob%2F2"] {
        assert!(
            html.contains(&format!("href=\"{link}\"")),
            "{link} in {html}"
        );
    }
}

#[tokio::test]
async fn a_console_session_ends_after_session_seconds_which_default_to_an_hour() {
    let defaults: ConsoleConfig = toml::from_str(
        r#"issuer = "https://id.example"
client_id = "console"
client_secret = "s"
redirect_url = "https://console.example/console/callback"
operator_value = "pims-operators""#,
    )
    .unwrap();
    assert_eq!(defaults.session_seconds, 3600);
    let Some(setup) = setup().await else { return };
    let client = Provider::browser();
    assert_eq!(sign_in(&setup, &client, OLGA).await.status(), 200);
    let home = format!("{}/console/", setup.admin);
    assert_eq!(page(&client, &home).await.0, 200);
    setup.server.clock.advance(3600);
    let r = client.get(&home).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/login?next=%2Fconsole%2F");
}

#[tokio::test]
async fn the_console_audit_next_link_keeps_the_filter_and_pages_on() {
    let Some(setup) = setup().await else { return };
    enrolled_account(&setup.server, "a/b", PHONE, "1234").await;
    let client = Provider::browser();
    assert_eq!(sign_in(&setup, &client, OLGA).await.status(), 200);
    let account = format!("{}/console/accounts/a%2Fb", setup.admin);
    let (_, html) = page(&client, &account).await;
    let token = csrf(&html);
    let device = at_least_one_device(&html);
    for _ in 0..21 {
        for (action, extra) in [("disable", true), ("enable", false)] {
            let mut form = vec![("csrf", token.as_str())];
            if extra {
                form.extend([("reason", "test"), ("confirm", "yes")]);
            }
            let r = client
                .post(format!("{account}/devices/{device}/{action}"))
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303);
        }
    }
    let (_, html) = page(&client, &format!("{account}/audit?event=device_disabled")).await;
    assert_eq!(html.matches("<td>device_disabled</td>").count(), 20);
    assert!(
        !html.contains("rel=\"prev\""),
        "the newest page has nothing newer"
    );
    let at = html.find("rel=\"next\"").expect("an older page");
    let href = &html[..at];
    let href = &href[href.rfind("href=\"").unwrap() + 6..];
    let href = href[..href.find('"').unwrap()]
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    assert!(
        href.starts_with(
            "/console/accounts/a%2Fb/audit?event=device_disabled&by=&from=&to=&before="
        ),
        "{href}"
    );
    let (status, html) = page(&client, &format!("{}{href}", setup.admin)).await;
    assert_eq!(status, 200);
    assert_eq!(html.matches("<td>device_disabled</td>").count(), 1);
    assert!(!html.contains("rel=\"next\""));
    assert!(html.contains("rel=\"prev\""), "and back to the newer ones");
}

/// The helpdesk's job during a hold, through both operator doors: the console shows the hold and
/// the masked number a restore gives back, restores it, and says when there is nothing left to
/// restore; the admin API, over the same service, agrees on each outcome and on what the audit
/// trail records. Neither door creates an account it is asked about.
#[tokio::test]
async fn the_console_restores_a_number_during_a_hold_and_both_doors_agree() {
    let Some(setup) = setup().await else { return };
    let s = &setup.server;
    let (token, mut thief) = enrolled_account(s, "victim", PHONE, "1234").await;
    crate::management::move_number(s, &token, &mut thief, crate::management::PHONE2, None)
        .await
        .unwrap();

    let admin = |method: reqwest::Method, path: String| {
        s.http
            .request(method, format!("{}{path}", setup.admin))
            .bearer_auth(ADMIN_TOKEN)
    };
    let view: pims_server::admin::AccountView = decode(
        admin(
            reqwest::Method::GET,
            endpoint::admin::ACCOUNT.path(&["victim"]),
        )
        .send()
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    let hold = view.recovery_hold.expect("a hold runs");
    assert_eq!(
        hold.restorable_phone_number.as_deref(),
        Some(pims_server::sms::mask_number(PHONE).as_str())
    );

    let client = Provider::browser();
    assert_eq!(sign_in(&setup, &client, OLGA).await.status(), 200);
    let account = format!("{}/console/accounts/victim", setup.admin);
    let (_, html) = page(&client, &account).await;
    let masked = format!("{}78", "•".repeat(PHONE.len() - 2));
    assert!(
        html.contains("Recovery hold after a number change"),
        "{html}"
    );
    assert!(html.contains(&format!("Restore {masked}")), "{html}");
    assert!(!html.contains("612345678") && !html.contains("698765432"));
    let token_csrf = csrf(&html);
    let r = client
        .post(format!("{account}/phone-number/restore"))
        .form(&[("csrf", &token_csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (_, html) = page(&client, &format!("{account}?done=restored")).await;
    assert!(html.contains("The trusted number was restored"), "{html}");
    assert!(
        !html.contains("Recovery hold"),
        "the restore ended the hold: {html}"
    );
    assert!(
        !html.contains("id=\"restore\""),
        "no restore offered any more"
    );
    assert_eq!(
        s.status(&token, Some(&thief.id))
            .await
            .phone_number
            .as_deref(),
        Some(PHONE)
    );

    // Nothing left to restore, in both doors.
    let r = client
        .post(format!("{account}/phone-number/restore"))
        .form(&[("csrf", &token_csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = admin(
        reqwest::Method::POST,
        endpoint::admin::PHONE_NUMBER_RESTORE.path(&["victim"]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(decode_empty(r).await, Err(ApiError::NothingToRestore));

    // An account nobody has seen: 404 in both doors, and still unknown after.
    let r = client
        .post(format!("{}/console/accounts/nobody/unblock", setup.admin))
        .form(&[("csrf", &token_csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = admin(
        reqwest::Method::POST,
        endpoint::admin::UNBLOCK.path(&["nobody"]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(decode_empty(r).await, Err(ApiError::AccountUnknown));
    let view: pims_server::admin::AccountView = decode(
        admin(
            reqwest::Method::GET,
            endpoint::admin::ACCOUNT.path(&["nobody"]),
        )
        .send()
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert!(!view.known);

    // The trail names the operator of the console's restore.
    let page: pims_server::admin::AuditPage = decode(
        admin(
            reqwest::Method::GET,
            format!("{}?account=victim", endpoint::admin::AUDIT.path(&[])),
        )
        .send()
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    let restores: Vec<_> = page
        .events
        .iter()
        .filter(|e| e.event == "phone_number_restored")
        .map(|e| e.detail.as_deref())
        .collect();
    assert_eq!(
        restores,
        [Some("console operator olga, 1 devices disabled")]
    );
}

/// The search reads numbers as people type them (national, spaced, in the console's region)
/// and finds subjects by their start.
#[tokio::test]
async fn the_search_reads_national_numbers_and_subject_prefixes() {
    let Some(setup) = setup().await else { return };
    blocked_alice(&setup.server).await;
    let client = Provider::browser();
    assert_eq!(sign_in(&setup, &client, OLGA).await.status(), 200);
    let search = |q: &'static str| {
        let client = &client;
        let admin = setup.admin.clone();
        async move {
            let mut url = reqwest::Url::parse(&format!("{admin}/console/search")).unwrap();
            url.query_pairs_mut().append_pair("q", q);
            client.get(url).send().await.unwrap()
        }
    };
    for typed in ["06 12 34 56 78", "0612345678", "+33 6 12 34 56 78", "ali"] {
        let r = search(typed).await;
        assert_eq!(r.status(), 303, "{typed}");
        assert_eq!(
            r.headers()["location"],
            "/console/accounts/alice",
            "{typed}"
        );
    }
    assert_eq!(search("07 00 00 00 00").await.status(), 404);
    assert_eq!(search("zz").await.status(), 404);
}

/// A shift's view of the trail: every account, by operator, newest first, with seconds, and the
/// rows shown as CSV in which a subject a spreadsheet would run as a formula is defanged.
#[tokio::test]
async fn the_audit_across_accounts_by_operator_and_as_csv() {
    let Some(setup) = setup().await else { return };
    let s = &setup.server;
    blocked(s, "alice", PHONE).await;
    blocked(s, "=HYPERLINK(\"x\")", crate::management::PHONE2).await;
    let client = Provider::browser();
    assert_eq!(sign_in(&setup, &client, OLGA).await.status(), 200);
    let (_, html) = page(&client, &format!("{}/console/", setup.admin)).await;
    let token = csrf(&html);
    for account in ["alice", "%3DHYPERLINK(%22x%22)"] {
        let r = client
            .post(format!(
                "{}/console/accounts/{account}/unblock",
                setup.admin
            ))
            .form(&[("csrf", &token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{account}");
    }
    let (status, html) = page(&client, &format!("{}/console/audit?by=olga", setup.admin)).await;
    assert_eq!(status, 200);
    assert_eq!(
        html.matches("<td>account_unblocked</td>").count(),
        2,
        "{html}"
    );
    let newest = html.find("HYPERLINK").unwrap();
    assert!(newest < html.find(">alice<").unwrap(), "newest first");
    assert!(html.contains(" UTC</time></td>"), "{html}");
    let r = client
        .get(format!("{}/console/audit?by=olga&format=csv", setup.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = r.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,at,account,event,device,detail");
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].contains(",\"'=HYPERLINK(\"\"x\"\")\",account_unblocked,"),
        "{text}"
    );
    assert!(
        lines[2].contains(",alice,account_unblocked,,console operator olga"),
        "{text}"
    );
    // A bad date is said so.
    let (status, _) = page(
        &client,
        &format!("{}/console/audit?from=yesterday", setup.admin),
    )
    .await;
    assert_eq!(status, 400);
}

/// What an operator action came to, whichever door it went through.
#[derive(Debug, PartialEq)]
enum Outcome {
    Changed,
    Unchanged,
    Refused(ApiError),
}

#[derive(Clone, Copy, Debug)]
enum Act<'a> {
    Unblock,
    Disable(&'a str, &'a str),
    Enable(&'a str),
    Restore,
}

/// `act` on `account` through the console, signed in with `client` (the page's `csrf`).
async fn by_console(
    setup: &Setup,
    client: &reqwest::Client,
    csrf: &str,
    account: &str,
    act: Act<'_>,
) -> Outcome {
    let base = format!(
        "{}/console/accounts/{}",
        setup.admin,
        endpoint::encode_segment(account)
    );
    let (url, form) = match act {
        Act::Unblock => (format!("{base}/unblock"), vec![("csrf", csrf)]),
        Act::Disable(device, reason) => (
            format!("{base}/devices/{device}/disable"),
            vec![("csrf", csrf), ("reason", reason), ("confirm", "yes")],
        ),
        Act::Enable(device) => (
            format!("{base}/devices/{device}/enable"),
            vec![("csrf", csrf)],
        ),
        Act::Restore => (format!("{base}/phone-number/restore"), vec![("csrf", csrf)]),
    };
    let r = client.post(url).form(&form).send().await.unwrap();
    let status = r.status().as_u16();
    if status == 303 {
        let to = r.headers()["location"].to_str().unwrap().to_string();
        let done = to.split("?done=").nth(1).unwrap_or_default();
        return match done {
            "disabled" | "enabled" | "unblocked" | "restored" => Outcome::Changed,
            "already-disabled" | "already-enabled" | "not-blocked" => Outcome::Unchanged,
            _ => panic!("{act:?}: to {to}"),
        };
    }
    let page = r.text().await.unwrap();
    let error = match (status, page.as_str()) {
        (404, p) if p.contains("<h1>No such account</h1>") => ApiError::AccountUnknown,
        (404, p) if p.contains("<h1>No such device</h1>") => ApiError::DeviceUnknown,
        (409, p) if p.contains("<h1>Not enabled</h1>") => ApiError::DeviceNotReEnablable,
        (409, p) if p.contains("<h1>Nothing to restore</h1>") => ApiError::NothingToRestore,
        _ => panic!("{act:?}: {status} {page}"),
    };
    Outcome::Refused(error)
}

/// `act` on `account` through the admin API.
async fn by_admin_api(setup: &Setup, account: &str, act: Act<'_>) -> Outcome {
    let post = |route: pims_proto::endpoint::Route, values: &[&str]| {
        setup
            .server
            .http
            .post(format!("{}{}", setup.admin, route.path(values)))
            .bearer_auth(ADMIN_TOKEN)
    };
    let r = match act {
        Act::Unblock => post(endpoint::admin::UNBLOCK, &[account]),
        Act::Disable(device, reason) => post(endpoint::admin::DEVICE_DISABLE, &[account, device])
            .json(&serde_json::json!({ "reason": reason })),
        Act::Enable(device) => post(endpoint::admin::DEVICE_ENABLE, &[account, device]),
        Act::Restore => post(endpoint::admin::PHONE_NUMBER_RESTORE, &[account]),
    };
    match decode::<serde_json::Value>(r.send().await.unwrap()).await {
        Ok(answer) => match answer["changed"].as_bool() {
            Some(true) => Outcome::Changed,
            Some(false) => Outcome::Unchanged,
            // A restore answers what it restored.
            None if answer["phoneNumber"].is_string() => Outcome::Changed,
            None => panic!("{act:?}: {answer}"),
        },
        Err(e) => Outcome::Refused(e),
    }
}

/// What the admin API says of an account: its state, its devices' states, and its audit trail
/// with the operator and the device's id put in general terms (they differ between the two).
async fn seen_by_admin(setup: &Setup, account: &str, device: &str) -> String {
    let get = |path: String| {
        setup
            .server
            .http
            .get(format!("{}{path}", setup.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    let view: serde_json::Value = decode(
        get(endpoint::admin::ACCOUNT.path(&[account]))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let devices: serde_json::Value = decode(
        get(endpoint::admin::DEVICES.path(&[account]))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let mut url = reqwest::Url::parse("http://x/").unwrap();
    url.query_pairs_mut()
        .append_pair("account", account)
        .append_pair("limit", "1000");
    let audit: pims_server::admin::AuditPage = decode(
        get(format!(
            "{}?{}",
            endpoint::admin::AUDIT.path(&[]),
            url.query().unwrap()
        ))
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    let trail: Vec<String> = audit
        .events
        .iter()
        .map(|e| {
            let detail = e.detail.clone().unwrap_or_default();
            let detail = detail
                .strip_prefix("console operator olga")
                .or_else(|| detail.strip_prefix("admin"))
                .map_or(detail.clone(), |rest| format!("OPERATOR{rest}"));
            let device_id = match e.device_id.as_deref() {
                Some(id) if id == device => "DEVICE",
                Some(_) => "another device",
                None => "",
            };
            format!("{} {device_id} {detail}", e.event)
        })
        .collect();
    let states: Vec<String> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} re-enablable={}",
                d["state"].as_str().unwrap(),
                d["reEnablable"]
            )
        })
        .collect();
    format!(
        "known={} number={} pin={} hold={} devices={}\ntrail:\n{}",
        view["known"],
        view["phoneNumber"],
        view["pin"],
        view["recoveryHold"]["restorablePhoneNumber"],
        states.join(", "),
        trail.join("\n")
    )
}

/// One door for operators: every operator action, done on one account through the console and
/// on a twin account through the admin API, gives the same outcome, leaves the same state and
/// writes the same audit rows (a no-op none); on an account nobody has seen both refuse alike.
#[tokio::test]
async fn every_operator_action_gives_the_same_answer_through_both_doors() {
    let Some(setup) = setup().await else { return };
    let s = &setup.server;
    // Twins: numbers that look the same masked; a thief moves each to a number of their own.
    let twins = [
        ("via-console", PHONE, crate::management::PHONE2),
        ("via-admin-api", "+33655555578", "+33644444432"),
    ];
    let mut devices = Vec::new();
    for (account, number, _) in twins {
        devices.push(blocked(s, account, number).await);
    }
    let client = Provider::browser();
    assert_eq!(sign_in(&setup, &client, OLGA).await.status(), 200);
    let (_, html) = page(&client, &format!("{}/console/", setup.admin)).await;
    let token = csrf(&html);

    let both = |devices: &[Device], act, ids| {
        let ids: [&str; 2] = ids;
        let ids = [0, 1].map(|i| {
            if ids[i] == "DEVICE" {
                devices[i].id.clone()
            } else {
                ids[i].to_string()
            }
        });
        let devices = [devices[0].id.clone(), devices[1].id.clone()];
        let (setup, client, token) = (&setup, &client, &token);
        async move {
            let on = |i: usize| match act {
                Act::Disable(_, reason) => Act::Disable(&ids[i], reason),
                Act::Enable(_) => Act::Enable(&ids[i]),
                other => other,
            };
            let console = by_console(setup, client, token, twins[0].0, on(0)).await;
            let admin = by_admin_api(setup, twins[1].0, on(1)).await;
            assert_eq!(console, admin, "{act:?}: the doors differ");
            let seen = [
                seen_by_admin(setup, twins[0].0, &devices[0]).await,
                seen_by_admin(setup, twins[1].0, &devices[1]).await,
            ];
            assert_eq!(seen[0], seen[1], "{act:?}: the accounts differ after it");
            (console, seen[0].clone())
        }
    };
    let dev = ["DEVICE", "DEVICE"];
    let trail_len = |seen: &str| seen.split("\ntrail:\n").nth(1).unwrap().lines().count();

    let (outcome, seen) = both(&devices, Act::Unblock, dev).await;
    assert_eq!(outcome, Outcome::Changed);
    assert!(seen.contains("\naccount_unblocked  OPERATOR"), "{seen}");
    let rows = trail_len(&seen);
    let (outcome, seen) = both(&devices, Act::Unblock, dev).await;
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(trail_len(&seen), rows, "a no-op is not audited: {seen}");

    let (outcome, seen) = both(&devices, Act::Disable("", "reported stolen"), dev).await;
    assert_eq!(outcome, Outcome::Changed);
    assert!(
        seen.contains("\ndevice_disabled DEVICE OPERATOR: reported stolen"),
        "{seen}"
    );
    assert!(
        seen.contains("devices=disabled re-enablable=true\n"),
        "{seen}"
    );
    let rows = trail_len(&seen);
    let (outcome, seen) = both(&devices, Act::Disable("", "reported stolen"), dev).await;
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(trail_len(&seen), rows, "a no-op is not audited: {seen}");

    let (outcome, seen) = both(&devices, Act::Enable(""), dev).await;
    assert_eq!(outcome, Outcome::Changed);
    assert!(seen.contains("\ndevice_enabled DEVICE OPERATOR"), "{seen}");
    assert!(
        seen.contains("devices=active re-enablable=false\n"),
        "{seen}"
    );
    let rows = trail_len(&seen);
    let (outcome, seen) = both(&devices, Act::Enable(""), dev).await;
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(trail_len(&seen), rows, "a no-op is not audited: {seen}");

    let nothing = ["no-such-device", "no-such-device"];
    let (outcome, _) = both(&devices, Act::Disable("", "lost"), nothing).await;
    assert_eq!(outcome, Outcome::Refused(ApiError::DeviceUnknown));
    let (outcome, _) = both(&devices, Act::Enable(""), nothing).await;
    assert_eq!(outcome, Outcome::Refused(ApiError::DeviceUnknown));
    let (outcome, seen) = both(&devices, Act::Restore, dev).await;
    assert_eq!(outcome, Outcome::Refused(ApiError::NothingToRestore));
    assert_eq!(trail_len(&seen), rows, "refusals are not audited: {seen}");

    // A thief moves each number; each door restores its twin's.
    for ((account, _, to), device) in twins.iter().zip(devices.iter_mut()) {
        let token = s.token(account).await;
        crate::management::move_number(s, &token, device, to, None)
            .await
            .unwrap();
    }
    let masked = pims_server::sms::mask_number(PHONE);
    let (outcome, seen) = both(&devices, Act::Unblock, dev).await;
    assert_eq!(outcome, Outcome::Unchanged);
    assert!(seen.contains(&format!("hold=\"{masked}\"")), "{seen}");
    let (outcome, seen) = both(&devices, Act::Restore, dev).await;
    assert_eq!(outcome, Outcome::Changed);
    assert!(
        seen.contains("\nphone_number_restored  OPERATOR, 1 devices disabled"),
        "{seen}"
    );
    assert!(
        seen.contains(&format!("number=\"{masked}\" pin=\"set\" hold=null")),
        "{seen}"
    );
    let (outcome, _) = both(&devices, Act::Restore, dev).await;
    assert_eq!(outcome, Outcome::Refused(ApiError::NothingToRestore));
    // A device the restore disabled is not an operator's to enable again.
    let (outcome, seen) = both(&devices, Act::Enable(""), dev).await;
    assert_eq!(outcome, Outcome::Refused(ApiError::DeviceNotReEnablable));
    assert!(
        seen.contains("devices=disabled re-enablable=false\n"),
        "{seen}"
    );
    let (outcome, _) = both(&devices, Act::Disable("", "lost"), dev).await;
    assert_eq!(outcome, Outcome::Unchanged);

    // An account nobody has seen: the same refusal from both doors, and it stays unknown.
    for (act, refused) in [
        (Act::Unblock, ApiError::AccountUnknown),
        (Act::Restore, ApiError::NothingToRestore),
        (Act::Disable("d", "lost"), ApiError::DeviceUnknown),
        (Act::Enable("d"), ApiError::DeviceUnknown),
    ] {
        let console = by_console(&setup, &client, &token, "nobody", act).await;
        let admin = by_admin_api(&setup, "nobody", act).await;
        assert_eq!(console, admin, "{act:?} on an unknown account");
        assert_eq!(console, Outcome::Refused(refused), "{act:?}");
        let seen = seen_by_admin(&setup, "nobody", "d").await;
        assert!(seen.starts_with("known=false "), "{seen}");
        assert_eq!(trail_len(&seen), 0, "{seen}");
    }
}

/// Times in the operator's own time zone with UTC beside: chosen once on the time-zone page
/// (kept in this browser's cookie), shown in the audit trail and on the account page, and the
/// day filter reads days there; without a choice, UTC alone; the CSV stays in UTC.
#[tokio::test]
async fn the_audit_trail_shows_times_in_the_operators_time_zone_with_utc_beside() {
    let Some(setup) = setup().await else { return };
    let s = &setup.server;
    blocked_alice(s).await;
    let client = Provider::browser();
    assert_eq!(sign_in(&setup, &client, OLGA).await.status(), 200);
    let account = format!("{}/console/accounts/alice", setup.admin);
    let (_, html) = page(&client, &account).await;
    let token = csrf(&html);
    assert!(html.contains("Times in UTC."), "{html}");
    let r = client
        .post(format!("{account}/unblock"))
        .form(&[("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // The unblock's second, as UTC and as India's time (+05:30 all year, "IST").
    let at = s.clock.now();
    let (day, second) = (at.div_euclid(86_400), at.rem_euclid(86_400));
    let clock = |second: i64| {
        format!(
            "{:02}:{:02}:{:02}",
            second / 3600,
            second % 3600 / 60,
            second % 60
        )
    };
    let utc_time = clock(second);
    let india = second + 5 * 3600 + 30 * 60;
    let india_time = clock(india % 86_400);
    let date = |day: i64| {
        jiff::Timestamp::from_second(day * 86_400)
            .unwrap()
            .strftime("%Y-%m-%d")
            .to_string()
    };
    let utc_date = date(day);
    let india_date = date(day + india / 86_400);

    let audit = format!("{account}/audit?event=account_unblocked");
    let (_, html) = page(&client, &audit).await;
    assert!(html.contains("Times in UTC."), "{html}");
    assert!(
        html.contains(&format!(
            "<time datetime=\"{utc_date}T{utc_time}Z\">{utc_date} {utc_time} UTC</time></td>"
        )),
        "{html}"
    );

    // The time-zone page lists the zones and comes back to where it was opened.
    let at = html.find("id=\"change-zone\"").unwrap();
    let href = &html[..at];
    let href = href[href.rfind("href=\"").unwrap() + 6..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    assert_eq!(
        href,
        "/console/timezone?next=%2Fconsole%2Faccounts%2Falice%2Faudit%3Fevent%3Daccount_unblocked"
    );
    let (status, zones) = page(&client, &format!("{}{href}", setup.admin)).await;
    assert_eq!(status, 200);
    assert!(zones.contains("<option value=\"Asia/Kolkata\">"), "{zones}");
    assert!(zones.contains("<option value=\"UTC\" selected>"), "{zones}");
    let next = "/console/accounts/alice/audit?event=account_unblocked";
    let choose = |tz: &'static str, csrf: String| {
        let client = &client;
        let url = format!("{}/console/timezone", setup.admin);
        async move {
            client
                .post(url)
                .form(&[("csrf", csrf.as_str()), ("tz", tz), ("next", next)])
                .send()
                .await
                .unwrap()
        }
    };
    // Only from the console's own form, and only a zone of the list.
    assert_eq!(choose("Asia/Kolkata", "forged".into()).await.status(), 403);
    assert_eq!(choose("Mars/Olympus", token.clone()).await.status(), 400);
    // It sends the browser back into the console only.
    let r = client
        .post(format!("{}/console/timezone", setup.admin))
        .form(&[
            ("csrf", token.as_str()),
            ("tz", "Asia/Kolkata"),
            ("next", "https://attacker.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/console/");
    let r = choose("asia/kolkata", token.clone()).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], next);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("pims_console_tz=Asia/Kolkata; Path=/console;"),
        "{cookie}"
    );

    let (_, html) = page(&client, &audit).await;
    assert!(
        html.contains("Times in <strong>Asia/Kolkata</strong>, UTC beside."),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "<time datetime=\"{utc_date}T{utc_time}Z\">{india_date} {india_time} IST</time> \
             <span class=\"utc\">{utc_date} {utc_time} UTC</span></td>"
        )),
        "{html}"
    );
    let (_, zones) = page(&client, &format!("{}{href}", setup.admin)).await;
    assert!(
        zones.contains("<option value=\"Asia/Kolkata\" selected>"),
        "{zones}"
    );
    // The account page too (its devices' times).
    let (_, html) = page(&client, &account).await;
    assert!(html.contains(" IST</time> <span class=\"utc\">"), "{html}");

    // Days are India's: the unblock is on India's date, not on the day before.
    let day_filter = |from: &str, to: &str| format!("{audit}&from={from}&to={to}");
    let (_, html) = page(&client, &day_filter(&india_date, &india_date)).await;
    assert_eq!(
        html.matches("<td>account_unblocked</td>").count(),
        1,
        "{html}"
    );
    let before = date(day + india / 86_400 - 1);
    let (_, html) = page(&client, &day_filter(&before, &before)).await;
    assert!(html.contains("No events."), "{html}");
    let (_, html) = page(&client, &day_filter(&before, "")).await;
    assert_eq!(
        html.matches("<td>account_unblocked</td>").count(),
        1,
        "{html}"
    );

    // The CSV is in UTC whatever the zone.
    let csv = client
        .get(format!("{audit}&format=csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains(&format!(
            ",{utc_date} {utc_time} UTC,alice,account_unblocked,"
        )),
        "{csv}"
    );

    // Back to UTC alone.
    let r = choose("UTC", token.clone()).await;
    assert_eq!(r.status(), 303);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("pims_console_tz=; Path=/console; Max-Age=0"));
    let (_, html) = page(&client, &audit).await;
    assert!(
        html.contains("Times in UTC.") && !html.contains("class=\"utc\""),
        "{html}"
    );
}
