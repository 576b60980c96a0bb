//! The client's error: one variant per situation a caller handles
//! differently, matched from the server's gRPC status code.

use tonic::{Code, Status};

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The configuration (endpoint, certificates, key) is unusable.
    #[error("client configuration: {0}")]
    Config(String),
    /// The library refused an argument before sending it.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The call needs an acting professional; use [`crate::Client::acting_as`].
    #[error("no acting professional set for this call")]
    NoProfessional,
    /// The server refused the request as malformed (INVALID_ARGUMENT).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The caller's identity is missing or unusable (UNAUTHENTICATED).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller may not do this (PERMISSION_DENIED).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The object does not exist or is not visible to the caller (NOT_FOUND).
    #[error("not found: {0}")]
    NotFound(String),
    /// The object exists already, or someone else got there first (ALREADY_EXISTS).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The call is not allowed in the current state (FAILED_PRECONDITION).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A concurrent change won; read again and retry (ABORTED).
    #[error("aborted: {0}")]
    Aborted(String),
    /// A size or rate limit was reached (RESOURCE_EXHAUSTED).
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// What the call asks for is no longer kept (OUT_OF_RANGE): a
    /// subscription cursor older than what the server still keeps of the
    /// device's events; subscribe without one.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// The server does not implement the call (UNIMPLEMENTED).
    #[error("unimplemented: {0}")]
    Unimplemented(String),
    /// The server could not be reached, or the connection was refused or
    /// broken, e.g. because the TLS handshake failed (UNAVAILABLE, transport).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Any other status from the server.
    #[error("server error {code:?}: {message}")]
    Server {
        /// The gRPC status code.
        code: Code,
        /// The server's message.
        message: String,
    },
    /// A thread message failed decryption or verification, or is out of
    /// its sender's order: altered, replayed or moved. The thread stops at
    /// it.
    #[error("rejected: {0}")]
    Rejected(String),
    /// A consult's group holds a member the directory does not list for a
    /// participant, or with another signature key.
    #[error("group mismatch: {0}")]
    GroupMismatch(String),
    /// The device's state is in use by another process (each device has one
    /// owner at a time: its state directory is locked while open).
    #[error("the device's state in {0} is in use by another process")]
    DeviceInUse(String),
    /// The device's local state cannot be read or written.
    #[error("local state: {0}")]
    LocalState(String),
    /// The server's answer is not what the protocol promises.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        // A status made locally from a transport failure (a refused TLS
        // certificate, a dropped connection) carries its cause as source;
        // statuses sent by the server never do.
        if status.code() == Code::Unknown
            && let Some(cause) = std::error::Error::source(&status)
        {
            {
                return ClientError::Unavailable(format!(
                    "{}: {}",
                    status.message(),
                    error_chain(cause)
                ));
            }
        }
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument => ClientError::InvalidArgument(message),
            Code::Unauthenticated => ClientError::Unauthenticated(message),
            Code::PermissionDenied => ClientError::PermissionDenied(message),
            Code::NotFound => ClientError::NotFound(message),
            Code::AlreadyExists => ClientError::AlreadyExists(message),
            Code::FailedPrecondition => ClientError::FailedPrecondition(message),
            Code::Aborted => ClientError::Aborted(message),
            Code::ResourceExhausted => ClientError::ResourceExhausted(message),
            Code::OutOfRange => ClientError::OutOfRange(message),
            Code::Unimplemented => ClientError::Unimplemented(message),
            Code::Unavailable => ClientError::Unavailable(message),
            code => ClientError::Server { code, message },
        }
    }
}

impl From<tonic::transport::Error> for ClientError {
    fn from(err: tonic::transport::Error) -> Self {
        ClientError::Unavailable(error_chain(&err))
    }
}

/// An error and its sources, joined, for messages.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        // Layers that repeat their cause's words ("tcp connect error: tcp
        // connect error: …") are said once.
        let said = cause.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// A client call's result.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
