//! Wire contract between the PIMS SDK and the PIMS server (HTTP/JSON under `/v1`).
//!
//! Both ends compile against these types, so a request the SDK builds is exactly the one the
//! server parses. Binary values travel as unpadded base64url strings ([`Bytes`]).

mod bytes;
pub mod endpoint;
pub mod error;
pub mod messages;
pub mod pin;
pub mod transcript;

pub use bytes::Bytes;
pub use error::{ApiError, ErrorBody, NumberRefusal};
pub use messages::*;

/// Version of this wire protocol. Sent by the SDK in [`PROTOCOL_HEADER`] on every request.
/// 2: PIN logins start with a device signature, PIN changes are authorized before the new
/// PIN is registered (`/v1/pin/change`). Servers accept 1 for what did not change.
pub const PROTOCOL_VERSION: u32 = 2;
/// Header carrying [`PROTOCOL_VERSION`]; a server that does not accept it answers
/// [`ApiError::UnsupportedProtocol`].
pub const PROTOCOL_HEADER: &str = "pims-protocol-version";
/// Header carrying the SDK's transaction id, so server logs and app messages can be joined.
pub const TRANSACTION_HEADER: &str = "pims-transaction-id";
