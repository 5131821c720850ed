use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, RwLock};

use crate::component::{EventSink, KNOWN_COMPONENTS};
use crate::{
    Call, Component, ComponentFactory, ErrorCode, Message, Params, PimsError, SdkConfig, Verb,
    SDK_VERSION,
};

/// The function an app passes to receive messages. Always called on an SDK thread, never from
/// inside the call that registered it.
pub type Callback = Arc<dyn Fn(Message) + Send + Sync>;

const API_CONFIGURATION: &str = "pims.sdk.configuration";
const API_VERSION: &str = "pims.sdk.version";

/// Assembles a facade from the components compiled into this build.
pub struct PimsBuilder {
    factories: Vec<Arc<dyn ComponentFactory>>,
}

impl PimsBuilder {
    pub fn component(mut self, factory: impl ComponentFactory) -> Self {
        self.factories.push(Arc::new(factory));
        self
    }

    pub fn build(self) -> Pims {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pims-sdk")
            .enable_all()
            .build()
            .expect("the SDK needs OS threads to run");
        Pims {
            runtime: Some(runtime),
            inner: Arc::new(Inner {
                factories: self.factories,
                state: RwLock::new(None),
                subscriptions: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// The facade. Safe to share between threads (wrap it in an `Arc`); every method returns at
/// once and reports through its callback exactly as `SDK-API.md` §1 says.
pub struct Pims {
    runtime: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
}

struct Inner {
    factories: Vec<Arc<dyn ComponentFactory>>,
    /// `None` until a successful `initialize`.
    state: RwLock<Option<Initialized>>,
    /// Active subscriptions by API name.
    subscriptions: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

struct Initialized {
    config: SdkConfig,
    /// Configured components by factory name.
    components: HashMap<&'static str, Arc<dyn Component>>,
}

impl Pims {
    pub fn builder() -> PimsBuilder {
        PimsBuilder {
            factories: Vec::new(),
        }
    }

    // ---- callback API ------------------------------------------------------------------

    pub fn initialize(&self, config: Value, callback: impl Fn(Message) + Send + Sync + 'static) {
        let inner = self.inner.clone();
        self.spawn(Arc::new(callback), |_| async move {
            inner.initialize(config).await
        });
    }

    pub fn release(&self, callback: impl Fn(Message) + Send + Sync + 'static) {
        let inner = self.inner.clone();
        self.spawn(Arc::new(callback), |_| async move { inner.release().await });
    }

    pub fn get(
        &self,
        api: &str,
        params: Value,
        callback: impl Fn(Message) + Send + Sync + 'static,
    ) {
        self.request(Verb::Get, api, params, Arc::new(callback));
    }

    pub fn set(
        &self,
        api: &str,
        params: Value,
        callback: impl Fn(Message) + Send + Sync + 'static,
    ) {
        self.request(Verb::Set, api, params, Arc::new(callback));
    }

    /// One SUCCEEDED or FAILED acknowledgement, then one RESULT per event, all with the same
    /// transaction id, until `unsubscribe`.
    pub fn subscribe(
        &self,
        api: &str,
        params: Value,
        callback: impl Fn(Message) + Send + Sync + 'static,
    ) {
        let callback: Callback = Arc::new(callback);
        let transaction_id = new_transaction_id();
        let inner = self.inner.clone();
        let api = api.to_owned();
        self.runtime().spawn(async move {
            inner.subscribe(api, params, transaction_id, callback).await;
        });
    }

    pub fn unsubscribe(&self, api: &str, callback: impl Fn(Message) + Send + Sync + 'static) {
        let inner = self.inner.clone();
        let api = api.to_owned();
        self.spawn(Arc::new(callback), |_| async move {
            inner.unsubscribe(&api).await
        });
    }

    // ---- native async API --------------------------------------------------------------

    pub async fn initialize_async(&self, config: Value) -> Message {
        let inner = self.inner.clone();
        self.run(|_| async move { inner.initialize(config).await })
            .await
    }

    pub async fn release_async(&self) -> Message {
        let inner = self.inner.clone();
        self.run(|_| async move { inner.release().await }).await
    }

    pub async fn get_async(&self, api: &str, params: Value) -> Message {
        self.request_async(Verb::Get, api, params).await
    }

    pub async fn set_async(&self, api: &str, params: Value) -> Message {
        self.request_async(Verb::Set, api, params).await
    }

    // ---- plumbing ----------------------------------------------------------------------

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("runtime lives as long as the facade")
    }

    fn request(&self, verb: Verb, api: &str, params: Value, callback: Callback) {
        let inner = self.inner.clone();
        let api = api.to_owned();
        self.spawn(callback, move |transaction_id| async move {
            inner.dispatch(verb, api, params, transaction_id).await
        });
    }

    async fn request_async(&self, verb: Verb, api: &str, params: Value) -> Message {
        let inner = self.inner.clone();
        let api = api.to_owned();
        self.run(move |transaction_id| async move {
            inner.dispatch(verb, api, params, transaction_id).await
        })
        .await
    }

    /// Runs `work` on the SDK runtime and delivers its single message to `callback`.
    fn spawn<F, Fut>(&self, callback: Callback, work: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Value, PimsError>> + Send + 'static,
    {
        let transaction_id = new_transaction_id();
        let future = guarded(transaction_id.clone(), work(transaction_id));
        self.runtime().spawn(async move {
            let message = future.await;
            deliver(&callback, message);
        });
    }

    /// Runs `work` on the SDK runtime and returns its message; usable from any executor.
    async fn run<F, Fut>(&self, work: F) -> Message
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Value, PimsError>> + Send + 'static,
    {
        let transaction_id = new_transaction_id();
        let future = guarded(transaction_id.clone(), work(transaction_id.clone()));
        match self.runtime().spawn(future).await {
            Ok(message) => message,
            Err(_) => Message::failed(transaction_id, ErrorCode::InternalStateNotCorrect.into()),
        }
    }
}

impl Pims {
    /// Stops the SDK's threads, waiting up to `timeout` for callbacks already running. Bindings
    /// call it before their host runtime exits, so no SDK thread calls into a dying
    /// interpreter. From inside an SDK callback it cannot wait, and stops in the background.
    pub fn shutdown(mut self, timeout: std::time::Duration) {
        if let Some(runtime) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(timeout);
            }
        }
    }
}

impl Drop for Pims {
    fn drop(&mut self) {
        // Never block: the facade may be dropped from inside an async context.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A panic inside the SDK becomes a FAILED message rather than a lost callback.
async fn guarded(
    transaction_id: String,
    work: impl Future<Output = Result<Value, PimsError>> + Send,
) -> Message {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(outcome) => Message::from_outcome(transaction_id, outcome),
        Err(_) => {
            tracing::error!(%transaction_id, "SDK call panicked");
            Message::failed(transaction_id, ErrorCode::InternalStateNotCorrect.into())
        }
    }
}

/// Calls the app's callback; a panicking callback is contained and logged.
fn deliver(callback: &Callback, message: Message) {
    let transaction_id = message.transaction_id.clone();
    if std::panic::catch_unwind(AssertUnwindSafe(|| callback(message))).is_err() {
        tracing::warn!(%transaction_id, "app callback panicked");
    }
}

fn new_transaction_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Inner {
    async fn initialize(&self, config: Value) -> Result<Value, PimsError> {
        let mut state = self.state.write().await;
        if state.is_some() {
            return Err(ErrorCode::FacadeAlreadyInitialized.into());
        }
        let config = SdkConfig::parse(config)?;
        let components = self.build_components(&config, None)?;
        *state = Some(Initialized { config, components });
        Ok(Value::Null)
    }

    async fn release(&self) -> Result<Value, PimsError> {
        let mut state = self.state.write().await;
        let released = state.take().ok_or(ErrorCode::FacadeNotInitialized)?;
        self.end_subscriptions();
        for component in released.components.values() {
            component.release().await;
        }
        Ok(Value::Null)
    }

    /// Builds the components whose configuration is present. With `previous`, components whose
    /// subtree did not change are kept as they are.
    fn build_components(
        &self,
        config: &SdkConfig,
        previous: Option<&Initialized>,
    ) -> Result<HashMap<&'static str, Arc<dyn Component>>, PimsError> {
        let mut components = HashMap::new();
        for factory in &self.factories {
            let Some(subtree) = config.component(factory.config_key()) else {
                continue;
            };
            let unchanged = previous.and_then(|p| {
                (p.config.component(factory.config_key()) == Some(subtree))
                    .then(|| p.components.get(factory.name()).cloned())
                    .flatten()
            });
            let component = match unchanged {
                Some(c) => c,
                None => factory.build(subtree)?,
            };
            components.insert(factory.name(), component);
        }
        Ok(components)
    }

    async fn reconfigure(&self, patch: Value) -> Result<Value, PimsError> {
        let mut state = self.state.write().await;
        let current = state.as_ref().ok_or(ErrorCode::FacadeNotInitialized)?;
        let config = current.config.patched(patch)?;
        let components = self.build_components(&config, Some(current))?;
        let replaced: Vec<_> = current
            .components
            .iter()
            .filter(|(name, old)| {
                components
                    .get(*name)
                    .is_none_or(|new| !Arc::ptr_eq(old, new))
            })
            .map(|(_, c)| c.clone())
            .collect();
        *state = Some(Initialized { config, components });
        drop(state);
        for component in replaced {
            component.release().await;
        }
        Ok(Value::Null)
    }

    /// Finds the component serving `api`, or the error that explains why there is none.
    async fn route(&self, api: &str) -> Result<Arc<dyn Component>, PimsError> {
        let state = self.state.read().await;
        let initialized = state.as_ref().ok_or(ErrorCode::FacadeNotInitialized)?;
        match self.factories.iter().find(|f| f.owns(api)) {
            Some(factory) => initialized
                .components
                .get(factory.name())
                .cloned()
                .ok_or_else(|| PimsError::not_configured(factory.name())),
            None => Err(KNOWN_COMPONENTS
                .iter()
                .find(|(_, prefixes)| prefixes.iter().any(|p| api.starts_with(p)))
                .map(|(name, _)| PimsError::not_loaded(name))
                .unwrap_or_else(|| ErrorCode::ApiNotSupported.into())),
        }
    }

    async fn dispatch(
        &self,
        verb: Verb,
        api: String,
        params: Value,
        transaction_id: String,
    ) -> Result<Value, PimsError> {
        if self.state.read().await.is_none() {
            return Err(ErrorCode::FacadeNotInitialized.into());
        }
        match (verb, api.as_str()) {
            (Verb::Set, API_CONFIGURATION) => return self.reconfigure(params).await,
            (Verb::Get, API_VERSION) => return Ok(json!({ "version": SDK_VERSION })),
            (_, API_CONFIGURATION | API_VERSION) => return Err(ErrorCode::ApiNotSupported.into()),
            _ => {}
        }
        let component = self.route(&api).await?;
        let params = Params::from_value(params)?;
        component
            .call(Call {
                verb,
                api,
                params,
                transaction_id,
            })
            .await
    }

    async fn subscribe(
        &self,
        api: String,
        params: Value,
        transaction_id: String,
        callback: Callback,
    ) {
        let active = Arc::new(AtomicBool::new(true));
        let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Message>();
        let (ack_tx, ack_rx) = oneshot::channel::<Message>();

        // One delivery task keeps the order: the acknowledgement first, then every event.
        let delivery_active = active.clone();
        tokio::spawn(async move {
            let Ok(ack) = ack_rx.await else { return };
            let ok = ack.error.is_none();
            deliver(&callback, ack);
            if ok {
                while let Some(event) = events_rx.recv().await {
                    if !delivery_active.load(Ordering::Acquire) {
                        break;
                    }
                    deliver(&callback, event);
                }
            }
        });

        let outcome = self
            .start_subscription(&api, params, &transaction_id, &active, events_tx)
            .await;
        if outcome.is_err() {
            active.store(false, Ordering::Release);
        }
        let ack = match outcome {
            Ok(_) => Message::acknowledged(transaction_id),
            Err(e) => Message::failed(transaction_id, e),
        };
        let _ = ack_tx.send(ack);
    }

    async fn start_subscription(
        &self,
        api: &str,
        params: Value,
        transaction_id: &str,
        active: &Arc<AtomicBool>,
        events: mpsc::UnboundedSender<Message>,
    ) -> Result<Value, PimsError> {
        let component = self.route(api).await?;
        let params = Params::from_value(params)?;
        {
            let mut subscriptions = self.subscriptions.lock().expect("not poisoned");
            if subscriptions.contains_key(api) {
                return Err(ErrorCode::DuplicateCommand.into());
            }
            subscriptions.insert(api.to_owned(), active.clone());
        }
        let sink = EventSink {
            transaction_id: transaction_id.to_owned(),
            events,
            active: active.clone(),
        };
        let call = Call {
            verb: Verb::Subscribe,
            api: api.to_owned(),
            params,
            transaction_id: transaction_id.to_owned(),
        };
        let outcome = AssertUnwindSafe(component.subscribe(call, sink))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(ErrorCode::InternalStateNotCorrect.into()));
        if outcome.is_err() {
            self.subscriptions.lock().expect("not poisoned").remove(api);
        }
        outcome.map(|()| Value::Null)
    }

    async fn unsubscribe(&self, api: &str) -> Result<Value, PimsError> {
        if self.state.read().await.is_none() {
            return Err(ErrorCode::FacadeNotInitialized.into());
        }
        let removed = self.subscriptions.lock().expect("not poisoned").remove(api);
        match removed {
            Some(active) => {
                active.store(false, Ordering::Release);
                Ok(Value::Null)
            }
            None => Err(PimsError::invalid("api")),
        }
    }

    fn end_subscriptions(&self) {
        for (_, active) in self.subscriptions.lock().expect("not poisoned").drain() {
            active.store(false, Ordering::Release);
        }
    }
}
