//! The provisioner's one error type, and the one boundary that turns it into
//! a gRPC status: the detail of internal failures is logged, the client reads
//! a clean message with a stable code.
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Ca(#[from] hallmark_ca::Error),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("{what}: slow down and retry in {retry_after_ms} ms")]
    RateLimited { what: String, retry_after_ms: u64 },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The gRPC code a client sees.
    pub fn code(&self) -> Code {
        use hallmark_ca::Error as C;
        match self {
            Error::Ca(C::InvalidInput(_)) => Code::InvalidArgument,
            Error::Ca(C::AlreadyExists { .. }) => Code::AlreadyExists,
            Error::Ca(C::NotFound { .. }) => Code::NotFound,
            Error::Ca(C::QuotaExceeded(_)) | Error::RateLimited { .. } => Code::ResourceExhausted,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            _ => Code::Internal,
        }
    }

    /// A stable, short reason for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self.code() {
            Code::InvalidArgument => "invalid_argument",
            Code::AlreadyExists => "already_exists",
            Code::NotFound => "not_found",
            Code::ResourceExhausted => "resource_exhausted",
            Code::Unauthenticated => "unauthenticated",
            Code::PermissionDenied => "permission_denied",
            Code::FailedPrecondition => "failed_precondition",
            _ => "internal",
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = e.code();
        if code == Code::Internal {
            tracing::error!(error = %e, "internal error");
            return Status::internal("internal error; the server log has the detail");
        }
        let mut status = Status::new(code, e.to_string());
        if let Error::RateLimited { retry_after_ms, .. } = &e
            && let Ok(v) = retry_after_ms.to_string().parse()
        {
            status.metadata_mut().insert("retry-after-ms", v);
        }
        status
    }
}

/// Runs blocking store and signing work off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("worker task failed: {e}")))?
}
