//! Family calls: register, look up and hand over families; record, revoke
//! and list their consents.

use std::time::SystemTime;

use samenop_proto::v1::{self, family_service_client::FamilyServiceClient};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{
    Client,
    error::{ClientError, Result},
    types::{Expertise, required, time, uuid},
};

/// A member's role in the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRole {
    /// A parent or carer.
    ParentOrCarer,
    /// A child.
    Child,
    /// Another member of the household.
    Other,
}

/// An age band; it decides who must consent for a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeBand {
    /// Younger than 12.
    Under12,
    /// 12 to 15.
    From12To15,
    /// 16 or older.
    From16,
}

/// How a new member's age is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberAge {
    /// An age band, fixed.
    Band(AgeBand),
    /// A child's month and year of birth: the band follows the child's age.
    Born {
        /// Year of birth.
        year: u32,
        /// Month of birth, 1 to 12.
        month: u32,
    },
}

/// A member to register (no names: the organisation's own system links the
/// member id the server assigns to the person).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewMember {
    /// The member's role.
    pub role: MemberRole,
    /// The member's age.
    pub age: MemberAge,
}

/// A registered member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The pseudonymous member id.
    pub id: Uuid,
    /// The role.
    pub role: MemberRole,
    /// The age band now.
    pub age_band: AgeBand,
    /// The birth month and year, when given.
    pub born: Option<(u32, u32)>,
}

/// A period of a professional as contact person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactTerm {
    /// The contact person.
    pub professional: Uuid,
    /// Their organisation's OIN.
    pub organisation_oin: String,
    /// Since when.
    pub since: Option<SystemTime>,
    /// Until when; `None` for the current contact person.
    pub until: Option<SystemTime>,
}

/// A pseudonymous family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// The family id.
    pub id: Uuid,
    /// Its members.
    pub members: Vec<Member>,
    /// The current contact person.
    pub contact_person: ContactTerm,
    /// Earlier contact persons, oldest first.
    pub previous_contact_persons: Vec<ContactTerm>,
}

/// A consent to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRequest {
    /// The members whose information it covers.
    pub concerned: Vec<Uuid>,
    /// The members who gave it.
    pub given_by: Vec<Uuid>,
    /// The expertise that may be consulted.
    pub expertise: Vec<Expertise>,
    /// The only organisations (OINs) that may be consulted; empty for any.
    pub organisations: Vec<String>,
    /// Valid from; `None` for now.
    pub valid_from: Option<SystemTime>,
    /// Valid until.
    pub valid_until: SystemTime,
    /// Where it is documented in the organisation's own system.
    pub evidence_reference: String,
}

/// Where a consent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    /// Its period has not begun.
    NotYetValid,
    /// It covers consults.
    Active,
    /// Its period has ended.
    Expired,
    /// It was revoked.
    Revoked,
}

/// Why a consent is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    /// A member withdrew it.
    Withdrawn,
    /// It was recorded in error.
    RecordedInError,
}

/// A recorded consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// Its id.
    pub id: Uuid,
    /// The family.
    pub family: Uuid,
    /// The members whose information it covers.
    pub concerned: Vec<Uuid>,
    /// The members who gave it.
    pub given_by: Vec<Uuid>,
    /// The expertise that may be consulted.
    pub expertise: Vec<Expertise>,
    /// The only organisations that may be consulted; empty for any.
    pub organisations: Vec<String>,
    /// Valid from.
    pub valid_from: Option<SystemTime>,
    /// Valid until.
    pub valid_until: Option<SystemTime>,
    /// Where it is documented.
    pub evidence_reference: String,
    /// When it was revoked.
    pub revoked_at: Option<SystemTime>,
    /// Where it stands now.
    pub status: ConsentStatus,
}

fn protocol(what: &str) -> ClientError {
    ClientError::Protocol(format!("unknown {what} in the answer"))
}

fn role_from(value: i32) -> Result<MemberRole> {
    match v1::FamilyMemberRole::try_from(value) {
        Ok(v1::FamilyMemberRole::ParentOrCarer) => Ok(MemberRole::ParentOrCarer),
        Ok(v1::FamilyMemberRole::Child) => Ok(MemberRole::Child),
        Ok(v1::FamilyMemberRole::Other) => Ok(MemberRole::Other),
        _ => Err(protocol("member role")),
    }
}

fn role_to(role: MemberRole) -> i32 {
    let role = match role {
        MemberRole::ParentOrCarer => v1::FamilyMemberRole::ParentOrCarer,
        MemberRole::Child => v1::FamilyMemberRole::Child,
        MemberRole::Other => v1::FamilyMemberRole::Other,
    };
    role as i32
}

fn band_from(value: i32) -> Result<AgeBand> {
    match v1::AgeBand::try_from(value) {
        Ok(v1::AgeBand::Under12) => Ok(AgeBand::Under12),
        Ok(v1::AgeBand::From12To15) => Ok(AgeBand::From12To15),
        Ok(v1::AgeBand::From16) => Ok(AgeBand::From16),
        _ => Err(protocol("age band")),
    }
}

fn band_to(band: AgeBand) -> i32 {
    let band = match band {
        AgeBand::Under12 => v1::AgeBand::Under12,
        AgeBand::From12To15 => v1::AgeBand::From12To15,
        AgeBand::From16 => v1::AgeBand::From16,
    };
    band as i32
}

fn term(raw: v1::ContactPersonTerm) -> Result<ContactTerm> {
    Ok(ContactTerm {
        professional: uuid("professional_id", &raw.professional_id)?,
        organisation_oin: raw.organisation_oin,
        since: time(raw.since),
        until: time(raw.until),
    })
}

fn uuids(field: &str, raw: &[String]) -> Result<Vec<Uuid>> {
    raw.iter().map(|id| uuid(field, id)).collect()
}

impl TryFrom<v1::Family> for Family {
    type Error = ClientError;

    fn try_from(raw: v1::Family) -> Result<Self> {
        let members = raw
            .members
            .into_iter()
            .map(|m| {
                Ok(Member {
                    id: uuid("member_id", &m.member_id)?,
                    role: role_from(m.role)?,
                    age_band: band_from(m.age_band)?,
                    born: m.birth_month.map(|b| (b.year, b.month)),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Family {
            id: uuid("family_id", &raw.family_id)?,
            members,
            contact_person: term(required("contact_person", raw.contact_person)?)?,
            previous_contact_persons: raw
                .previous_contact_persons
                .into_iter()
                .map(term)
                .collect::<Result<_>>()?,
        })
    }
}

impl TryFrom<v1::Consent> for Consent {
    type Error = ClientError;

    fn try_from(raw: v1::Consent) -> Result<Self> {
        let scope = required("scope", raw.scope)?;
        let status = match v1::ConsentStatus::try_from(raw.status) {
            Ok(v1::ConsentStatus::NotYetValid) => ConsentStatus::NotYetValid,
            Ok(v1::ConsentStatus::Active) => ConsentStatus::Active,
            Ok(v1::ConsentStatus::Expired) => ConsentStatus::Expired,
            Ok(v1::ConsentStatus::Revoked) => ConsentStatus::Revoked,
            _ => return Err(protocol("consent status")),
        };
        Ok(Consent {
            id: uuid("consent_id", &raw.consent_id)?,
            family: uuid("family_id", &raw.family_id)?,
            concerned: uuids("concerned_member_ids", &raw.concerned_member_ids)?,
            given_by: uuids("given_by_member_ids", &raw.given_by_member_ids)?,
            expertise: scope
                .expertise
                .iter()
                .map(Expertise::from_proto)
                .collect::<Result<_>>()?,
            organisations: scope.organisation_oins,
            valid_from: time(raw.valid_from),
            valid_until: time(raw.valid_until),
            evidence_reference: raw.evidence_reference,
            revoked_at: raw.revocation.and_then(|r| time(r.revoked_at)),
            status,
        })
    }
}

impl Client {
    fn families(&self) -> FamilyServiceClient<Channel> {
        FamilyServiceClient::new(self.channel.clone())
    }

    /// Registers a family; the acting professional (a CONTACT_PERSON)
    /// becomes its contact person. Members come back in the same order, each
    /// with the pseudonymous id the server assigned.
    ///
    /// # Errors
    /// InvalidArgument for a malformed member list.
    pub async fn register_family(&self, members: &[NewMember]) -> Result<Family> {
        let members = members
            .iter()
            .map(|m| {
                let (age_band, birth_month) = match m.age {
                    MemberAge::Band(band) => (band_to(band), None),
                    MemberAge::Born { year, month } => (0, Some(v1::BirthMonth { year, month })),
                };
                v1::FamilyMember {
                    member_id: String::new(),
                    role: role_to(m.role),
                    age_band,
                    birth_month,
                }
            })
            .collect();
        let request = v1::RegisterFamilyRequest { members };
        let answer = self
            .families()
            .register_family(self.request(request)?)
            .await?;
        required("family", answer.into_inner().family)?.try_into()
    }

    /// Returns a family, with age bands as of now.
    ///
    /// # Errors
    /// NotFound unless the caller is its contact person or a privacy officer
    /// of that person's organisation.
    pub async fn family(&self, family: Uuid) -> Result<Family> {
        let request = v1::GetFamilyRequest {
            family_id: family.to_string(),
        };
        let answer = self.families().get_family(self.request(request)?).await?;
        required("family", answer.into_inner().family)?.try_into()
    }

    /// Hands a family over to another contact person; returns the family and
    /// the ids of the consults that moved with it.
    ///
    /// # Errors
    /// NotFound for a family the caller does not lead (or administer);
    /// FailedPrecondition when `to` is not an active contact person.
    pub async fn hand_over_family(&self, family: Uuid, to: Uuid) -> Result<(Family, Vec<Uuid>)> {
        let request = v1::HandOverFamilyRequest {
            family_id: family.to_string(),
            new_contact_person_id: to.to_string(),
        };
        let answer = self
            .families()
            .hand_over_family(self.request(request)?)
            .await?
            .into_inner();
        let consults = uuids("transferred_consult_ids", &answer.transferred_consult_ids)?;
        Ok((required("family", answer.family)?.try_into()?, consults))
    }

    /// Records a consent of a family the caller leads.
    ///
    /// # Errors
    /// FailedPrecondition when the wrong members gave it (the message says
    /// who must); InvalidArgument for a malformed scope or period.
    pub async fn record_consent(&self, family: Uuid, consent: &ConsentRequest) -> Result<Consent> {
        let request = v1::RecordConsentRequest {
            family_id: family.to_string(),
            concerned_member_ids: consent.concerned.iter().map(Uuid::to_string).collect(),
            given_by_member_ids: consent.given_by.iter().map(Uuid::to_string).collect(),
            purpose: v1::Purpose::Consultation as i32,
            scope: Some(v1::ConsentScope {
                expertise: consent
                    .expertise
                    .iter()
                    .map(|e| e.to_proto())
                    .collect::<Result<_>>()?,
                organisation_oins: consent.organisations.clone(),
            }),
            valid_from: consent.valid_from.map(prost_types::Timestamp::from),
            valid_until: Some(prost_types::Timestamp::from(consent.valid_until)),
            evidence_reference: consent.evidence_reference.clone(),
        };
        let answer = self
            .families()
            .record_consent(self.request(request)?)
            .await?;
        required("consent", answer.into_inner().consent)?.try_into()
    }

    /// Revokes a consent; returns it and the consults that were suspended.
    ///
    /// # Errors
    /// FailedPrecondition when it is already revoked.
    pub async fn revoke_consent(
        &self,
        consent: Uuid,
        reason: RevocationReason,
        evidence_reference: Option<&str>,
    ) -> Result<(Consent, Vec<Uuid>)> {
        let reason = match reason {
            RevocationReason::Withdrawn => v1::ConsentRevocationReason::Withdrawn,
            RevocationReason::RecordedInError => v1::ConsentRevocationReason::RecordedInError,
        };
        let request = v1::RevokeConsentRequest {
            consent_id: consent.to_string(),
            reason: reason as i32,
            evidence_reference: evidence_reference.unwrap_or_default().to_owned(),
        };
        let answer = self
            .families()
            .revoke_consent(self.request(request)?)
            .await?
            .into_inner();
        let suspended = uuids("suspended_consult_ids", &answer.suspended_consult_ids)?;
        Ok((required("consent", answer.consent)?.try_into()?, suspended))
    }

    /// Lists a family's consents, newest first, following every page.
    ///
    /// # Errors
    /// NotFound for a family the caller may not see.
    pub async fn list_consents(
        &self,
        family: Uuid,
        include_inactive: bool,
    ) -> Result<Vec<Consent>> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = v1::ListConsentsRequest {
                family_id: family.to_string(),
                include_inactive,
                page_size: 200,
                page_token,
            };
            let page = self
                .families()
                .list_consents(self.request(request)?)
                .await?
                .into_inner();
            for consent in page.consents {
                all.push(consent.try_into()?);
            }
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }
}
