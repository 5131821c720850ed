//! The configuration tree given to `initialize` (and patched by SET `pims.sdk.configuration`).
//!
//! Original keys are kept: `environnement` (as the original spells it; `environment` is
//! accepted too), `mode`, `monitoring.logLevel`, `credential.*`, `profile.brand`. Components
//! are configured under `components.<key>`; each component validates its own subtree.

use serde_json::{Map, Value};

use crate::PimsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    None,
    Error,
    Warning,
    Info,
    Debug,
    Verbose,
}

impl LogLevel {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "none" | "off" => LogLevel::None,
            "error" => LogLevel::Error,
            "warning" | "warn" => LogLevel::Warning,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "verbose" | "trace" => LogLevel::Verbose,
            _ => return None,
        })
    }
}

/// A validated configuration tree.
#[derive(Debug, Clone)]
pub struct SdkConfig {
    tree: Map<String, Value>,
    pub log_level: LogLevel,
}

impl SdkConfig {
    pub fn parse(value: Value) -> Result<Self, PimsError> {
        let tree = match value {
            Value::Object(map) => map,
            _ => return Err(PimsError::invalid("configuration")),
        };
        for key in ["environnement", "environment", "mode"] {
            optional_string(&tree, key, key)?;
        }
        let monitoring = optional_object(&tree, "monitoring", "monitoring")?;
        let log_level = match monitoring
            .map(|m| optional_string(m, "logLevel", "monitoring.logLevel"))
            .transpose()?
            .flatten()
        {
            Some(level) => {
                LogLevel::parse(level).ok_or_else(|| PimsError::invalid("monitoring.logLevel"))?
            }
            None => LogLevel::Warning,
        };
        if let Some(credential) = optional_object(&tree, "credential", "credential")? {
            for (key, value) in credential {
                if !value.is_string() {
                    return Err(PimsError::invalid(&format!("credential.{key}")));
                }
            }
        }
        if let Some(profile) = optional_object(&tree, "profile", "profile")? {
            optional_string(profile, "brand", "profile.brand")?;
        }
        if let Some(components) = optional_object(&tree, "components", "components")? {
            for (key, value) in components {
                if !value.is_object() {
                    return Err(PimsError::invalid(&format!("components.{key}")));
                }
            }
        }
        Ok(SdkConfig { tree, log_level })
    }

    /// The subtree `components.<key>`, if configured.
    pub fn component(&self, key: &str) -> Option<&Value> {
        self.tree.get("components")?.get(key)
    }

    /// Applies a partial tree (every field optional) on top of this one: objects merge key by
    /// key, other values replace, `null` removes.
    pub fn patched(&self, patch: Value) -> Result<Self, PimsError> {
        let mut merged = Value::Object(self.tree.clone());
        if !patch.is_object() {
            return Err(PimsError::invalid("configuration"));
        }
        merge(&mut merged, patch);
        Self::parse(merged)
    }
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

fn optional_string<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, PimsError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(PimsError::invalid(path)),
    }
}

fn optional_object<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, PimsError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(PimsError::invalid(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_original_keys() {
        let c = SdkConfig::parse(json!({
            "environnement": "PREPROD", "mode": "default",
            "monitoring": {"logLevel": "debug"},
            "credential": {"clientId": "id", "clientSecret": "s"},
            "profile": {"brand": "DS"},
            "components": {"strongAuthentication": {}}
        }))
        .unwrap();
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.component("strongAuthentication"), Some(&json!({})));
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                json!({"monitoring": {"logLevel": "loud"}}),
                "Invalid monitoring.logLevel parameter",
            ),
            (
                json!({"profile": {"brand": 3}}),
                "Invalid profile.brand parameter",
            ),
            (
                json!({"credential": {"clientId": 1}}),
                "Invalid credential.clientId parameter",
            ),
            (
                json!({"components": {"strongAuthentication": "x"}}),
                "Invalid components.strongAuthentication parameter",
            ),
            (
                json!({"environnement": true}),
                "Invalid environnement parameter",
            ),
            (json!([]), "Invalid configuration parameter"),
        ];
        for (config, label) in cases {
            assert_eq!(SdkConfig::parse(config).unwrap_err().label, label);
        }
    }

    #[test]
    fn patch_merges_and_removes() {
        let c = SdkConfig::parse(json!({"monitoring": {"logLevel": "info"}, "mode": "a"})).unwrap();
        let p = c
            .patched(json!({"monitoring": {"logLevel": "error"}, "mode": null}))
            .unwrap();
        assert_eq!(p.log_level, LogLevel::Error);
        assert!(!p.tree.contains_key("mode"));
    }
}
