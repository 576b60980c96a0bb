//! Identifiers: UUID-based ids in canonical text form, and the OIN.

use std::fmt;

use uuid::Uuid;

use super::InvalidInput;

/// Parses a UUID in its canonical hyphenated text form (the only form the
/// protocol accepts).
///
/// # Errors
/// [`InvalidInput::Missing`] when empty, [`InvalidInput::Malformed`] when the
/// text is not a canonical UUID.
pub fn parse_uuid(field: &'static str, raw: &str) -> Result<Uuid, InvalidInput> {
    if raw.is_empty() {
        return Err(InvalidInput::Missing { field });
    }
    let malformed = InvalidInput::Malformed {
        field,
        problem: "not a UUID in canonical form (8-4-4-4-12 hex digits)",
    };
    if raw.len() != 36 {
        return Err(malformed);
    }
    let uuid = Uuid::try_parse(raw).map_err(|_| malformed.clone())?;
    if uuid.is_nil() {
        return Err(InvalidInput::Malformed {
            field,
            problem: "the nil UUID is not an id",
        });
    }
    Ok(uuid)
}

/// Defines a UUID-based id type: parsing from a request field (canonical
/// form only), storage bytes and Display. Each id adds its own generator.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// Parses the id from a request field.
            ///
            /// # Errors
            /// [`InvalidInput`](crate::domain::InvalidInput) naming `field` when
            /// it is empty or not a canonical UUID.
            pub fn parse(field: &'static str, raw: &str) -> Result<Self, crate::domain::InvalidInput> {
                crate::domain::parse_uuid(field, raw).map(Self)
            }

            /// Rebuilds the id from its 16 stored bytes.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(uuid::Uuid::from_bytes(bytes))
            }

            /// The 16 bytes used as a storage key.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}
pub(crate) use uuid_id;

uuid_id!(
    /// The id of a professional, assigned by the server.
    ProfessionalId
);
uuid_id!(
    /// The id of a professional's device, assigned by the server.
    DeviceId
);

impl ProfessionalId {
    /// A new, time-ordered id (UUID v7), so listings follow creation order.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl DeviceId {
    /// A new, time-ordered id (UUID v7), so listings follow creation order.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

/// An organisation identification number (OIN): exactly 20 ASCII digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Oin(String);

impl Oin {
    /// Parses an OIN.
    ///
    /// # Errors
    /// [`InvalidInput::Malformed`] unless `raw` is exactly 20 ASCII digits.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
        if raw.len() == 20 && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidInput::Malformed {
                field,
                problem: "an OIN is exactly 20 digits",
            })
        }
    }

    /// The OIN's digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Oin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_must_be_canonical() {
        let id = ProfessionalId::generate().to_string();
        assert_eq!(
            ProfessionalId::parse("id", &id).map(|p| p.to_string()),
            Ok(id.clone())
        );
        assert!(ProfessionalId::parse("id", &id.to_uppercase()).is_ok());
        assert!(ProfessionalId::parse("id", &id.replace('-', "")).is_err());
        assert!(ProfessionalId::parse("id", &format!("{{{id}}}")).is_err());
        assert!(ProfessionalId::parse("id", "").is_err());
        assert!(ProfessionalId::parse("id", "00000000-0000-0000-0000-000000000000").is_err());
    }

    #[test]
    fn oin_is_twenty_digits() {
        assert!(Oin::parse("oin", "00000099000000000001").is_ok());
        assert!(Oin::parse("oin", "0000009900000000001").is_err());
        assert!(Oin::parse("oin", "0000009900000000000a").is_err());
    }
}
