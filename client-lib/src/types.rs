//! The client's domain types: what callers pass and get back, free of
//! protobuf details. Conversions from the wire check what the server sent.

use std::time::SystemTime;

use samenop_proto::v1;
use uuid::Uuid;

use crate::error::{ClientError, Result};

pub use samenop_proto::v1::ViolenceType;

/// What a professional may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A family's fixed contact person.
    ContactPerson,
    /// A specialist answering consult requests.
    Specialist,
    /// Registers the organisation's professionals and devices.
    OrgAdmin,
    /// Reads the organisation's audit trail.
    PrivacyOfficer,
}

impl Role {
    pub(crate) fn to_proto(self) -> i32 {
        let role = match self {
            Role::ContactPerson => v1::Role::ContactPerson,
            Role::Specialist => v1::Role::Specialist,
            Role::OrgAdmin => v1::Role::OrgAdmin,
            Role::PrivacyOfficer => v1::Role::PrivacyOfficer,
        };
        role as i32
    }

    pub(crate) fn from_proto(value: i32) -> Result<Self> {
        match v1::Role::try_from(value) {
            Ok(v1::Role::ContactPerson) => Ok(Role::ContactPerson),
            Ok(v1::Role::Specialist) => Ok(Role::Specialist),
            Ok(v1::Role::OrgAdmin) => Ok(Role::OrgAdmin),
            Ok(v1::Role::PrivacyOfficer) => Ok(Role::PrivacyOfficer),
            _ => Err(ClientError::Protocol(format!("unknown role {value}"))),
        }
    }
}

/// One expertise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expertise {
    /// Child development, parenting, youth care.
    Child,
    /// Adult problems.
    Adult,
    /// One type of violence; never [`ViolenceType::Unspecified`].
    Violence(ViolenceType),
}

impl Expertise {
    pub(crate) fn to_proto(self) -> Result<v1::Expertise> {
        let (domain, violence) = match self {
            Expertise::Child => (v1::ExpertiseDomain::Child, ViolenceType::Unspecified),
            Expertise::Adult => (v1::ExpertiseDomain::Adult, ViolenceType::Unspecified),
            Expertise::Violence(ViolenceType::Unspecified) => {
                return Err(ClientError::InvalidInput(
                    "a violence expertise needs a violence type".into(),
                ));
            }
            Expertise::Violence(kind) => (v1::ExpertiseDomain::Violence, kind),
        };
        Ok(v1::Expertise {
            domain: domain as i32,
            violence_type: violence as i32,
        })
    }

    pub(crate) fn from_proto(raw: &v1::Expertise) -> Result<Self> {
        let bad = || ClientError::Protocol(format!("unknown expertise {raw:?}"));
        let violence = ViolenceType::try_from(raw.violence_type).map_err(|_| bad())?;
        match (v1::ExpertiseDomain::try_from(raw.domain), violence) {
            (Ok(v1::ExpertiseDomain::Child), ViolenceType::Unspecified) => Ok(Expertise::Child),
            (Ok(v1::ExpertiseDomain::Adult), ViolenceType::Unspecified) => Ok(Expertise::Adult),
            (Ok(v1::ExpertiseDomain::Violence), kind) if kind != ViolenceType::Unspecified => {
                Ok(Expertise::Violence(kind))
            }
            _ => Err(bad()),
        }
    }
}

/// Whether a specialist takes new requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Availability {
    /// Takes new requests, pool requests included.
    Available,
    /// Takes named requests only.
    Busy,
    /// Takes no new requests.
    Away,
}

impl Availability {
    pub(crate) fn to_proto(self) -> i32 {
        let availability = match self {
            Availability::Available => v1::Availability::Available,
            Availability::Busy => v1::Availability::Busy,
            Availability::Away => v1::Availability::Away,
        };
        availability as i32
    }

    fn from_proto(value: i32) -> Result<Option<Self>> {
        match v1::Availability::try_from(value) {
            Ok(v1::Availability::Unspecified) => Ok(None),
            Ok(v1::Availability::Available) => Ok(Some(Availability::Available)),
            Ok(v1::Availability::Busy) => Ok(Some(Availability::Busy)),
            Ok(v1::Availability::Away) => Ok(Some(Availability::Away)),
            Err(_) => Err(ClientError::Protocol(format!(
                "unknown availability {value}"
            ))),
        }
    }
}

/// A professional of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Professional {
    /// Their id.
    pub id: Uuid,
    /// Their organisation's OIN.
    pub organisation_oin: String,
    /// Their organisation's name (empty for one the server no longer lists).
    pub organisation_name: String,
    /// Their name.
    pub display_name: String,
    /// Their roles.
    pub roles: Vec<Role>,
    /// Their expertise (specialists).
    pub expertise: Vec<Expertise>,
    /// Their availability (specialists).
    pub availability: Option<Availability>,
    /// False once deactivated.
    pub active: bool,
    /// When they were registered.
    pub registered_at: Option<SystemTime>,
    /// When they were deactivated.
    pub deactivated_at: Option<SystemTime>,
}

/// A device of a professional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its id.
    pub id: Uuid,
    /// Its owner.
    pub professional: Uuid,
    /// Its public Ed25519 signature key.
    pub signature_public_key: Vec<u8>,
    /// Its label.
    pub label: String,
    /// When it was registered.
    pub registered_at: Option<SystemTime>,
    /// When it was revoked.
    pub revoked_at: Option<SystemTime>,
}

pub(crate) fn uuid(field: &str, raw: &str) -> Result<Uuid> {
    Uuid::try_parse(raw).map_err(|_| ClientError::Protocol(format!("{field} is not a UUID")))
}

pub(crate) fn time(raw: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    raw.and_then(|t| SystemTime::try_from(t).ok())
}

pub(crate) fn required<T>(field: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| ClientError::Protocol(format!("the answer lacks {field}")))
}

impl TryFrom<v1::Professional> for Professional {
    type Error = ClientError;

    fn try_from(raw: v1::Professional) -> Result<Self> {
        Ok(Professional {
            id: uuid("professional_id", &raw.professional_id)?,
            organisation_oin: raw.organisation_oin,
            organisation_name: raw.organisation_name,
            display_name: raw.display_name,
            roles: raw
                .roles
                .into_iter()
                .map(Role::from_proto)
                .collect::<Result<_>>()?,
            expertise: raw
                .expertise
                .iter()
                .map(Expertise::from_proto)
                .collect::<Result<_>>()?,
            availability: Availability::from_proto(raw.availability)?,
            active: raw.active,
            registered_at: time(raw.registered_at),
            deactivated_at: time(raw.deactivated_at),
        })
    }
}

impl TryFrom<v1::Device> for Device {
    type Error = ClientError;

    fn try_from(raw: v1::Device) -> Result<Self> {
        Ok(Device {
            id: uuid("device_id", &raw.device_id)?,
            professional: uuid("professional_id", &raw.professional_id)?,
            signature_public_key: raw.signature_public_key,
            label: raw.label,
            registered_at: time(raw.registered_at),
            revoked_at: time(raw.revoked_at),
        })
    }
}
