//! Consent: family members agree that information about the members it
//! concerns may be shared for consultation, within a scope, for a period.
//! Who must give it follows each concerned member's age band.

use std::time::{Duration, SystemTime};

use samenop_proto::v1;
use uuid::Uuid;

use super::{
    Expertise, InvalidInput, Oin, ProfessionalId,
    family::{AgeBand, Family, MemberId, MemberRole},
    parse_text,
};

/// The longest evidence reference, in characters.
pub(crate) const EVIDENCE_MAX: usize = 100;
/// How far in the past a consent's validity may start.
pub(crate) const BACKDATE_MAX: Duration = Duration::from_secs(24 * 3600);
/// The longest period a consent may cover: consent is renewed, not open-ended.
pub(crate) const PERIOD_MAX: Duration = Duration::from_secs(2 * 366 * 24 * 3600);
/// The most organisations a scope may name.
pub(crate) const SCOPE_ORGANISATIONS_MAX: usize = 50;

super::ids::uuid_id!(
    /// A consent's id (UUID v7, so a family's consents list in recording order).
    ConsentId
);

impl ConsentId {
    /// A new id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

/// With whom information may be shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The expertise that may be consulted (non-empty).
    pub expertise: Vec<Expertise>,
    /// The only organisations that may be consulted; empty for any.
    pub organisations: Vec<Oin>,
}

impl Scope {
    /// Whether the scope covers consulting `expertise` at `organisation`.
    pub fn covers(&self, expertise: Expertise, organisation: &Oin) -> bool {
        self.expertise.contains(&expertise)
            && (self.organisations.is_empty() || self.organisations.contains(organisation))
    }
}

/// Why a consent was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    /// A member withdrew it.
    Withdrawn,
    /// It was recorded in error.
    RecordedInError,
}

impl RevocationReason {
    /// Parses a reason from its wire number.
    ///
    /// # Errors
    /// [`InvalidInput::BadEnum`] for an unknown number or the unspecified value.
    pub fn parse(field: &'static str, value: i32) -> Result<Self, InvalidInput> {
        match v1::ConsentRevocationReason::try_from(value) {
            Ok(v1::ConsentRevocationReason::Withdrawn) => Ok(RevocationReason::Withdrawn),
            Ok(v1::ConsentRevocationReason::RecordedInError) => {
                Ok(RevocationReason::RecordedInError)
            }
            Ok(v1::ConsentRevocationReason::Unspecified) | Err(_) => {
                Err(InvalidInput::BadEnum { field, value })
            }
        }
    }

    /// The reason's wire value.
    pub fn to_proto(self) -> v1::ConsentRevocationReason {
        match self {
            RevocationReason::Withdrawn => v1::ConsentRevocationReason::Withdrawn,
            RevocationReason::RecordedInError => v1::ConsentRevocationReason::RecordedInError,
        }
    }
}

/// The revocation of a consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// When.
    pub at: SystemTime,
    /// Who recorded it.
    pub by: ProfessionalId,
    /// Why.
    pub reason: RevocationReason,
    /// Where it is documented, if given.
    pub evidence: Option<String>,
}

/// Where a consent stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its period has not begun.
    NotYetValid,
    /// It covers consults.
    Active,
    /// Its period has ended.
    Expired,
    /// It was revoked.
    Revoked,
}

impl Status {
    /// The status's wire value.
    pub fn to_proto(self) -> v1::ConsentStatus {
        match self {
            Status::NotYetValid => v1::ConsentStatus::NotYetValid,
            Status::Active => v1::ConsentStatus::Active,
            Status::Expired => v1::ConsentStatus::Expired,
            Status::Revoked => v1::ConsentStatus::Revoked,
        }
    }
}

/// A recorded consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// Its id.
    pub id: ConsentId,
    /// Whose family.
    pub family: super::family::FamilyId,
    /// The members whose information it covers.
    pub concerned: Vec<MemberId>,
    /// The members who gave it.
    pub given_by: Vec<MemberId>,
    /// With whom information may be shared.
    pub scope: Scope,
    /// Valid from.
    pub valid_from: SystemTime,
    /// Valid until.
    pub valid_until: SystemTime,
    /// Where it is documented.
    pub evidence: String,
    /// The contact person who recorded it.
    pub recorded_by: ProfessionalId,
    /// When it was recorded.
    pub recorded_at: SystemTime,
    /// Its revocation, if revoked.
    pub revocation: Option<Revocation>,
}

impl Consent {
    /// Where the consent stands at `now`.
    pub fn status_at(&self, now: SystemTime) -> Status {
        if self.revocation.is_some() {
            Status::Revoked
        } else if now < self.valid_from {
            Status::NotYetValid
        } else if now >= self.valid_until {
            Status::Expired
        } else {
            Status::Active
        }
    }
}

/// Why a consent cannot be recorded although every field is well-formed:
/// the members giving it are not the ones the law asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongConsenter(pub String);

/// Parses and checks a RecordConsent request against `family`.
///
/// # Errors
/// `Err(Ok(InvalidInput))` for a malformed request;
/// `Err(Err(WrongConsenter))` when the right members did not give it, with
/// a message that says who must.
pub fn record(
    raw: &v1::RecordConsentRequest,
    family: &Family,
    recorded_by: ProfessionalId,
    now: SystemTime,
) -> Result<Consent, Result<InvalidInput, WrongConsenter>> {
    let concerned =
        member_list("concerned_member_ids", &raw.concerned_member_ids, family).map_err(Ok)?;
    let given_by =
        member_list("given_by_member_ids", &raw.given_by_member_ids, family).map_err(Ok)?;
    match v1::Purpose::try_from(raw.purpose) {
        Ok(v1::Purpose::Consultation) => {}
        Ok(v1::Purpose::Unspecified) | Err(_) => {
            return Err(Ok(InvalidInput::BadEnum {
                field: "purpose",
                value: raw.purpose,
            }));
        }
        Ok(_) => {
            return Err(Ok(InvalidInput::Inconsistent(
                "a consent is given only for PURPOSE_CONSULTATION",
            )));
        }
    }
    let scope = parse_scope(raw.scope.as_ref()).map_err(Ok)?;
    let (valid_from, valid_until) = parse_period(raw, now).map_err(Ok)?;
    let evidence =
        parse_text("evidence_reference", &raw.evidence_reference, EVIDENCE_MAX).map_err(Ok)?;
    check_consenters(family, &concerned, &given_by, now).map_err(Err)?;
    Ok(Consent {
        id: ConsentId::generate(),
        family: family.id,
        concerned,
        given_by,
        scope,
        valid_from,
        valid_until,
        evidence,
        recorded_by,
        recorded_at: now,
        revocation: None,
    })
}

fn member_list(
    field: &'static str,
    raw: &[String],
    family: &Family,
) -> Result<Vec<MemberId>, InvalidInput> {
    if raw.is_empty() {
        return Err(InvalidInput::Missing { field });
    }
    let mut ids = Vec::with_capacity(raw.len());
    for text in raw {
        let id = MemberId::parse(field, text)?;
        if family.member(id).is_none() {
            return Err(InvalidInput::Inconsistent(
                "a member id is not a member of this family",
            ));
        }
        if ids.contains(&id) {
            return Err(InvalidInput::Repeated { field });
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Parses a consent scope.
///
/// # Errors
/// [`InvalidInput`] for a missing scope, no or repeated expertise, or a
/// malformed or repeated OIN.
pub fn parse_scope(raw: Option<&v1::ConsentScope>) -> Result<Scope, InvalidInput> {
    let raw = raw.ok_or(InvalidInput::Missing { field: "scope" })?;
    if raw.expertise.is_empty() {
        return Err(InvalidInput::Missing {
            field: "scope.expertise",
        });
    }
    let mut expertise = Vec::new();
    for item in &raw.expertise {
        let parsed = Expertise::parse("scope.expertise", item)?;
        if expertise.contains(&parsed) {
            return Err(InvalidInput::Repeated {
                field: "scope.expertise",
            });
        }
        expertise.push(parsed);
    }
    if raw.organisation_oins.len() > SCOPE_ORGANISATIONS_MAX {
        return Err(InvalidInput::TooLong {
            field: "scope.organisation_oins",
            max: SCOPE_ORGANISATIONS_MAX,
            unit: "items",
        });
    }
    let mut organisations = Vec::new();
    for text in &raw.organisation_oins {
        let oin = Oin::parse("scope.organisation_oins", text)?;
        if organisations.contains(&oin) {
            return Err(InvalidInput::Repeated {
                field: "scope.organisation_oins",
            });
        }
        organisations.push(oin);
    }
    Ok(Scope {
        expertise,
        organisations,
    })
}

fn parse_period(
    raw: &v1::RecordConsentRequest,
    now: SystemTime,
) -> Result<(SystemTime, SystemTime), InvalidInput> {
    let valid_from = match &raw.valid_from {
        None => now,
        Some(t) => super::parse_time("valid_from", t)?,
    };
    let valid_until = match &raw.valid_until {
        None => {
            return Err(InvalidInput::Missing {
                field: "valid_until",
            });
        }
        Some(t) => super::parse_time("valid_until", t)?,
    };
    if valid_from + BACKDATE_MAX < now {
        return Err(InvalidInput::Inconsistent(
            "valid_from lies more than 24 hours in the past",
        ));
    }
    if valid_until <= valid_from || valid_until <= now {
        return Err(InvalidInput::Inconsistent(
            "valid_until must lie after valid_from and in the future",
        ));
    }
    if valid_until > valid_from + PERIOD_MAX {
        return Err(InvalidInput::Inconsistent(
            "a consent covers at most two years; record a new one after that",
        ));
    }
    Ok((valid_from, valid_until))
}

/// Checks who gave the consent against the concerned members' age bands at
/// `now`: under 12, a parent/carer; 12 to 15, the member and a parent/carer;
/// 16 and over, the member. Members under 12 never give consent.
fn check_consenters(
    family: &Family,
    concerned: &[MemberId],
    given_by: &[MemberId],
    now: SystemTime,
) -> Result<(), WrongConsenter> {
    for id in given_by {
        if let Some(giver) = family.member(*id)
            && giver.band_at(now) == AgeBand::Under12
        {
            return Err(WrongConsenter(format!(
                "member {id} is under 12 and cannot give consent; a parent or carer consents for them"
            )));
        }
    }
    let parent_gave = given_by.iter().any(|id| {
        family
            .member(*id)
            .is_some_and(|m| m.role == MemberRole::ParentOrCarer)
    });
    for id in concerned {
        let Some(member) = family.member(*id) else {
            continue;
        };
        let self_gave = given_by.contains(id);
        let band = member.band_at(now);
        let missing = match band {
            AgeBand::Under12 if !parent_gave => {
                Some("a parent or carer of the family must consent for them")
            }
            AgeBand::From12To15 if !(self_gave && parent_gave) => {
                Some("they must consent themself, together with a parent or carer of the family")
            }
            AgeBand::From16 if !self_gave => Some("they must consent themself"),
            _ => None,
        };
        if let Some(missing) = missing {
            return Err(WrongConsenter(format!(
                "member {id} is {}: {missing}",
                band.describe()
            )));
        }
    }
    Ok(())
}
