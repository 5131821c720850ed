//! The `pims` facade: one object through which an app reaches every SDK component with
//! `get` / `set` / `subscribe` / `unsubscribe`, a dictionary of parameters and a callback.
//!
//! This crate knows nothing of any particular component nor of FFI: components plug in through
//! [`ComponentFactory`], bindings wrap [`Pims`].

mod component;
mod config;
mod error;
mod facade;
mod message;
mod params;

pub use component::{Call, Component, ComponentFactory, EventSink, Verb, KNOWN_COMPONENTS};
pub use config::{LogLevel, SdkConfig};
pub use error::{ErrorCode, PimsError};
pub use facade::{Callback, Pims, PimsBuilder};
pub use message::{Message, Status};
pub use params::{Params, Secret};

/// Version of the SDK, reported by GET `pims.sdk.version`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
