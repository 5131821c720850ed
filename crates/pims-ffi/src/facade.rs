//! The facade object the wrappers hold. Every verb takes its parameters as a map of typed
//! values and answers through a `MessageHandler` with the message as a map (SDK-API.md §1),
//! exactly as many times as the core decides.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pims_core::{ErrorCode, Message, Pims, PimsError};
use pims_strongauth::StrongAuthFactory;
use serde_json::Value;

use crate::host::{self, AccessTokenProvider, DeviceKeys, SmsCodeProvider, VaultKeyStore};
use crate::value::{self, PimsValue};

/// Receives each message: `{"transactionId", "status", "result" | "error"}`.
#[uniffi::export(callback_interface)]
pub trait MessageHandler: Send + Sync {
    fn on_message(&self, message: HashMap<String, PimsValue>);
}

/// The `pims` facade with the StrongAuthentication component.
#[derive(uniffi::Object)]
pub struct PimsSdk {
    /// `None` after `shutdown`.
    pims: RwLock<Option<Pims>>,
}

type Parameters = HashMap<String, PimsValue>;

#[uniffi::export]
impl PimsSdk {
    /// `device_keys` and `vault_key` may be null: the SDK then keeps the device key in its
    /// encrypted vault and the vault key in a file of the data directory (desktop, tests).
    /// `sms_codes` is the Android SMS reader `enroll` asks when the app gives no `smsCode`.
    #[uniffi::constructor]
    pub fn new(
        tokens: Arc<dyn AccessTokenProvider>,
        device_keys: Option<Arc<dyn DeviceKeys>>,
        vault_key: Option<Arc<dyn VaultKeyStore>>,
        sms_codes: Option<Arc<dyn SmsCodeProvider>>,
    ) -> Arc<Self> {
        let host = host::host(tokens, device_keys, vault_key, sms_codes);
        let pims = Pims::builder()
            .component(StrongAuthFactory::new(host))
            .build();
        Arc::new(PimsSdk {
            pims: RwLock::new(Some(pims)),
        })
    }

    pub fn initialize(&self, config: Parameters, handler: Box<dyn MessageHandler>) {
        self.with(handler, config, |pims, config, cb| {
            pims.initialize(config, cb)
        });
    }

    pub fn release(&self, handler: Box<dyn MessageHandler>) {
        self.with(handler, Parameters::new(), |pims, _, cb| pims.release(cb));
    }

    pub fn get(&self, api: String, parameters: Parameters, handler: Box<dyn MessageHandler>) {
        self.with(handler, parameters, |pims, p, cb| pims.get(&api, p, cb));
    }

    pub fn set(&self, api: String, parameters: Parameters, handler: Box<dyn MessageHandler>) {
        self.with(handler, parameters, |pims, p, cb| pims.set(&api, p, cb));
    }

    pub fn subscribe(&self, api: String, parameters: Parameters, handler: Box<dyn MessageHandler>) {
        self.with(handler, parameters, |pims, p, cb| {
            pims.subscribe(&api, p, cb)
        });
    }

    pub fn unsubscribe(&self, api: String, handler: Box<dyn MessageHandler>) {
        self.with(handler, Parameters::new(), |pims, _, cb| {
            pims.unsubscribe(&api, cb)
        });
    }

    /// The one answer to a call whose parameter `name` the wrapper could not turn into a
    /// `PimsValue` (a Kotlin object, a Python set…): FAILED 2102 "Invalid <name> parameter",
    /// asynchronously like every answer.
    pub fn refuse_parameter(&self, name: String, handler: Box<dyn MessageHandler>) {
        fail_later(deliver(handler), PimsError::invalid(&name));
    }

    /// Stops the SDK's threads, waiting up to two seconds for callbacks already running.
    /// Wrappers call it when the app closes the facade or its interpreter exits: an SDK thread
    /// must not call into a runtime that is shutting down. Later calls fail with 2001.
    pub fn shutdown(&self) {
        let pims = self.pims.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(pims) = pims {
            pims.shutdown(Duration::from_secs(2));
        }
    }
}

impl PimsSdk {
    fn with(
        &self,
        handler: Box<dyn MessageHandler>,
        parameters: Parameters,
        call: impl FnOnce(&Pims, Value, Box<dyn Fn(Message) + Send + Sync>),
    ) {
        let callback = Box::new(deliver(handler));
        let parameters = match value::parameters(parameters) {
            Ok(p) => p,
            Err(e) => return fail_later(callback, e),
        };
        match self.pims.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(pims) => call(pims, parameters, callback),
            None => fail_later(callback, ErrorCode::FacadeNotInitialized.into()),
        }
    }
}

/// A FAILED message under a fresh transaction id, still asynchronous as every answer must be.
fn fail_later(callback: impl Fn(Message) + Send + 'static, error: PimsError) {
    let message = Message::failed(uuid::Uuid::new_v4().to_string(), error);
    std::thread::spawn(move || callback(message));
}

fn deliver(handler: Box<dyn MessageHandler>) -> impl Fn(Message) + Send + Sync + 'static {
    move |message| {
        // `to_json` always builds an object.
        let Value::Object(fields) = message.to_json() else {
            return;
        };
        let fields = fields
            .into_iter()
            .map(|(k, v)| (k, PimsValue::from_json(v)))
            .collect();
        handler.on_message(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostFailure;
    use serde_json::json;
    use std::sync::mpsc;
    use std::sync::Mutex;

    struct NoToken;

    impl AccessTokenProvider for NoToken {
        fn access_token(&self) -> Result<Option<String>, HostFailure> {
            Ok(None)
        }
    }

    struct Channel(Mutex<mpsc::Sender<Parameters>>);

    impl MessageHandler for Channel {
        fn on_message(&self, message: Parameters) {
            let _ = self.0.lock().unwrap().send(message);
        }
    }

    fn map(v: Value) -> Parameters {
        match PimsValue::from_json(v) {
            PimsValue::Entries { entries } => entries,
            _ => panic!("not an object"),
        }
    }

    fn call(start: impl FnOnce(Box<dyn MessageHandler>)) -> Value {
        let (tx, rx) = mpsc::channel();
        start(Box::new(Channel(Mutex::new(tx))));
        let fields = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut message = value::parameters(fields).unwrap();
        message.as_object_mut().unwrap().remove("transactionId");
        message
    }

    fn configured(dir: &std::path::Path) -> Arc<PimsSdk> {
        let sdk = PimsSdk::new(Arc::new(NoToken), None, None, None);
        let config = json!({"components": {"strongAuthentication": {
            "serverUrl": "http://127.0.0.1:9", "dataDirectory": dir, "platform": "desktop"}}});
        let m = call(|h| sdk.initialize(map(config), h));
        assert_eq!(m, json!({"status": "SUCCEEDED", "result": null}));
        sdk
    }

    #[test]
    fn a_parameter_with_no_json_form_fails_with_2102_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = configured(dir.path());
        let params = HashMap::from([(
            "pinCode".into(),
            PimsValue::Real {
                value: f64::INFINITY,
            },
        )]);
        let m = call(|h| sdk.set("pims.authentication.otp".into(), params, h));
        assert_eq!(
            m,
            json!({"status": "FAILED",
                   "error": {"code": 2102, "label": "Invalid pinCode parameter", "details": {"retryable": false}}})
        );
        let m = call(|h| sdk.refuse_parameter("phoneNumber".into(), h));
        assert_eq!(m["error"]["label"], "Invalid phoneNumber parameter");
    }

    #[test]
    fn messages_are_the_reference_dictionaries() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = configured(dir.path());
        let params = map(json!({"actionType": "strong", "type": "isDeviceActivated"}));
        let m = call(|h| sdk.get("pims.authentication.account".into(), params, h));
        assert_eq!(
            m,
            json!({"status": "FAILED",
                   "error": {"code": 2301, "label": "Need Basic Authentication",
                             "details": {"hint": "no access token: the app's AccessTokenProvider gave none (it returned null or blank, or failed)",
                                         "retryable": false}}})
        );
    }

    #[test]
    fn calls_after_shutdown_fail_with_2001() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = configured(dir.path());
        sdk.shutdown();
        sdk.shutdown();
        let m = call(|h| sdk.get("pims.sdk.version".into(), Parameters::new(), h));
        assert_eq!(
            m,
            json!({"status": "FAILED",
                   "error": {"code": 2001, "label": "Facade not initialized", "details": {"retryable": false}}})
        );
    }
}
