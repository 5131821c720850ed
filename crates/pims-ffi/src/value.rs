//! The reference's dictionaries as a typed value across the FFI (no JSON text): the wrappers
//! turn it into `Map<String, Any?>`, `[String: AnyHashable]` or a dict and back.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};

/// A parameter, configuration or message value: JSON's shapes with integers kept exact.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum PimsValue {
    Null,
    Bool { value: bool },
    Integer { value: i64 },
    Real { value: f64 },
    Text { value: String },
    Items { items: Vec<PimsValue> },
    Entries { entries: HashMap<String, PimsValue> },
}

/// A value with no JSON form: a non-finite number. Names the top-level entry it was under.
pub(crate) struct NotRepresentable;

impl PimsValue {
    pub(crate) fn into_json(self) -> Result<Value, NotRepresentable> {
        Ok(match self {
            PimsValue::Null => Value::Null,
            PimsValue::Bool { value } => Value::Bool(value),
            PimsValue::Integer { value } => Value::Number(value.into()),
            PimsValue::Real { value } => {
                Value::Number(Number::from_f64(value).ok_or(NotRepresentable)?)
            }
            PimsValue::Text { value } => Value::String(value),
            PimsValue::Items { items } => Value::Array(
                items
                    .into_iter()
                    .map(PimsValue::into_json)
                    .collect::<Result<_, _>>()?,
            ),
            PimsValue::Entries { entries } => Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| Ok((k, v.into_json()?)))
                    .collect::<Result<Map<_, _>, _>>()?,
            ),
        })
    }

    pub(crate) fn from_json(value: Value) -> Self {
        match value {
            Value::Null => PimsValue::Null,
            Value::Bool(value) => PimsValue::Bool { value },
            Value::Number(n) => match n.as_i64() {
                Some(value) => PimsValue::Integer { value },
                // Only integers above i64::MAX and fractions get here.
                None => PimsValue::Real {
                    value: n.as_f64().unwrap_or(f64::NAN),
                },
            },
            Value::String(value) => PimsValue::Text { value },
            Value::Array(items) => PimsValue::Items {
                items: items.into_iter().map(PimsValue::from_json).collect(),
            },
            Value::Object(entries) => PimsValue::Entries {
                entries: entries
                    .into_iter()
                    .map(|(k, v)| (k, PimsValue::from_json(v)))
                    .collect(),
            },
        }
    }
}

/// Parameters as the core reads them. An entry with no JSON form is the error the core
/// would give a wrong value: 2102 naming it.
pub(crate) fn parameters(
    parameters: HashMap<String, PimsValue>,
) -> Result<Value, pims_core::PimsError> {
    let mut map = Map::new();
    for (name, value) in parameters {
        match value.into_json() {
            Ok(v) => {
                map.insert(name, v);
            }
            Err(NotRepresentable) => return Err(pims_core::PimsError::invalid(&name)),
        }
    }
    Ok(Value::Object(map))
}

/// What the value of a parameter becomes on its way to the core and back: for the binding
/// tests, which check each host's conversions against this crate's.
#[uniffi::export]
pub fn round_trip(value: PimsValue) -> Option<PimsValue> {
    value.into_json().ok().map(PimsValue::from_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_exactly() {
        let v = json!({"a": [1, -5_000_000_000i64, 2.5, "é😀", null, true, {"b": {}}]});
        let typed = PimsValue::from_json(v.clone());
        assert_eq!(typed.into_json().ok(), Some(v));
    }

    #[test]
    fn a_non_finite_number_is_named_as_invalid() {
        let params = HashMap::from([("pinCode".to_string(), PimsValue::Real { value: f64::NAN })]);
        assert_eq!(
            parameters(params).unwrap_err().label,
            "Invalid pinCode parameter"
        );
    }
}
