//! The facade object the wrappers hold. Every verb takes its parameters as a JSON object and
//! answers through a `MessageHandler` with the message as JSON (SDK-API.md §1), exactly as many
//! times as the core decides.

use std::sync::Arc;

use pims_core::{Message, Pims};
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
    pims: Pims,
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
        Arc::new(PimsSdk { pims })
    }

    pub fn initialize(&self, config: String, handler: Box<dyn MessageHandler>) {
        self.pims.initialize(parse(&config), deliver(handler));
    }

    pub fn release(&self, handler: Box<dyn MessageHandler>) {
        self.pims.release(deliver(handler));
    }

    pub fn get(&self, api: String, parameters: String, handler: Box<dyn MessageHandler>) {
        self.pims.get(&api, parse(&parameters), deliver(handler));
    }

    pub fn set(&self, api: String, parameters: String, handler: Box<dyn MessageHandler>) {
        self.pims.set(&api, parse(&parameters), deliver(handler));
    }

    pub fn subscribe(&self, api: String, parameters: String, handler: Box<dyn MessageHandler>) {
        self.pims.subscribe(&api, parse(&parameters), deliver(handler));
    }

    pub fn unsubscribe(&self, api: String, handler: Box<dyn MessageHandler>) {
        self.pims.unsubscribe(&api, deliver(handler));
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
