//! The CA library's one error type.
use std::path::PathBuf;

/// Everything that can go wrong in the CA library. Variants keep their source;
/// messages never contain key material, passphrases or setup codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("{what} already exists: {id}")]
    AlreadyExists { what: &'static str, id: String },
    #[error("{what} not found: {id}")]
    NotFound { what: &'static str, id: String },
    #[error("the CA passphrase is missing: {0}")]
    PassphraseMissing(String),
    #[error("cannot unlock {0}: wrong passphrase or damaged key file")]
    WrongPassphrase(String),
    #[error("the store is in use by another process (is the server running? use --server): {0}")]
    StoreLocked(String),
    #[error("store error: {0}")]
    Store(#[from] sled::Error),
    #[error("the store failed and accepts no change until it is reopened: {0}")]
    StoreFailed(String),
    #[error("corrupt record in {tree}: {detail}")]
    CorruptRecord { tree: &'static str, detail: String },
    #[error("the store is open without the audit key and cannot write")]
    ReadOnly,
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("issued certificate failed its profile check: {0}")]
    ProfileViolation(String),
    #[error("cannot parse {what}: {detail}")]
    Parse { what: &'static str, detail: String },
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
    #[error("configuration error in {path}: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        // Shown in the message, not chained, so it is printed once.
        source: std::io::Error,
    },
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("audit log verification failed: {0}")]
    AuditBroken(String),
}

impl Error {
    /// An I/O error that says which file it was about.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }
}

/// The CA library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
