//! The PIN half of the device side (`pims_device::pin`), with the key stretching on a blocking
//! thread so the async runtime is never stalled.

use pims_core::Secret;
use pims_device::pin::{self as device, Stretching};
use pims_proto::{Bytes, PinFinish};

pub use pims_device::pin::{MalformedResponse, PinExchange};

/// First message: `RegistrationRequest` when the account has no PIN yet, else
/// `CredentialRequest`.
pub fn start(pin: &Secret, register: bool) -> (PinExchange, Bytes) {
    device::start(pin.expose().as_bytes(), register)
}

/// Final message from the server's answer (a wrong PIN is [`PinFinish::LoginFailed`], which the
/// server counts).
pub async fn finish(
    exchange: PinExchange,
    pin: &Secret,
    response: Bytes,
) -> Result<PinFinish, MalformedResponse> {
    let pin = Secret::new(pin.expose().to_owned());
    off_runtime(move || {
        device::finish(
            exchange,
            pin.expose().as_bytes(),
            response.as_slice(),
            Stretching::Standard,
        )
    })
    .await
}

/// Runs a step that stretches the PIN on the blocking pool.
pub async fn off_runtime<T: Send + 'static>(
    step: impl FnOnce() -> Result<T, MalformedResponse> + Send + 'static,
) -> Result<T, MalformedResponse> {
    tokio::task::spawn_blocking(step)
        .await
        .map_err(|_| MalformedResponse)?
}
