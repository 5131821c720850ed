use serde_json::{Map, Value};

use crate::PimsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    Failed,
    /// A subscription event.
    Result,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::Result => "RESULT",
        }
    }
}

/// The dictionary delivered to a callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub transaction_id: String,
    pub status: Status,
    /// `result` for SUCCEEDED and RESULT (`null` when the API has no output data).
    pub result: Option<Value>,
    /// `error` for FAILED, and for a RESULT that reports an error.
    pub error: Option<PimsError>,
}

impl Message {
    pub fn succeeded(transaction_id: String, result: Value) -> Self {
        Message {
            transaction_id,
            status: Status::Succeeded,
            result: Some(result),
            error: None,
        }
    }

    /// A subscription's acknowledgement: SUCCEEDED with no `result` (SDK-API.md §1).
    pub fn acknowledged(transaction_id: String) -> Self {
        Message {
            transaction_id,
            status: Status::Succeeded,
            result: None,
            error: None,
        }
    }

    pub fn failed(transaction_id: String, error: PimsError) -> Self {
        Message {
            transaction_id,
            status: Status::Failed,
            result: None,
            error: Some(error),
        }
    }

    pub fn event(transaction_id: String, outcome: Result<Value, PimsError>) -> Self {
        let (result, error) = match outcome {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        Message {
            transaction_id,
            status: Status::Result,
            result,
            error,
        }
    }

    pub fn from_outcome(transaction_id: String, outcome: Result<Value, PimsError>) -> Self {
        match outcome {
            Ok(v) => Self::succeeded(transaction_id, v),
            Err(e) => Self::failed(transaction_id, e),
        }
    }

    /// The error code, if any.
    pub fn code(&self) -> Option<u32> {
        self.error.as_ref().map(|e| e.code.code())
    }

    /// The JSON form: `{"transactionId", "status", "result" | "error"}`.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("transactionId".into(), self.transaction_id.clone().into());
        obj.insert("status".into(), self.status.as_str().into());
        if let Some(result) = &self.result {
            obj.insert("result".into(), result.clone());
        }
        if let Some(error) = &self.error {
            obj.insert("error".into(), error.to_json());
        }
        Value::Object(obj)
    }
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use serde_json::json;

    #[test]
    fn succeeded_without_data_has_null_result_as_in_the_reference() {
        let m = Message::succeeded("t1".into(), Value::Null);
        assert_eq!(
            m.to_json(),
            json!({"transactionId": "t1", "status": "SUCCEEDED", "result": null})
        );
    }

    #[test]
    fn failed_carries_error_and_no_result() {
        let m = Message::failed("t2".into(), ErrorCode::FacadeNotInitialized.into());
        assert_eq!(
            m.to_json(),
            json!({"transactionId": "t2", "status": "FAILED",
                   "error": {"code": 2001, "label": "Facade not initialized",
                            "details": {"retryable": false}}})
        );
    }
}
