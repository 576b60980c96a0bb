//! What went wrong, in the words of the domain, with what to do next, and
//! the one mapping from a class of failure to an exit code.

use samenop_client::ClientError;

/// A class of failure the caller handles differently, each with its exit
/// code (documented in `samenop --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Anything not listed below: a server error, a message that failed
    /// verification, broken local state (1).
    Failure,
    /// The command line itself is wrong (2; clap uses it too).
    Usage,
    /// The consult, family or professional does not exist for you (3).
    NotFound,
    /// You may not do this, or the server does not know who you are (4).
    NotAllowed,
    /// The state does not allow it: no consent, the consult has ended, it
    /// is no longer kept (5).
    Precondition,
    /// Someone else was first, or it changed meanwhile: read again (6).
    Conflict,
    /// The server cannot be reached (7).
    Unavailable,
    /// The input was refused as malformed or too large (8).
    InvalidInput,
    /// The profile or its files are missing or unusable (9).
    Config,
}

impl Class {
    fn code(self) -> u8 {
        match self {
            Class::Failure => 1,
            Class::Usage => 2,
            Class::NotFound => 3,
            Class::NotAllowed => 4,
            Class::Precondition => 5,
            Class::Conflict => 6,
            Class::Unavailable => 7,
            Class::InvalidInput => 8,
            Class::Config => 9,
        }
    }

    /// The class's name in `--json` errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Class::Failure => "failure",
            Class::Usage => "usage",
            Class::NotFound => "not_found",
            Class::NotAllowed => "not_allowed",
            Class::Precondition => "precondition",
            Class::Conflict => "conflict",
            Class::Unavailable => "unavailable",
            Class::InvalidInput => "invalid_input",
            Class::Config => "config",
        }
    }
}

/// A command's failure.
#[derive(Debug)]
pub(crate) struct CliError {
    /// Which class.
    pub(crate) class: Class,
    /// What went wrong, for a person.
    pub(crate) message: String,
    /// What to do next, when there is something to say.
    pub(crate) hint: Option<String>,
}

impl CliError {
    pub(crate) fn new(class: Class, message: impl Into<String>) -> Self {
        CliError {
            class,
            message: message.into(),
            hint: None,
        }
    }

    /// The same failure with what to do next.
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn failure(message: impl Into<String>) -> Self {
        Self::new(Class::Failure, message)
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(Class::Usage, message)
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(Class::Config, message)
    }

    pub(crate) fn exit_code(&self) -> u8 {
        self.class.code()
    }
}

impl From<ClientError> for CliError {
    fn from(err: ClientError) -> Self {
        let (class, message) = match err {
            ClientError::NotFound(m) => (Class::NotFound, m),
            ClientError::Unauthenticated(m) | ClientError::PermissionDenied(m) => {
                (Class::NotAllowed, m)
            }
            ClientError::FailedPrecondition(m) | ClientError::OutOfRange(m) => {
                (Class::Precondition, m)
            }
            ClientError::AlreadyExists(m) | ClientError::Aborted(m) => (Class::Conflict, m),
            ClientError::Unavailable(m) => (Class::Unavailable, m),
            ClientError::InvalidArgument(m)
            | ClientError::InvalidInput(m)
            | ClientError::ResourceExhausted(m) => (Class::InvalidInput, m),
            ClientError::Config(m) => (Class::Config, m),
            ClientError::NoProfessional => (
                Class::Config,
                "the profile names no professional".to_owned(),
            ),
            other => (Class::Failure, other.to_string()),
        };
        let hint = match class {
            Class::Unavailable => Some(crate::text::HINT_UNAVAILABLE.to_owned()),
            Class::Conflict => Some(crate::text::HINT_CONFLICT.to_owned()),
            _ => None,
        };
        CliError {
            class,
            message,
            hint,
        }
    }
}

/// A command's result.
pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;
