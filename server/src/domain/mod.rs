//! The domain: samenop's types and rules, parsed from the wire once and then
//! trusted ("parse, don't validate"). Nothing here does I/O.
//!
//! Each parser takes the raw protobuf value and the name of the field it came
//! from, so that a refusal names exactly what is wrong.

pub mod consent;
pub mod consult;
pub mod family;
mod ids;
mod professional;

pub use ids::{DeviceId, Oin, ProfessionalId, parse_uuid};
pub use professional::{
    Availability, Device, DeviceLabel, DisplayName, Expertise, NewProfessional, Professional, Role,
    Roles, SignatureKey, ViolenceType,
};

/// Input that the domain refuses; reaches the peer as INVALID_ARGUMENT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// A required field is empty or unset.
    #[error("{field} is required")]
    Missing {
        /// The field's name in the request.
        field: &'static str,
    },
    /// A field holds a value of the wrong form.
    #[error("{field} is malformed: {problem}")]
    Malformed {
        /// The field's name in the request.
        field: &'static str,
        /// What is wrong with it (never the value itself).
        problem: &'static str,
    },
    /// A field is longer than allowed.
    #[error("{field} is too long: at most {max} {unit}")]
    TooLong {
        /// The field's name in the request.
        field: &'static str,
        /// The limit.
        max: usize,
        /// What the limit counts ("characters", "items").
        unit: &'static str,
    },
    /// An enum field holds a number the protocol does not define, or its
    /// `_UNSPECIFIED` value.
    #[error("{field} has no valid value (got {value})")]
    BadEnum {
        /// The field's name in the request.
        field: &'static str,
        /// The number received.
        value: i32,
    },
    /// A repeated field names the same thing twice.
    #[error("{field} contains a repeated value")]
    Repeated {
        /// The field's name in the request.
        field: &'static str,
    },
    /// Fields that are each valid do not fit together.
    #[error("{0}")]
    Inconsistent(&'static str),
}

/// Parses a bounded, non-empty text field: trimmed of surrounding white
/// space, no control characters, at most `max` characters.
///
/// # Errors
/// [`InvalidInput`] naming `field` when the text is empty, too long or holds
/// control characters.
pub fn parse_text(field: &'static str, raw: &str, max: usize) -> Result<String, InvalidInput> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(InvalidInput::Missing { field });
    }
    if text.chars().count() > max {
        return Err(InvalidInput::TooLong {
            field,
            max,
            unit: "characters",
        });
    }
    if text.chars().any(char::is_control) {
        return Err(InvalidInput::Malformed {
            field,
            problem: "control characters are not allowed",
        });
    }
    if text.chars().any(is_invisible_format) {
        return Err(InvalidInput::Malformed {
            field,
            problem: "invisible formatting characters (zero-width, bidirectional overrides) are not allowed",
        });
    }
    Ok(text.to_owned())
}

/// Parses a protobuf timestamp.
///
/// # Errors
/// [`InvalidInput::Malformed`] for nanos outside their range or a time
/// before 1970.
pub fn parse_time(
    field: &'static str,
    raw: &prost_types::Timestamp,
) -> Result<std::time::SystemTime, InvalidInput> {
    let malformed = InvalidInput::Malformed {
        field,
        problem: "not a valid timestamp after 1970",
    };
    if raw.seconds < 0 || !(0..1_000_000_000).contains(&raw.nanos) {
        return Err(malformed);
    }
    let time = std::time::SystemTime::try_from(*raw).map_err(|_| malformed.clone())?;
    // Stored times have millisecond precision.
    Ok(crate::store::records::from_millis(
        crate::store::records::to_millis(time),
    ))
}

/// The default number of items of a listing page.
pub const PAGE_SIZE_DEFAULT: usize = 50;
/// The largest number of items of a listing page.
pub const PAGE_SIZE_MAX: usize = 500;

/// Reads a page size: 0 means the default; larger than the maximum is
/// lowered to the maximum.
pub fn page_size(raw: u32) -> usize {
    match usize::try_from(raw) {
        Ok(0) => PAGE_SIZE_DEFAULT,
        Ok(n) => n.min(PAGE_SIZE_MAX),
        Err(_) => PAGE_SIZE_MAX,
    }
}

/// Reads a page token of a listing ordered by professional id: empty for
/// the first page.
///
/// # Errors
/// [`InvalidInput::Malformed`] when the token is not one the server gave out.
pub fn page_token(raw: &str) -> Result<Option<ProfessionalId>, InvalidInput> {
    if raw.is_empty() {
        return Ok(None);
    }
    ProfessionalId::parse("page_token", raw)
        .map(Some)
        .map_err(|_| InvalidInput::Malformed {
            field: "page_token",
            problem: "not a token this server gave out",
        })
}

/// Zero-width and bidirectional formatting characters, which can make a
/// name that others read look like another.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(parse_text("name", "  Anna  ", 10), Ok("Anna".to_owned()));
        assert_eq!(
            parse_text("name", "   ", 10),
            Err(InvalidInput::Missing { field: "name" })
        );
        assert!(matches!(
            parse_text("name", &"x".repeat(11), 10),
            Err(InvalidInput::TooLong { max: 10, .. })
        ));
        assert!(matches!(
            parse_text("name", "a\u{0}b", 10),
            Err(InvalidInput::Malformed { .. })
        ));
        assert!(parse_text("name", "Ann\u{202E}a", 10).is_err());
        assert!(parse_text("name", "An\u{200B}na", 10).is_err());
        // Characters, not bytes, are counted.
        assert!(parse_text("name", &"é".repeat(10), 10).is_ok());
    }
}
