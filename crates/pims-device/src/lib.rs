//! The device side of the PIMS protocol, once, as functions without I/O (in the shape of
//! webauthn-rs's start/finish): each ceremony builds the request to send from the server's
//! previous answer, and hands back what the device key must sign as a [`ToSign`]. The caller
//! does the I/O, keeps its key where it wants (hardware keystore, test key) and persists its
//! counter before signing. Used by the SDK component, `pims bench` and the server tests.

pub mod pin;

use pims_proto::{
    transcript, ActivateDevice, Bytes, DeviceAttestation, DeviceChallenge, DeviceProof,
    EnrollmentStarted, FinishEnrollment, LoginProof, NewDevice, OtpChallenge, OtpRequest,
    PinFinish, PinStart, SendCommand, StartEnrollment,
};

pub use pin::{MalformedResponse, PinExchange, Stretching};

/// A request waiting for the device's signature over [`ToSign::transcript`].
#[must_use]
pub struct ToSign<T> {
    /// The exact bytes the device key signs (`pims_proto::transcript`).
    pub transcript: Vec<u8>,
    request: T,
    attach: fn(&mut T, Bytes),
}

impl<T> ToSign<T> {
    /// The request, carrying `signature` (DER ECDSA P-256 over [`Self::transcript`]).
    pub fn signed(mut self, signature: impl Into<Bytes>) -> T {
        (self.attach)(&mut self.request, signature.into());
        self.request
    }

    /// The request, signed by `sign` over the transcript.
    pub fn sign_with(self, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> T {
        let signature = sign(&self.transcript);
        self.signed(signature)
    }
}

/// An enrollment between its start and its finish.
pub struct Enrollment {
    exchange: PinExchange,
}

/// Starts an enrollment: the PIN registration when the account has no PIN yet
/// (`register`), else a PIN login.
pub fn start_enrollment(
    sms_code: String,
    phone_number: Option<String>,
    region: Option<String>,
    pin: &[u8],
    register: bool,
) -> (Enrollment, StartEnrollment) {
    let (exchange, message) = pin::start(pin, register);
    let pin = if register {
        PinStart::Register(message)
    } else {
        PinStart::Login(message)
    };
    let request = StartEnrollment {
        sms_code,
        phone_number,
        region,
        pin,
    };
    (Enrollment { exchange }, request)
}

impl Enrollment {
    /// The finish request from the server's answer, for the new device key `device`. The
    /// signature binds the enrollment, its nonce, the key and the PIN proof. A wrong PIN is
    /// not an error: the server counts it. Runs the PIN stretching: call it off any async
    /// runtime's worker threads.
    pub fn finish(
        self,
        pin: &[u8],
        started: &EnrollmentStarted,
        device: NewDevice,
        idempotency_key: String,
        stretching: Stretching,
    ) -> Result<ToSign<FinishEnrollment>, MalformedResponse> {
        let response = match (&self.exchange, &started.pin) {
            (PinExchange::Register(_), PinStart::Register(r))
            | (PinExchange::Login(_), PinStart::Login(r)) => r,
            _ => return Err(MalformedResponse),
        };
        let pin = pin::finish(self.exchange, pin, response.as_slice(), stretching)?;
        let transcript = transcript::enrollment(
            &started.enrollment_id,
            started.nonce.as_slice(),
            device.public_key.as_slice(),
            pin.proof(),
        );
        Ok(ToSign {
            transcript,
            request: FinishEnrollment {
                idempotency_key,
                pin,
                device,
                signature: Bytes(Vec::new()),
                attestation: None,
            },
            attach: |r, s| r.signature = s,
        })
    }
}

impl ToSign<FinishEnrollment> {
    /// The finish request carrying the platform's attestation of the device key (see
    /// [`attestation_challenges`]); the attestation is bound by its own challenge.
    pub fn with_attestation(mut self, attestation: Option<DeviceAttestation>) -> Self {
        self.request.attestation = attestation;
        self
    }
}

/// What a platform attestation of the key `public_key` must cover for the enrollment
/// `started`: `(key, app)` — the challenge an Android key is generated with
/// ([`transcript::key_attestation_challenge`]) and the App Attest `clientDataHash`
/// ([`transcript::attestation_challenge`]).
pub fn attestation_challenges(
    started: &EnrollmentStarted,
    public_key: &[u8],
) -> ([u8; 32], [u8; 32]) {
    let nonce = started.nonce.as_slice();
    (
        transcript::key_attestation_challenge(&started.enrollment_id, nonce),
        transcript::attestation_challenge(&started.enrollment_id, nonce, public_key),
    )
}

/// Activation of a Pending device with its next `counter`.
pub fn activation(
    device_id: &str,
    activation_nonce: &[u8],
    counter: u64,
) -> ToSign<ActivateDevice> {
    ToSign {
        transcript: transcript::activation(device_id, activation_nonce, counter),
        request: ActivateDevice {
            counter,
            signature: Bytes(Vec::new()),
        },
        attach: |r, s| r.signature = s,
    }
}

/// The device's signature on the start of a PIN login (the OPAQUE credential request) with
/// its next `counter`: only the device can spend the account's PIN attempts.
pub fn login_proof(device_id: &str, counter: u64, credential_request: &[u8]) -> ToSign<LoginProof> {
    ToSign {
        transcript: transcript::login_start(device_id, counter, credential_request),
        request: LoginProof {
            counter,
            signature: Bytes(Vec::new()),
        },
        attach: |r, s| r.signature = s,
    }
}

/// The OTP request answering `challenge` with the device's next `counter` and, for an OTP
/// with PIN, the finished PIN login.
pub fn otp_request(
    challenge: &OtpChallenge,
    device_id: &str,
    counter: u64,
    pin: Option<PinFinish>,
) -> ToSign<OtpRequest> {
    let proof = pin.as_ref().map_or(&[][..], PinFinish::proof);
    let transcript = transcript::otp(
        &challenge.challenge_id,
        challenge.nonce.as_slice(),
        device_id,
        counter,
        proof,
    );
    ToSign {
        transcript,
        request: OtpRequest {
            challenge_id: challenge.challenge_id.clone(),
            counter,
            pin,
            signature: Bytes(Vec::new()),
        },
        attach: |r, s| r.signature = s,
    }
}

/// The device's proof of a device operation (`transcript::PIN_CHANGE`, `PHONE_NUMBER_MODIFY`…)
/// over a device challenge with its next `counter`; `payload` is the request's signed payload.
pub fn operation_proof(
    operation: &str,
    challenge: &DeviceChallenge,
    device_id: &str,
    counter: u64,
    payload: &[u8],
) -> ToSign<DeviceProof> {
    ToSign {
        transcript: transcript::device_operation(
            operation,
            &challenge.challenge_id,
            challenge.nonce.as_slice(),
            device_id,
            counter,
            payload,
        ),
        request: DeviceProof {
            challenge_id: challenge.challenge_id.clone(),
            counter,
            signature: Bytes(Vec::new()),
        },
        attach: |r, s| r.signature = s,
    }
}

/// What a command proof says besides the device's challenge and counter.
pub struct CommandOrder {
    pub vin: String,
    /// The command service's audience (`GET /v1/commands/keys`).
    pub audience: String,
    pub command: pims_command::Command,
    /// Unix seconds; the policy caps how far ahead (30 s by default).
    pub expires_at: u64,
}

/// The PIN evidence a command carries to the command service.
pub enum CommandPin {
    /// The PIN login's finish over the command's own challenge.
    Login(PinFinish),
    /// An unused OTP with PIN this device obtained for the command service (the reference's
    /// flow: 2302, then an OTP with the PIN, then the same command again).
    Otp(String),
}

impl CommandPin {
    /// What the envelope binds: the digest of the login's finish or of the OTP, so the
    /// service's co-signature can only be for the envelope that evidence was spent on.
    pub fn binding(&self) -> [u8; 32] {
        match self {
            CommandPin::Login(finish) => transcript::digest(finish.proof()),
            CommandPin::Otp(otp) => transcript::digest(otp.as_bytes()),
        }
    }
}

/// A signed command over the command service's `challenge` with the device's next `counter`,
/// binding the PIN evidence when there is some.
pub fn command(
    challenge: &DeviceChallenge,
    device_id: &str,
    public_key: &[u8],
    counter: u64,
    order: CommandOrder,
    pin: Option<CommandPin>,
) -> ToSign<SendCommand> {
    let envelope = pims_command::Envelope {
        vin: order.vin,
        audience: order.audience,
        command: order.command,
        key_id: pims_command::key_id(public_key),
        counter,
        expires_at: order.expires_at,
        challenge: challenge.nonce.0.clone(),
        pin_binding: pin.as_ref().map(CommandPin::binding),
    }
    .encode();
    let (pin, pin_otp) = match pin {
        None => (None, None),
        Some(CommandPin::Login(finish)) => (Some(finish), None),
        Some(CommandPin::Otp(otp)) => (None, Some(otp)),
    };
    ToSign {
        transcript: pims_command::device_message(&envelope),
        request: SendCommand {
            device_id: device_id.to_string(),
            challenge_id: challenge.challenge_id.clone(),
            proof: Bytes(envelope),
            pin,
            pin_otp,
        },
        // The envelope travels inside the proof, with its signature.
        attach: |r, s| {
            r.proof = pims_command::encode_proof(r.proof.as_slice(), s.as_slice(), None).into()
        },
    }
}
