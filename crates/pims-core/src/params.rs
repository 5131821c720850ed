use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::PimsError;

/// A secret parameter value (PIN, SMS code): wiped from memory on drop, never printed.
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The parameter dictionary of a call, with checks that produce 2101 / 2102 naming the
/// parameter. Unknown extra parameters are ignored.
#[derive(Debug, Clone, Default)]
pub struct Params(Map<String, Value>);

impl Params {
    pub fn new(map: Map<String, Value>) -> Self {
        Params(map)
    }

    /// Accepts an object, or `null` for "no parameters".
    pub fn from_value(value: Value) -> Result<Self, PimsError> {
        match value {
            Value::Object(map) => Ok(Params(map)),
            Value::Null => Ok(Params::default()),
            _ => Err(PimsError::invalid("parameters")),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        match self.0.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// A string parameter; blank strings count as absent (the reference's examples pass `" "`
    /// for "no value").
    pub fn optional_str(&self, name: &str) -> Result<Option<&str>, PimsError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(PimsError::invalid(name)),
        }
    }

    pub fn required_str(&self, name: &str) -> Result<&str, PimsError> {
        self.optional_str(name)?
            .ok_or_else(|| PimsError::missing(name))
    }

    /// A digits-only value given as a string or as a non-negative integer (the reference
    /// types PIN and SMS codes as Integer in one version and String in another). An integer
    /// loses leading zeros, so strings are recommended.
    pub fn optional_digits(
        &self,
        name: &str,
        lengths: std::ops::RangeInclusive<usize>,
    ) -> Result<Option<Secret>, PimsError> {
        let text = match self.get(name) {
            None => return Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::String(s)) => Zeroizing::new(s.trim().to_owned()),
            Some(Value::Number(n)) if n.is_u64() => Zeroizing::new(n.to_string()),
            Some(_) => return Err(PimsError::invalid(name)),
        };
        if !lengths.contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PimsError::invalid(name));
        }
        Ok(Some(Secret(text)))
    }

    pub fn required_digits(
        &self,
        name: &str,
        lengths: std::ops::RangeInclusive<usize>,
    ) -> Result<Secret, PimsError> {
        self.optional_digits(name, lengths)?
            .ok_or_else(|| PimsError::missing(name))
    }

    /// A selector such as `action` or `type`: must be one of `allowed`.
    pub fn required_choice<'a>(
        &self,
        name: &str,
        allowed: &[&'a str],
    ) -> Result<&'a str, PimsError> {
        let value = self.required_str(name)?;
        allowed
            .iter()
            .find(|a| **a == value)
            .copied()
            .ok_or_else(|| PimsError::invalid(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use serde_json::json;

    fn params(v: Value) -> Params {
        Params::from_value(v).unwrap()
    }

    #[test]
    fn digits_accept_strings_and_integers() {
        let p = params(json!({"a": "0123", "b": 1234}));
        assert_eq!(p.required_digits("a", 4..=8).unwrap().expose(), "0123");
        assert_eq!(p.required_digits("b", 4..=8).unwrap().expose(), "1234");
    }

    #[test]
    fn digits_reject_letters_wrong_length_and_negative() {
        let p = params(json!({"a": "12a4", "b": "12", "c": -1234, "d": 12.5}));
        for name in ["a", "b", "c", "d"] {
            let e = p.required_digits(name, 4..=8).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParameter);
            assert_eq!(e.label, format!("Invalid {name} parameter"));
        }
    }

    #[test]
    fn blank_and_null_count_as_missing() {
        let p = params(json!({"smsCode": " ", "pinCode": null}));
        assert_eq!(
            p.required_digits("smsCode", 6..=6).unwrap_err().label,
            "Missing smsCode parameter"
        );
        assert_eq!(
            p.required_digits("pinCode", 4..=8).unwrap_err().label,
            "Missing pinCode parameter"
        );
    }

    #[test]
    fn choice_must_be_listed() {
        let p = params(json!({"action": "dance"}));
        assert_eq!(
            p.required_choice("action", &["enroll"]).unwrap_err().label,
            "Invalid action parameter"
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("1234".into())), "Secret(..)");
    }
}
