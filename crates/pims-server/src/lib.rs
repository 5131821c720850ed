//! The PIMS server: accounts, trusted phone numbers, SMS codes, the account PIN (OPAQUE),
//! device enrollment and one-time proofs, over HTTP/JSON under `/v1` (see `pims-proto`).
//!
//! Layers: [`http`] (routes and thin handlers) → [`service`] (domain rules and cryptography)
//! → [`store`] (one atomic step per state change; SQLite or PostgreSQL). [`keys`] holds the secrets
//! that never enter the database; [`sms`] delivers codes.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod console;
pub mod error;
mod files;
pub mod http;
pub mod jwks;
pub mod keys;
pub mod metrics;
pub mod net;
pub mod openapi;
mod server;
pub mod service;
pub mod sms;
pub mod sms_gateways;
pub mod store;
/// Throwaway PostgreSQL clusters for tests: not part of the server, only with `testing`.
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::Clock;
pub use config::{Limits, RelyingParty, ServerConfig};
pub use http::AppState;
pub use server::{app_state, open_store, start, RunningServer};
