//! The models crate's error type. Messages are lower-case, PostgreSQL style, and name the
//! feature, option or value at fault; the SQL layer adds the function or statement name.

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while training, scoring or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The training data cannot train this model (empty, single-class target, ...).
    #[error("{0}")]
    InvalidData(String),
    /// An OPTIONS entry is unknown or has a bad value.
    #[error("{0}")]
    InvalidOption(String),
    /// Scoring input does not match the model (feature count or kind).
    #[error("{0}")]
    InvalidInput(String),
    /// The artifact (card or weights) is missing a piece or does not parse.
    #[error("corrupt model artifact: {0}")]
    CorruptArtifact(String),
    /// The requested device is not available in this build or on this machine.
    #[error("{0}")]
    Device(String),
    /// Training was cancelled before it finished; nothing was saved.
    #[error("training cancelled")]
    Cancelled,
    /// Errors from candle's tensor operations.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

impl Error {
    pub(crate) fn data(message: impl Into<String>) -> Error {
        Error::InvalidData(message.into())
    }
    pub(crate) fn option(message: impl Into<String>) -> Error {
        Error::InvalidOption(message.into())
    }
    pub(crate) fn input(message: impl Into<String>) -> Error {
        Error::InvalidInput(message.into())
    }
}
