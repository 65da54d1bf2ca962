//! tenure's error type. Each variant is a kind of failure a user can act on; the server maps
//! them to SQLSTATE codes.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in tenure, grouped by what the user should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process owns the data directory.
    #[error("data directory {} is in use by process {pid}", dir.display())]
    DataDirInUse { dir: PathBuf, pid: String },
    /// A bad setting in tenure.toml, the environment or a flag.
    #[error("configuration error: {0}")]
    Config(String),
    /// The statement is well-formed but asks for something impossible (a duplicate name, an
    /// unsupported option, a path outside the allowed roots, ...).
    #[error("{0}")]
    Invalid(String),
    /// A named object does not exist.
    #[error("{kind} {name} does not exist")]
    NotFound { kind: &'static str, name: String },
    /// A named object already exists.
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// A server client named a path outside the configured roots.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Errors from planning or executing a query.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// Errors from the Delta Lake storage layer.
    #[error("storage error: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// A transaction block could not commit because another session changed what it wrote.
    #[error("{0}")]
    SerializationFailure(String),
    /// The catalog file could not be read or written.
    #[error("catalog error: {0}")]
    Catalog(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Training, loading or scoring a model failed (bad options, bad data, cancelled, ...).
    #[error(transparent)]
    Model(#[from] tenure_models::Error),
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::DataFusion(DataFusionError::ArrowError(Box::new(e), None))
    }
}
