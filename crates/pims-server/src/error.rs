//! The server's error: either an answer the client is meant to see ([`ApiError`]) or an internal
//! failure that is logged under the transaction id and reported as [`ApiError::Internal`].

use pims_proto::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(ApiError),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(e)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Internal(e.into())
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Internal(e.into())
    }
}

/// Shorthand for `Err(ApiError::X.into())`.
pub fn api<T>(e: ApiError) -> Result<T> {
    Err(Error::Api(e))
}
