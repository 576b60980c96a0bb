//! Between the client library and the agent's callers: errors as gRPC
//! statuses, messages as `samenop.agent.v1` messages, and who a call acts
//! for.

use samenop_client::{ClientError, mls::ThreadMessage};
use samenop_proto::{PROFESSIONAL_METADATA_KEY, agent::v1 as agent};
use tonic::{Code, Status};
use uuid::Uuid;

/// `err` as the status a caller handles: the server's refusals keep their
/// code and words.
pub(crate) fn from_client(err: ClientError) -> Status {
    let code = match &err {
        ClientError::InvalidInput(_) | ClientError::InvalidArgument(_) => Code::InvalidArgument,
        ClientError::Unauthenticated(_) | ClientError::NoProfessional => Code::Unauthenticated,
        ClientError::PermissionDenied(_) => Code::PermissionDenied,
        ClientError::NotFound(_) => Code::NotFound,
        ClientError::AlreadyExists(_) => Code::AlreadyExists,
        ClientError::FailedPrecondition(_) => Code::FailedPrecondition,
        ClientError::Aborted(_) => Code::Aborted,
        ClientError::ResourceExhausted(_) => Code::ResourceExhausted,
        ClientError::OutOfRange(_) => Code::OutOfRange,
        ClientError::Unimplemented(_) => Code::Unimplemented,
        ClientError::Unavailable(_) => Code::Unavailable,
        ClientError::Server { code, .. } => *code,
        // A message of the thread failed decryption or verification, or the
        // group is not what the consult says: the thread's integrity.
        ClientError::Rejected(_) | ClientError::GroupMismatch(_) => Code::DataLoss,
        ClientError::DeviceInUse(_) => Code::Unavailable,
        _ => Code::Internal,
    };
    let message = match err {
        ClientError::InvalidInput(m)
        | ClientError::InvalidArgument(m)
        | ClientError::Unauthenticated(m)
        | ClientError::PermissionDenied(m)
        | ClientError::NotFound(m)
        | ClientError::AlreadyExists(m)
        | ClientError::FailedPrecondition(m)
        | ClientError::Aborted(m)
        | ClientError::ResourceExhausted(m)
        | ClientError::OutOfRange(m)
        | ClientError::Unimplemented(m) => m,
        ClientError::Unavailable(m) => format!("the samenop server is unavailable: {m}"),
        ClientError::Server { message, .. } => message,
        other => format!("the agent: {other}"),
    };
    Status::new(code, message)
}

/// The professional a call acts for, from its `samenop-professional`
/// metadata.
///
/// # Errors
/// UNAUTHENTICATED when it is missing or not an id.
pub(crate) fn professional<T>(request: &tonic::Request<T>) -> Result<Uuid, Status> {
    let value = request
        .metadata()
        .get(PROFESSIONAL_METADATA_KEY)
        .ok_or_else(|| {
            Status::unauthenticated(format!(
                "name the acting professional in the `{PROFESSIONAL_METADATA_KEY}` metadata"
            ))
        })?;
    value
        .to_str()
        .ok()
        .and_then(|v| Uuid::try_parse(v).ok())
        .ok_or_else(|| {
            Status::unauthenticated(format!(
                "`{PROFESSIONAL_METADATA_KEY}` must be a professional's id (a UUID)"
            ))
        })
}

/// An id field of a request.
///
/// # Errors
/// INVALID_ARGUMENT naming the field.
pub(crate) fn id(field: &str, value: &str) -> Result<Uuid, Status> {
    Uuid::try_parse(value)
        .map_err(|_| Status::invalid_argument(format!("{field} must be a UUID, got {value:?}")))
}

/// A decrypted message for callers.
pub(crate) fn message(m: &ThreadMessage) -> agent::Message {
    agent::Message {
        consult_id: m.consult.to_string(),
        sequence: m.sequence,
        sender_professional_id: m.sender_professional.to_string(),
        sender_device_id: m.sender_device.to_string(),
        own: m.own,
        posted_at: m.posted_at.map(prost_types::Timestamp::from),
        reply_to_sequence: m.reply_to.unwrap_or(0),
        text: m.text.clone(),
        attachments: m
            .attachments
            .iter()
            .map(|a| agent::Attachment {
                attachment_id: a.id.to_string(),
                name: a.name.clone(),
                media_type: a.media_type.clone(),
                size_bytes: a.size,
            })
            .collect(),
    }
}
