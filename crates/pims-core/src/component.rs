use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::{Message, Params, PimsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    Set,
    Subscribe,
}

/// Components this SDK family knows, with the API prefixes they own. An API owned by a
/// component that is not in this build answers 2003 `[Component] not loaded`.
pub const KNOWN_COMPONENTS: &[(&str, &[&str])] = &[
    ("StrongAuthentication", &["pims.authentication."]),
    ("LongRangeRemoteRemote", &["pims.vehicle."]),
];

/// One call as a component sees it.
#[derive(Debug)]
pub struct Call {
    pub verb: Verb,
    pub api: String,
    pub params: Params,
    pub transaction_id: String,
}

/// Delivers RESULT messages of one subscription; cloneable, cheap, usable from any task.
#[derive(Clone)]
pub struct EventSink {
    pub(crate) transaction_id: String,
    pub(crate) events: tokio::sync::mpsc::UnboundedSender<Message>,
    pub(crate) active: Arc<std::sync::atomic::AtomicBool>,
}

impl EventSink {
    /// Sends one event; returns false once the subscription has ended.
    pub fn send(&self, outcome: Result<Value, PimsError>) -> bool {
        if !self.active.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let message = Message::event(self.transaction_id.clone(), outcome);
        self.events.send(message).is_ok()
    }

    pub fn is_active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A configured, running component.
#[async_trait]
pub trait Component: Send + Sync + 'static {
    /// Handles a GET or SET. Returns the `result` value (`Value::Null` for "no data").
    async fn call(&self, call: Call) -> Result<Value, PimsError>;

    /// Starts a subscription; events go to `sink` until it reports inactive.
    async fn subscribe(&self, _call: Call, _sink: EventSink) -> Result<(), PimsError> {
        Err(crate::ErrorCode::ApiNotSupported.into())
    }

    /// Stops background work; called on `release` and before a reconfiguration replaces it.
    async fn release(&self) {}
}

/// Builds a component from its configuration subtree (`components.<config_key>`).
pub trait ComponentFactory: Send + Sync + 'static {
    /// Name used in messages, e.g. `StrongAuthentication`.
    fn name(&self) -> &'static str;
    /// Key under `components` in the configuration, e.g. `strongAuthentication`.
    fn config_key(&self) -> &'static str;
    /// Whether this component serves `api`.
    fn owns(&self, api: &str) -> bool;
    /// Validates the subtree and builds the component. Errors name keys by their full path
    /// (`components.strongAuthentication.serverUrl`).
    fn build(&self, config: &Value) -> Result<Arc<dyn Component>, PimsError>;
}
