use std::path::PathBuf;
use std::time::Duration;

use pims_core::PimsError;
use pims_proto::Platform;
use serde_json::Value;

const PREFIX: &str = "components.strongAuthentication";

/// `components.strongAuthentication` of the SDK configuration.
///
/// | key | required | meaning |
/// |---|---|---|
/// | `serverUrl` | yes | base URL of the PIMS server (`https://…`, or `http://` for loopback) |
/// | `dataDirectory` | yes | directory for this component's encrypted vault |
/// | `platform` | yes | `ios`, `android` or `desktop` |
/// | `deviceName` | no | name shown in the account's device list |
/// | `requestTimeoutSeconds` | no | per-request timeout (default 15) |
/// | `eventPollSeconds` | no | how often a `pims.authentication.enrollment` subscription asks the server for changes (default 60) |
/// | `smsCodeTimeoutSeconds` | no | Android: how long `enroll` without `smsCode` waits for the host's SMS reader (default 60) |
/// | `defaultRegion` | no | ISO 3166-1 alpha-2 region in which a `phoneNumber` written nationally (`0612345678`) is read (default `FR`, the reference documentation's numbers) |
#[derive(Debug, Clone)]
pub struct StrongAuthConfig {
    pub server_url: String,
    pub data_directory: PathBuf,
    pub platform: Platform,
    pub device_name: String,
    pub request_timeout: Duration,
    pub event_poll: Duration,
    pub sms_code_timeout: Duration,
    /// Upper-case ISO 3166-1 alpha-2; the server's numbering plan decides what is valid in it.
    pub default_region: String,
}

impl StrongAuthConfig {
    pub fn parse(tree: &Value) -> Result<Self, PimsError> {
        let server_url = required_str(tree, "serverUrl")?
            .trim_end_matches('/')
            .to_owned();
        if !server_url_ok(&server_url) {
            return Err(invalid("serverUrl"));
        }
        let data_directory = PathBuf::from(required_str(tree, "dataDirectory")?);
        let platform =
            Platform::parse(required_str(tree, "platform")?).ok_or_else(|| invalid("platform"))?;
        let device_name = match tree.get("deviceName") {
            None | Some(Value::Null) => format!("{} device", platform.as_str()),
            Some(Value::String(s)) if pims_proto::device_name_ok(s.trim()) => s.trim().to_owned(),
            Some(_) => return Err(invalid("deviceName")),
        };
        let request_timeout = seconds(tree, "requestTimeoutSeconds", 15.0, 300.0)?;
        let event_poll = seconds(tree, "eventPollSeconds", 60.0, 86_400.0)?;
        let sms_code_timeout = seconds(tree, "smsCodeTimeoutSeconds", 60.0, 600.0)?;
        let default_region = match tree.get("defaultRegion") {
            None | Some(Value::Null) => "FR".to_owned(),
            Some(Value::String(s))
                if s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic()) =>
            {
                s.to_ascii_uppercase()
            }
            Some(_) => return Err(invalid("defaultRegion")),
        };
        Ok(StrongAuthConfig {
            server_url,
            data_directory,
            platform,
            device_name,
            request_timeout,
            event_poll,
            sms_code_timeout,
            default_region,
        })
    }
}

/// `https://` anywhere; plain `http://` only to this machine (`127.0.0.0/8`, `[::1]`,
/// `localhost`), where nobody on the network can read or change the PIN exchange, tokens and
/// proofs in transit.
fn server_url_ok(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        return false;
    };
    match parsed.scheme() {
        "https" => true,
        "http" => match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => std::net::IpAddr::is_loopback(&ip),
            Err(_) => host.eq_ignore_ascii_case("localhost"),
        },
        _ => false,
    }
}

/// An optional positive number of seconds, at most `max`.
fn seconds(tree: &Value, key: &str, default: f64, max: f64) -> Result<Duration, PimsError> {
    match tree.get(key) {
        None | Some(Value::Null) => Ok(Duration::from_secs_f64(default)),
        Some(v) => match v.as_f64() {
            Some(s) if s > 0.0 && s <= max => Ok(Duration::from_secs_f64(s)),
            _ => Err(invalid(key)),
        },
    }
}

fn required_str<'a>(tree: &'a Value, key: &str) -> Result<&'a str, PimsError> {
    match tree.get(key) {
        None | Some(Value::Null) => Err(PimsError::missing(&format!("{PREFIX}.{key}"))),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(invalid(key)),
    }
}

fn invalid(key: &str) -> PimsError {
    PimsError::invalid(&format!("{PREFIX}.{key}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_keys_are_named_in_full() {
        let e = StrongAuthConfig::parse(&json!({"dataDirectory": "/tmp", "platform": "ios"}))
            .unwrap_err();
        assert_eq!(
            e.label,
            "Missing components.strongAuthentication.serverUrl parameter"
        );
        let e = StrongAuthConfig::parse(
            &json!({"serverUrl": "ftp://x.example", "dataDirectory": "/tmp", "platform": "ios"}),
        )
        .unwrap_err();
        assert_eq!(
            e.label,
            "Invalid components.strongAuthentication.serverUrl parameter"
        );
        let e = StrongAuthConfig::parse(
            &json!({"serverUrl": "https://x.example", "dataDirectory": "/tmp", "platform": "tv"}),
        )
        .unwrap_err();
        assert_eq!(
            e.label,
            "Invalid components.strongAuthentication.platform parameter"
        );
    }

    fn parse_url(url: &str) -> Result<StrongAuthConfig, PimsError> {
        StrongAuthConfig::parse(
            &json!({"serverUrl": url, "dataDirectory": "/tmp", "platform": "ios"}),
        )
    }

    #[test]
    fn plain_http_is_refused_beyond_loopback() {
        for url in [
            "http://pims.example",
            "http://192.168.1.10:8080",
            "http://[2001:db8::1]:8080",
            "http://127.0.0.1.nip.io",
            "http://localhost.evil.example",
            "http://",
            "https://",
        ] {
            let e = parse_url(url).unwrap_err();
            assert_eq!(e.code, pims_core::ErrorCode::InvalidParameter, "{url}");
            assert_eq!(
                e.label, "Invalid components.strongAuthentication.serverUrl parameter",
                "{url}"
            );
        }
        for url in [
            "http://127.0.0.1:8080",
            "http://127.0.0.2",
            "http://[::1]:8080/",
            "http://localhost:8080",
            "https://pims.example",
            "https://192.168.1.10",
        ] {
            assert!(parse_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn device_names_with_control_or_format_characters_are_refused() {
        for name in [
            "evil\u{202e}gpj",
            "zero\u{200b}width",
            "iso\u{2066}late",
            "a\tb",
        ] {
            let e = StrongAuthConfig::parse(&json!({
                "serverUrl": "https://x.example",
                "dataDirectory": "/tmp",
                "platform": "ios",
                "deviceName": name,
            }))
            .unwrap_err();
            assert_eq!(e.code, pims_core::ErrorCode::InvalidParameter, "{name:?}");
            assert_eq!(
                e.label,
                "Invalid components.strongAuthentication.deviceName parameter"
            );
        }
    }

    #[test]
    fn defaults_fill_optional_keys() {
        let c = StrongAuthConfig::parse(
            &json!({"serverUrl": "https://x.example/", "dataDirectory": "/tmp", "platform": "android"}),
        )
        .unwrap();
        assert_eq!(c.server_url, "https://x.example");
        assert_eq!(c.device_name, "android device");
        assert_eq!(c.request_timeout, Duration::from_secs(15));
    }
}
