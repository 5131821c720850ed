//! The device side of OPAQUE for the account PIN (`pims_proto::pin::PinSuite`).

use argon2::{Algorithm, Argon2, Params, Version};
use pims_proto::pin::opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use pims_proto::pin::PinSuite;
use pims_proto::{Bytes, PinFinish};
use rand::rngs::OsRng;

/// The server's answer could not be parsed: a protocol mismatch, not a wrong PIN.
#[derive(Debug, PartialEq, Eq)]
pub struct MalformedResponse;

/// How the PIN is stretched (Argon2id) before OPAQUE. Registration and login must use the
/// same: the server never sees either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stretching {
    /// OWASP parameters (the `argon2` default): every real device.
    Standard,
    /// 8 KiB, one pass: tests and benchmarks only, so they measure the server.
    Cheap,
}

impl Stretching {
    fn ksf(self) -> Option<Argon2<'static>> {
        match self {
            Stretching::Standard => None,
            Stretching::Cheap => Some(Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(8, 1, 1, None).expect("valid Argon2 parameters"),
            )),
        }
    }
}

/// The OPAQUE client between its first and its final message.
pub enum PinExchange {
    Register(ClientRegistration<PinSuite>),
    Login(Box<ClientLogin<PinSuite>>),
}

/// First message: `RegistrationRequest` when the account has no PIN yet, else
/// `CredentialRequest`.
pub fn start(pin: &[u8], register: bool) -> (PinExchange, Bytes) {
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

/// Final message from the server's answer. A wrong PIN becomes [`PinFinish::LoginFailed`],
/// which the server counts. Runs the stretching: slow by design.
pub fn finish(
    exchange: PinExchange,
    pin: &[u8],
    response: &[u8],
    stretching: Stretching,
) -> Result<PinFinish, MalformedResponse> {
    let ksf = stretching.ksf();
    match exchange {
        PinExchange::Register(state) => {
            let response = RegistrationResponse::<PinSuite>::deserialize(response)
                .map_err(|_| MalformedResponse)?;
            let parameters =
                ClientRegistrationFinishParameters::new(Identifiers::default(), ksf.as_ref());
            let finished = state
                .finish(&mut OsRng, pin, response, parameters)
                .map_err(|_| MalformedResponse)?;
            Ok(PinFinish::Register(Bytes(
                finished.message.serialize().to_vec(),
            )))
        }
        PinExchange::Login(state) => {
            let response = CredentialResponse::<PinSuite>::deserialize(response)
                .map_err(|_| MalformedResponse)?;
            let parameters =
                ClientLoginFinishParameters::new(None, Identifiers::default(), ksf.as_ref());
            match state.finish(&mut OsRng, pin, response, parameters) {
                Ok(finished) => Ok(PinFinish::Login(Bytes(
                    finished.message.serialize().to_vec(),
                ))),
                Err(_) => Ok(PinFinish::LoginFailed),
            }
        }
    }
}
