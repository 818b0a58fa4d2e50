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
    Rpc {
        code: tonic::Code,
        message: String,
        /// The server's `retry-after-ms` hint, when it asked us to wait.
        retry_after_ms: Option<u64>,
    },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// How long the server asked us to wait before trying again.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Error::Rpc { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
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
        // Transport failures (e.g. a TLS alert such as CertificateRevoked)
        // hide their cause in the source chain: keep it in the message.
        let mut message = s.message().to_string();
        let mut cur = std::error::Error::source(&s);
        while let Some(c) = cur {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cur = c.source();
        }
        let retry_after_ms = s
            .metadata()
            .get("retry-after-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Error::Rpc {
            code: s.code(),
            message,
            retry_after_ms,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
