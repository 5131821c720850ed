//! The facade object the wrappers hold. Every verb takes its parameters as a JSON object and
//! answers through a `MessageHandler` with the message as JSON (SDK-API.md §1), exactly as many
//! times as the core decides.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use pims_core::{ErrorCode, Message, Pims};
use pims_strongauth::StrongAuthFactory;
use serde_json::Value;

use crate::host::{self, AccessTokenProvider, DeviceKeys, VaultKeyStore};

/// Receives each message as JSON: `{"transactionId", "status", "result" | "error"}`.
#[uniffi::export(callback_interface)]
pub trait MessageHandler: Send + Sync {
    fn on_message(&self, message: String);
}

/// The `pims` facade with the StrongAuthentication component.
#[derive(uniffi::Object)]
pub struct PimsSdk {
    /// `None` after `shutdown`.
    pims: RwLock<Option<Pims>>,
}

#[uniffi::export]
impl PimsSdk {
    /// `device_keys` and `vault_key` may be null: the SDK then keeps the device key in its
    /// encrypted vault and the vault key in a file of the data directory (desktop, tests).
    #[uniffi::constructor]
    pub fn new(
        tokens: Arc<dyn AccessTokenProvider>,
        device_keys: Option<Arc<dyn DeviceKeys>>,
        vault_key: Option<Arc<dyn VaultKeyStore>>,
    ) -> Arc<Self> {
        let host = host::host(tokens, device_keys, vault_key);
        let pims = Pims::builder()
            .component(StrongAuthFactory::new(host))
            .build();
        Arc::new(PimsSdk {
            pims: RwLock::new(Some(pims)),
        })
    }

    pub fn initialize(&self, config: String, handler: Box<dyn MessageHandler>) {
        self.with(handler, |pims, cb| pims.initialize(parse(&config), cb));
    }

    pub fn release(&self, handler: Box<dyn MessageHandler>) {
        self.with(handler, |pims, cb| pims.release(cb));
    }

    pub fn get(&self, api: String, parameters: String, handler: Box<dyn MessageHandler>) {
        self.with(handler, |pims, cb| pims.get(&api, parse(&parameters), cb));
    }

    pub fn set(&self, api: String, parameters: String, handler: Box<dyn MessageHandler>) {
        self.with(handler, |pims, cb| pims.set(&api, parse(&parameters), cb));
    }

    pub fn subscribe(&self, api: String, parameters: String, handler: Box<dyn MessageHandler>) {
        self.with(handler, |pims, cb| {
            pims.subscribe(&api, parse(&parameters), cb)
        });
    }

    pub fn unsubscribe(&self, api: String, handler: Box<dyn MessageHandler>) {
        self.with(handler, |pims, cb| pims.unsubscribe(&api, cb));
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
        call: impl FnOnce(&Pims, Box<dyn Fn(Message) + Send + Sync>),
    ) {
        let callback = Box::new(deliver(handler));
        match self.pims.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(pims) => call(pims, callback),
            // Still asynchronous, as every answer must be.
            None => {
                let message = Message::failed(
                    uuid::Uuid::new_v4().to_string(),
                    ErrorCode::FacadeNotInitialized.into(),
                );
                std::thread::spawn(move || callback(message));
            }
        }
    }
}

/// Text that is not JSON becomes a non-object value, which the core answers (asynchronously,
/// like any other failure) with 2102 "Invalid parameters parameter".
fn parse(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or(Value::Bool(false))
}

fn deliver(handler: Box<dyn MessageHandler>) -> impl Fn(Message) + Send + Sync + 'static {
    move |message| handler.on_message(message.to_json().to_string())
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

    struct Channel(Mutex<mpsc::Sender<String>>);

    impl MessageHandler for Channel {
        fn on_message(&self, message: String) {
            let _ = self.0.lock().unwrap().send(message);
        }
    }

    fn call(start: impl FnOnce(Box<dyn MessageHandler>)) -> Value {
        let (tx, rx) = mpsc::channel();
        start(Box::new(Channel(Mutex::new(tx))));
        let text = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut message: Value = serde_json::from_str(&text).unwrap();
        message.as_object_mut().unwrap().remove("transactionId");
        message
    }

    fn configured(dir: &std::path::Path) -> Arc<PimsSdk> {
        let sdk = PimsSdk::new(Arc::new(NoToken), None, None);
        let config = json!({"components": {"strongAuthentication": {
            "serverUrl": "http://127.0.0.1:9", "dataDirectory": dir, "platform": "desktop"}}});
        let m = call(|h| sdk.initialize(config.to_string(), h));
        assert_eq!(m, json!({"status": "SUCCEEDED", "result": null}));
        sdk
    }

    #[test]
    fn parameters_that_are_not_json_fail_with_2102() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = configured(dir.path());
        let m = call(|h| sdk.get("pims.authentication.account".into(), "{oops".into(), h));
        assert_eq!(
            m,
            json!({"status": "FAILED",
                   "error": {"code": 2102, "label": "Invalid parameters parameter", "details": {"retryable": false}}})
        );
    }

    #[test]
    fn messages_are_the_reference_dictionaries_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = configured(dir.path());
        let params = json!({"actionType": "strong", "type": "isDeviceActivated"}).to_string();
        let m = call(|h| sdk.get("pims.authentication.account".into(), params, h));
        assert_eq!(
            m,
            json!({"status": "FAILED",
                   "error": {"code": 2301, "label": "Need Basic Authentication", "details": {"retryable": false}}})
        );
    }

    #[test]
    fn calls_after_shutdown_fail_with_2001() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = configured(dir.path());
        sdk.shutdown();
        sdk.shutdown();
        let m = call(|h| sdk.get("pims.sdk.version".into(), "{}".into(), h));
        assert_eq!(
            m,
            json!({"status": "FAILED",
                   "error": {"code": 2001, "label": "Facade not initialized", "details": {"retryable": false}}})
        );
    }
}
