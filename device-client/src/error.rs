//! The device library's one error type.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        // Shown in the message, not chained, so it is printed once.
        source: std::io::Error,
    },
    #[error("{0}")]
    State(String),
    #[error("key: {0}")]
    Key(String),
    #[error("the server's answer is not acceptable: {0}")]
    BadAnswer(String),
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("{code:?}: {message}")]
    Rpc { code: tonic::Code, message: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether trying again later can help (the server was unreachable or
    /// asked us to slow down), as opposed to a refusal.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            Error::Rpc { code, .. } => matches!(
                code,
                tonic::Code::Unavailable
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
            ),
            _ => false,
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Rpc {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
