//! The service layer's error, and its one mapping to a gRPC status.
//!
//! Every refusal carries a message that says what is wrong without echoing
//! family data or message content. Internal failures are logged with their
//! cause here and reach the peer only as "internal error".

use tonic::{Code, Status};

use crate::{domain::InvalidInput, store::StoreError};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The request is malformed (INVALID_ARGUMENT).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The caller's identity is missing or unusable (UNAUTHENTICATED).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this (PERMISSION_DENIED).
    #[error("{0}")]
    PermissionDenied(String),
    /// The object does not exist, or the caller may not know it does (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The system is not in a state that allows the call (FAILED_PRECONDITION).
    #[error("{0}")]
    FailedPrecondition(String),
    /// No legal basis covers sharing the family's information this way
    /// (FAILED_PRECONDITION, audited as a denial).
    #[error("{0}")]
    NoLegalBasis(String),
    /// Someone else got there first, or it exists already (ALREADY_EXISTS).
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller's view is out of date: it must read again and retry
    /// (ABORTED).
    #[error("{0}")]
    Aborted(String),
    /// What the call asks for is no longer kept (OUT_OF_RANGE).
    #[error("{0}")]
    OutOfRange(String),
    /// A limit was reached (RESOURCE_EXHAUSTED).
    #[error("{0}")]
    ResourceExhausted(String),
    /// A request stream broke or carried an undecodable or oversized
    /// message: tonic's status, passed on (an oversized message becomes
    /// RESOURCE_EXHAUSTED in `StatusFixLayer`).
    #[error("request stream: {}", .0.message())]
    Stream(Status),
    /// The storage layer failed; a conflict is retryable (ABORTED), anything
    /// else is internal.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid(invalid) => Status::invalid_argument(invalid.to_string()),
            ServiceError::Unauthenticated(msg) => Status::unauthenticated(msg),
            ServiceError::PermissionDenied(msg) => Status::permission_denied(msg),
            ServiceError::NotFound(msg) => Status::not_found(msg),
            ServiceError::FailedPrecondition(msg) => Status::failed_precondition(msg),
            ServiceError::NoLegalBasis(msg) => {
                crate::audit::mark_denied(Status::failed_precondition(msg))
            }
            ServiceError::ResourceExhausted(msg) => Status::resource_exhausted(msg),
            ServiceError::OutOfRange(msg) => Status::out_of_range(msg),
            ServiceError::AlreadyExists(msg) => Status::already_exists(msg),
            ServiceError::Aborted(msg) => Status::aborted(msg),
            ServiceError::Stream(status) if status.code() == Code::OutOfRange => {
                Status::resource_exhausted(status.message().to_owned())
            }
            ServiceError::Stream(status) => status,
            ServiceError::Store(StoreError::Conflict) => Status::new(
                Code::Aborted,
                "the record was changed by a concurrent call; read it again and retry",
            ),
            ServiceError::Store(StoreError::Unavailable(cause)) => {
                tracing::warn!(%cause, "storage unavailable");
                Status::unavailable("the service's storage is unavailable for a moment; retry")
            }
            ServiceError::Store(cause @ (StoreError::Corrupt { .. } | StoreError::Backend(_))) => {
                tracing::error!(cause = %cause, "storage failure");
                Status::internal("internal error")
            }
        }
    }
}

/// A service call's result.
pub type ServiceResult<T> = Result<T, ServiceError>;

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        ServiceError::from(err).into()
    }
}
