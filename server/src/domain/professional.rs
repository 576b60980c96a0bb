//! Professionals, their roles and expertise, and their devices.

use std::time::SystemTime;

use samenop_proto::v1;

use super::{DeviceId, InvalidInput, Oin, ProfessionalId, parse_text};

/// The longest display name, in characters.
pub(crate) const DISPLAY_NAME_MAX: usize = 200;
/// The longest device label, in characters.
pub(crate) const DEVICE_LABEL_MAX: usize = 100;
/// The most expertise entries one specialist may list.
pub(crate) const EXPERTISE_MAX: usize = 32;

/// What a professional may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The family's fixed contact person.
    ContactPerson,
    /// A specialist who answers consult requests.
    Specialist,
    /// Registers the organisation's professionals and devices.
    OrgAdmin,
    /// Reads the organisation's audit trail.
    PrivacyOfficer,
}

impl Role {
    const ALL: [Role; 4] = [
        Role::ContactPerson,
        Role::Specialist,
        Role::OrgAdmin,
        Role::PrivacyOfficer,
    ];

    /// Parses a role from its wire number.
    ///
    /// # Errors
    /// [`InvalidInput::BadEnum`] for an unknown number or ROLE_UNSPECIFIED.
    pub fn parse(field: &'static str, value: i32) -> Result<Self, InvalidInput> {
        match v1::Role::try_from(value) {
            Ok(v1::Role::ContactPerson) => Ok(Role::ContactPerson),
            Ok(v1::Role::Specialist) => Ok(Role::Specialist),
            Ok(v1::Role::OrgAdmin) => Ok(Role::OrgAdmin),
            Ok(v1::Role::PrivacyOfficer) => Ok(Role::PrivacyOfficer),
            Ok(v1::Role::Unspecified) | Err(_) => Err(InvalidInput::BadEnum { field, value }),
        }
    }

    /// The role's wire value.
    pub fn to_proto(self) -> v1::Role {
        match self {
            Role::ContactPerson => v1::Role::ContactPerson,
            Role::Specialist => v1::Role::Specialist,
            Role::OrgAdmin => v1::Role::OrgAdmin,
            Role::PrivacyOfficer => v1::Role::PrivacyOfficer,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Role::ContactPerson => 1,
            Role::Specialist => 2,
            Role::OrgAdmin => 4,
            Role::PrivacyOfficer => 8,
        }
    }

    /// The role's name as the protocol spells it, for messages.
    pub fn name(self) -> &'static str {
        self.to_proto().as_str_name()
    }
}

/// A non-empty set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    /// Parses the repeated role field: at least one, no repeats.
    ///
    /// # Errors
    /// [`InvalidInput`] for no roles, an invalid one, or a repeat.
    pub fn parse(field: &'static str, values: &[i32]) -> Result<Self, InvalidInput> {
        if values.is_empty() {
            return Err(InvalidInput::Missing { field });
        }
        let mut bits = 0u8;
        for &value in values {
            let role = Role::parse(field, value)?;
            if bits & role.bit() != 0 {
                return Err(InvalidInput::Repeated { field });
            }
            bits |= role.bit();
        }
        Ok(Roles(bits))
    }

    /// Builds a set from roles known to be valid.
    pub fn of(roles: &[Role]) -> Self {
        Roles(roles.iter().fold(0, |bits, role| bits | role.bit()))
    }

    /// Whether the set holds `role`.
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// The roles in the set, in protocol order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL
            .into_iter()
            .filter(move |role| self.contains(*role))
    }
}

/// The violence type of a VIOLENCE expertise.
pub type ViolenceType = v1::ViolenceType;

/// One expertise: CHILD, ADULT, or VIOLENCE of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expertise {
    /// Child development, parenting, youth care.
    Child,
    /// Adult problems.
    Adult,
    /// One type of violence in a dependent relationship.
    Violence(ViolenceType),
}

impl Expertise {
    /// Parses an expertise message.
    ///
    /// # Errors
    /// [`InvalidInput`] for an unknown domain or violence type, a VIOLENCE
    /// domain without a type, or a type given for another domain.
    pub fn parse(field: &'static str, raw: &v1::Expertise) -> Result<Self, InvalidInput> {
        let violence =
            ViolenceType::try_from(raw.violence_type).map_err(|_| InvalidInput::BadEnum {
                field,
                value: raw.violence_type,
            })?;
        match v1::ExpertiseDomain::try_from(raw.domain) {
            Ok(v1::ExpertiseDomain::Child | v1::ExpertiseDomain::Adult)
                if violence != ViolenceType::Unspecified =>
            {
                Err(InvalidInput::Inconsistent(
                    "a violence type belongs only to the VIOLENCE expertise domain",
                ))
            }
            Ok(v1::ExpertiseDomain::Child) => Ok(Expertise::Child),
            Ok(v1::ExpertiseDomain::Adult) => Ok(Expertise::Adult),
            Ok(v1::ExpertiseDomain::Violence) if violence == ViolenceType::Unspecified => Err(
                InvalidInput::Inconsistent("the VIOLENCE expertise domain needs a violence type"),
            ),
            Ok(v1::ExpertiseDomain::Violence) => Ok(Expertise::Violence(violence)),
            Ok(v1::ExpertiseDomain::Unspecified) | Err(_) => Err(InvalidInput::BadEnum {
                field,
                value: raw.domain,
            }),
        }
    }

    /// The expertise as a wire message.
    pub fn to_proto(self) -> v1::Expertise {
        let (domain, violence) = match self {
            Expertise::Child => (v1::ExpertiseDomain::Child, ViolenceType::Unspecified),
            Expertise::Adult => (v1::ExpertiseDomain::Adult, ViolenceType::Unspecified),
            Expertise::Violence(kind) => (v1::ExpertiseDomain::Violence, kind),
        };
        v1::Expertise {
            domain: domain as i32,
            violence_type: violence as i32,
        }
    }

    /// A two-byte code, used as a storage index key.
    pub fn code(self) -> [u8; 2] {
        let proto = self.to_proto();
        // Both numbers are small non-negative protocol enum values.
        [proto.domain as u8, proto.violence_type as u8]
    }
}

/// Whether a specialist takes new consult requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Takes new requests, pool requests included.
    Available,
    /// Takes named requests only.
    Busy,
    /// Takes no new requests.
    Away,
}

impl Availability {
    /// Parses an availability from its wire number.
    ///
    /// # Errors
    /// [`InvalidInput::BadEnum`] for an unknown number or AVAILABILITY_UNSPECIFIED.
    pub fn parse(field: &'static str, value: i32) -> Result<Self, InvalidInput> {
        match v1::Availability::try_from(value) {
            Ok(v1::Availability::Available) => Ok(Availability::Available),
            Ok(v1::Availability::Busy) => Ok(Availability::Busy),
            Ok(v1::Availability::Away) => Ok(Availability::Away),
            Ok(v1::Availability::Unspecified) | Err(_) => {
                Err(InvalidInput::BadEnum { field, value })
            }
        }
    }

    /// The availability's wire value.
    pub fn to_proto(self) -> v1::Availability {
        match self {
            Availability::Available => v1::Availability::Available,
            Availability::Busy => v1::Availability::Busy,
            Availability::Away => v1::Availability::Away,
        }
    }
}

/// A professional's display name: 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Parses a display name.
    ///
    /// # Errors
    /// [`InvalidInput`] when empty, too long or holding control characters.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
        parse_text(field, raw, DISPLAY_NAME_MAX).map(DisplayName)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A device's label: 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLabel(String);

impl DeviceLabel {
    /// Parses a device label.
    ///
    /// # Errors
    /// [`InvalidInput`] when empty, too long or holding control characters.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
        parse_text(field, raw, DEVICE_LABEL_MAX).map(DeviceLabel)
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A device's public Ed25519 signature key (32 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureKey([u8; 32]);

impl SignatureKey {
    /// Parses a public key.
    ///
    /// # Errors
    /// [`InvalidInput`] unless `raw` is exactly 32 bytes.
    pub fn parse(field: &'static str, raw: &[u8]) -> Result<Self, InvalidInput> {
        if raw.is_empty() {
            return Err(InvalidInput::Missing { field });
        }
        <[u8; 32]>::try_from(raw)
            .map(SignatureKey)
            .map_err(|_| InvalidInput::Malformed {
                field,
                problem: "an Ed25519 public key is exactly 32 bytes",
            })
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A professional to register, parsed from RegisterProfessionalRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProfessional {
    /// Their display name.
    pub display_name: DisplayName,
    /// Their roles.
    pub roles: Roles,
    /// Their expertise (non-empty exactly when they are a specialist).
    pub expertise: Vec<Expertise>,
}

impl NewProfessional {
    /// Parses and checks a registration request.
    ///
    /// # Errors
    /// [`InvalidInput`] naming the first field that is wrong.
    pub fn parse(raw: &v1::RegisterProfessionalRequest) -> Result<Self, InvalidInput> {
        let display_name = DisplayName::parse("display_name", &raw.display_name)?;
        let roles = Roles::parse("roles", &raw.roles)?;
        let expertise = parse_expertise_list("expertise", &raw.expertise)?;
        match (roles.contains(Role::Specialist), expertise.is_empty()) {
            (true, true) => Err(InvalidInput::Inconsistent(
                "a specialist needs at least one expertise",
            )),
            (false, false) => Err(InvalidInput::Inconsistent(
                "expertise is listed only for professionals with ROLE_SPECIALIST",
            )),
            _ => Ok(NewProfessional {
                display_name,
                roles,
                expertise,
            }),
        }
    }
}

fn parse_expertise_list(
    field: &'static str,
    raw: &[v1::Expertise],
) -> Result<Vec<Expertise>, InvalidInput> {
    if raw.len() > EXPERTISE_MAX {
        return Err(InvalidInput::TooLong {
            field,
            max: EXPERTISE_MAX,
            unit: "items",
        });
    }
    let mut list = Vec::with_capacity(raw.len());
    for item in raw {
        let expertise = Expertise::parse(field, item)?;
        if list.contains(&expertise) {
            return Err(InvalidInput::Repeated { field });
        }
        list.push(expertise);
    }
    Ok(list)
}

/// A registered professional, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Professional {
    /// Their id.
    pub id: ProfessionalId,
    /// Their organisation.
    pub organisation: Oin,
    /// Their display name.
    pub display_name: DisplayName,
    /// Their roles.
    pub roles: Roles,
    /// Their expertise (specialists only).
    pub expertise: Vec<Expertise>,
    /// Their availability (specialists only).
    pub availability: Option<Availability>,
    /// When they were registered.
    pub registered_at: SystemTime,
    /// When they were deactivated, if they were.
    pub deactivated_at: Option<SystemTime>,
}

impl Professional {
    /// A new professional of `organisation`, registered at `now`.
    pub fn register(new: NewProfessional, organisation: Oin, now: SystemTime) -> Self {
        let availability = new
            .roles
            .contains(Role::Specialist)
            .then_some(Availability::Available);
        Professional {
            id: ProfessionalId::generate(),
            organisation,
            display_name: new.display_name,
            roles: new.roles,
            expertise: new.expertise,
            availability,
            registered_at: now,
            deactivated_at: None,
        }
    }

    /// Whether the professional may still act.
    pub fn is_active(&self) -> bool {
        self.deactivated_at.is_none()
    }

    /// Whether the professional holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(role)
    }
}

/// A professional's device, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its id.
    pub id: DeviceId,
    /// Its owner.
    pub professional: ProfessionalId,
    /// Its public signature key.
    pub signature_key: SignatureKey,
    /// Its label.
    pub label: DeviceLabel,
    /// When it was registered.
    pub registered_at: SystemTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<SystemTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expertise(domain: v1::ExpertiseDomain, kind: ViolenceType) -> v1::Expertise {
        v1::Expertise {
            domain: domain as i32,
            violence_type: kind as i32,
        }
    }

    #[test]
    fn expertise_domain_and_type_must_fit() {
        use v1::ExpertiseDomain as D;
        let parse = |e| Expertise::parse("expertise", &e);
        assert_eq!(
            parse(expertise(D::Child, ViolenceType::Unspecified)),
            Ok(Expertise::Child)
        );
        assert_eq!(
            parse(expertise(D::Violence, ViolenceType::ElderAbuse)),
            Ok(Expertise::Violence(ViolenceType::ElderAbuse))
        );
        assert!(parse(expertise(D::Violence, ViolenceType::Unspecified)).is_err());
        assert!(parse(expertise(D::Adult, ViolenceType::ChildAbuse)).is_err());
        assert!(parse(expertise(D::Unspecified, ViolenceType::Unspecified)).is_err());
        assert!(
            parse(v1::Expertise {
                domain: 99,
                violence_type: 0
            })
            .is_err()
        );
        assert!(
            parse(v1::Expertise {
                domain: 3,
                violence_type: 99
            })
            .is_err()
        );
    }

    #[test]
    fn roles_refuse_unspecified_unknown_and_repeats() {
        assert!(Roles::parse("roles", &[]).is_err());
        assert!(Roles::parse("roles", &[0]).is_err());
        assert!(Roles::parse("roles", &[42]).is_err());
        assert!(Roles::parse("roles", &[1, 1]).is_err());
        let roles = Roles::parse("roles", &[2, 1]).ok();
        assert_eq!(
            roles.map(|r| r.iter().collect::<Vec<_>>()),
            Some(vec![Role::ContactPerson, Role::Specialist])
        );
    }

    #[test]
    fn specialists_and_only_specialists_have_expertise() {
        let child = expertise(v1::ExpertiseDomain::Child, ViolenceType::Unspecified);
        let request = |roles: Vec<i32>, expertise: Vec<v1::Expertise>| {
            NewProfessional::parse(&v1::RegisterProfessionalRequest {
                display_name: "Sam".into(),
                roles,
                expertise,
            })
        };
        assert!(request(vec![2], vec![child]).is_ok());
        assert!(request(vec![2], vec![]).is_err());
        assert!(request(vec![1], vec![child]).is_err());
        assert!(request(vec![2], vec![child, child]).is_err());
    }
}
