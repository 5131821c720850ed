//! Real SMS delivery over HTTP: a Twilio-style REST API and a generic JSON webhook.
//!
//! Retries never send a message twice:
//! - The webhook sender puts one `Idempotency-Key` on every attempt of a message, so a receiver
//!   that deduplicates on it delivers once; it retries connection failures, timeouts, 429 and
//!   5xx answers.
//! - The Twilio API keeps no idempotency key, so a request it may have received is never sent
//!   again: only a failed connection (nothing was sent) and a 429 (refused, not sent) are
//!   retried. A timeout or a 5xx fails the call; the user can ask for the code again.
//!
//! Attempts are bounded (`max_attempts`) and each has a timeout; the wait between attempts
//! doubles from 200 ms.

use std::time::Duration;

use anyhow::{anyhow, bail};
use serde::Deserialize;

use crate::sms::{mask_number, SmsSender};

/// `[sms_gateway]` of the configuration; without it the development outbox is used.
#[derive(Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SmsGatewayConfig {
    Twilio {
        #[serde(default = "twilio_base_url")]
        base_url: String,
        account_sid: String,
        auth_token: String,
        /// Sender number or alphanumeric id.
        from: String,
        #[serde(default = "default_timeout")]
        timeout_seconds: u64,
        #[serde(default = "default_attempts")]
        max_attempts: u32,
    },
    Webhook {
        url: String,
        /// Sent as `Authorization: Bearer …` when set.
        bearer_token: Option<String>,
        #[serde(default = "default_timeout")]
        timeout_seconds: u64,
        #[serde(default = "default_attempts")]
        max_attempts: u32,
    },
}

// Credentials stay out of Debug output.
impl std::fmt::Debug for SmsGatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmsGatewayConfig::Twilio {
                base_url,
                account_sid,
                ..
            } => f
                .debug_struct("Twilio")
                .field("base_url", base_url)
                .field("account_sid", account_sid)
                .finish_non_exhaustive(),
            SmsGatewayConfig::Webhook { url, .. } => f
                .debug_struct("Webhook")
                .field("url", url)
                .finish_non_exhaustive(),
        }
    }
}

fn twilio_base_url() -> String {
    "https://api.twilio.com".into()
}
fn default_timeout() -> u64 {
    10
}
fn default_attempts() -> u32 {
    3
}

impl SmsGatewayConfig {
    pub fn sender(&self) -> anyhow::Result<Box<dyn SmsSender>> {
        Ok(match self.clone() {
            SmsGatewayConfig::Twilio {
                base_url,
                account_sid,
                auth_token,
                from,
                timeout_seconds,
                max_attempts,
            } => Box::new(TwilioSender {
                url: format!(
                    "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                    base_url.trim_end_matches('/')
                ),
                account_sid,
                auth_token,
                from,
                http: client(timeout_seconds)?,
                max_attempts: max_attempts.max(1),
            }),
            SmsGatewayConfig::Webhook {
                url,
                bearer_token,
                timeout_seconds,
                max_attempts,
            } => Box::new(WebhookSender {
                url,
                bearer_token,
                http: client(timeout_seconds)?,
                max_attempts: max_attempts.max(1),
            }),
        })
    }
}

fn client(timeout_seconds: u64) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_seconds.max(1)))
        .connect_timeout(Duration::from_secs(timeout_seconds.clamp(1, 5)))
        .build()?)
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64 << attempt.min(5))
}

pub struct TwilioSender {
    url: String,
    account_sid: String,
    auth_token: String,
    from: String,
    http: reqwest::Client,
    max_attempts: u32,
}

#[async_trait::async_trait]
impl SmsSender for TwilioSender {
    async fn send(&self, to: &str, text: &str, _now: i64) -> anyhow::Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .http
                .post(&self.url)
                .basic_auth(&self.account_sid, Some(&self.auth_token))
                .form(&[("To", to), ("From", &self.from), ("Body", text)])
                .send()
                .await;
            let retry = match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    format!("HTTP {}", r.status())
                }
                Ok(r) => bail!("Twilio answered HTTP {} (not retried)", r.status()),
                Err(e) if e.is_connect() => format!("connection failed: {e}"),
                Err(e) => bail!("Twilio request failed, maybe after delivery (not retried): {e}"),
            };
            if attempt >= self.max_attempts {
                bail!("Twilio: giving up after {attempt} attempts: {retry}");
            }
            tracing::warn!(to = %mask_number(to), attempt, reason = %retry, "SMS retry");
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
}

pub struct WebhookSender {
    url: String,
    bearer_token: Option<String>,
    http: reqwest::Client,
    max_attempts: u32,
}

#[async_trait::async_trait]
impl SmsSender for WebhookSender {
    async fn send(&self, to: &str, text: &str, now: i64) -> anyhow::Result<()> {
        let key = uuid::Uuid::new_v4().to_string();
        let body = serde_json::json!({ "to": to, "text": text, "sentAt": now });
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .post(&self.url)
                .header("Idempotency-Key", &key)
                .json(&body);
            if let Some(token) = &self.bearer_token {
                request = request.bearer_auth(token);
            }
            let retry = match request.send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    format!("HTTP {}", r.status())
                }
                Ok(r) => bail!("SMS webhook answered HTTP {} (not retried)", r.status()),
                Err(e) => format!("{e}"),
            };
            if attempt >= self.max_attempts {
                return Err(anyhow!(
                    "SMS webhook: giving up after {attempt} attempts: {retry}"
                ));
            }
            tracing::warn!(to = %mask_number(to), attempt, reason = %retry, "SMS retry");
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
}
