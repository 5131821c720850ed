//! The device side of OPAQUE for the account PIN. Key stretching (Argon2id) runs here, on a
//! blocking thread, so the async runtime is never stalled.

use pims_core::Secret;
use pims_proto::pin::opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, RegistrationResponse,
};
use pims_proto::pin::PinSuite;
use pims_proto::{Bytes, PinFinish};
use rand::rngs::OsRng;

/// The server's answer could not be parsed: a protocol mismatch, not a wrong PIN.
#[derive(Debug)]
pub struct MalformedResponse;

pub enum PinExchange {
    Register(ClientRegistration<PinSuite>),
    Login(Box<ClientLogin<PinSuite>>),
}

/// First message: `RegistrationRequest` when the account has no PIN yet, else
/// `CredentialRequest`.
pub fn start(pin: &Secret, register: bool) -> (PinExchange, Bytes) {
    let pin = pin.expose().as_bytes();
    if register {
        let started = ClientRegistration::<PinSuite>::start(&mut OsRng, pin)
            .expect("registration start only fails on RNG failure");
        let message = started.message.serialize().to_vec();
        (PinExchange::Register(started.state), Bytes(message))
    } else {
        let started = ClientLogin::<PinSuite>::start(&mut OsRng, pin)
            .expect("login start only fails on RNG failure");
        let message = started.message.serialize().to_vec();
        (PinExchange::Login(Box::new(started.state)), Bytes(message))
    }
}

/// Final message from the server's answer. A wrong PIN becomes [`PinFinish::LoginFailed`], which
/// the server counts.
pub async fn finish(
    exchange: PinExchange,
    pin: &Secret,
    response: Bytes,
) -> Result<PinFinish, MalformedResponse> {
    let pin = Secret::new(pin.expose().to_owned());
    tokio::task::spawn_blocking(move || finish_blocking(exchange, &pin, &response))
        .await
        .map_err(|_| MalformedResponse)?
}

fn finish_blocking(
    exchange: PinExchange,
    pin: &Secret,
    response: &Bytes,
) -> Result<PinFinish, MalformedResponse> {
    let pin = pin.expose().as_bytes();
    match exchange {
        PinExchange::Register(state) => {
            let response = RegistrationResponse::<PinSuite>::deserialize(response.as_slice())
                .map_err(|_| MalformedResponse)?;
            let finished = state
                .finish(
                    &mut OsRng,
                    pin,
                    response,
                    ClientRegistrationFinishParameters::default(),
                )
                .map_err(|_| MalformedResponse)?;
            Ok(PinFinish::Register(Bytes(
                finished.message.serialize().to_vec(),
            )))
        }
        PinExchange::Login(state) => {
            let response = CredentialResponse::<PinSuite>::deserialize(response.as_slice())
                .map_err(|_| MalformedResponse)?;
            match state.finish(
                &mut OsRng,
                pin,
                response,
                ClientLoginFinishParameters::default(),
            ) {
                Ok(finished) => Ok(PinFinish::Login(Bytes(
                    finished.message.serialize().to_vec(),
                ))),
                Err(_) => Ok(PinFinish::LoginFailed),
            }
        }
    }
}
