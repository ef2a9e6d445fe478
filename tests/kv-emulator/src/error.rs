/// Errors of the emulator's Rust API (start-up and admin operations).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket or file operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// Certificate or key generation / encoding failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// The configuration is unusable (bad PEM, bad name, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An admin operation was given something invalid (bad name, unknown option).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// An admin operation named an object or version that does not exist.
    #[error("not found: {0}")]
    NotFound(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Self::Crypto(e.to_string())
    }
}
