//! UniFFI bindings of the `pims` facade for Kotlin, Swift and Python.
//!
//! A thin façade: values cross the boundary as the typed `PimsValue` (the wrappers in
//! `bindings/` turn them into native maps), host capabilities are foreign traits adapted to `pims_strongauth::host`,
//! and nothing here changes what the core decides. The core crates know nothing of UniFFI.

mod command;
mod facade;
mod host;
mod log;
mod value;

pub use command::{
    encode_command_proof, parse_command_proof, verify_command_proof, CommandFault, CommandKey,
    ParsedProof, VerifiedCommand,
};
pub use facade::{MessageHandler, PimsSdk};
pub use host::{AccessTokenProvider, DeviceKeys, HostFailure, SmsCodeProvider, VaultKeyStore};
pub use log::{set_log_sink, LogLevel, LogSink};
pub use value::{round_trip, PimsValue};

uniffi::setup_scaffolding!();
