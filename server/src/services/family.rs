//! FamilyService: families, handover and consent.
//!
//! A family exists only for its current contact person and for a
//! PRIVACY_OFFICER of that person's organisation; everyone else gets
//! NOT_FOUND with the same text as for an id nobody has.

use std::time::SystemTime;

use samenop_proto::v1::{self, AuditObjectType as Object, family_service_server::FamilyService};
use tonic::{Request, Response, Status};

use super::{Context, notices::Notice, timestamp};
use crate::{
    auth::Caller,
    domain::{
        self, InvalidInput, ProfessionalId, Role,
        consent::{self, Consent, ConsentId, Revocation, RevocationReason},
        consult::{Consult, State},
        family::{Age, ContactTerm, Family, FamilyId},
        parse_text,
    },
    error::{ServiceError, ServiceResult},
    store::{Batch, Keyspace, families::CONSENTS_PER_FAMILY_MAX, records::Stored},
};

/// The most consults of one family a handover or revocation moves.
const CONSULTS_PER_FAMILY_SCAN: usize = 10_000;

/// The FamilyService implementation.
#[derive(Clone)]
pub struct FamilyApi {
    /// Shared service state.
    ctx: Context,
}

/// How the caller may see a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// The current contact person: may read and change.
    ContactPerson,
    /// A privacy officer of the contact person's organisation: may read.
    PrivacyOfficer,
}

/// How `caller` may see `family`, if at all: as its current contact person,
/// or as a privacy officer of that person's organisation.
pub(super) fn access(family: &Family, caller: &Caller) -> Option<Access> {
    let me = &caller.professional;
    if family.contact.professional == me.id {
        Some(Access::ContactPerson)
    } else if me.has_role(Role::PrivacyOfficer) && me.organisation == family.contact.organisation {
        Some(Access::PrivacyOfficer)
    } else {
        None
    }
}

fn no_family(id: FamilyId) -> ServiceError {
    ServiceError::NotFound(format!("no family {id}"))
}

impl FamilyApi {
    /// The service over `ctx`.
    pub fn new(ctx: Context) -> Self {
        FamilyApi { ctx }
    }

    /// Commits `batch` with the consult changes it holds (old, new, what
    /// changed), telling everyone concerned in the same batch.
    async fn commit_noticed(
        &self,
        caller: &Caller,
        batch: Batch,
        changes: &[(Consult, Consult, v1::ConsultChange)],
    ) -> ServiceResult<()> {
        let notices: Vec<_> = changes
            .iter()
            .map(|(old, new, change)| Notice {
                old: Some(old),
                new,
                change: *change,
                actor: Some(caller.professional.id),
            })
            .collect();
        let consults = super::ConsultApi::new(self.ctx.clone());
        super::notices::commit(&consults, batch, &notices).await
    }

    /// Loads a family the caller may see, and how.
    /// Records the family in the call's audit only once access is granted:
    /// a handler records an id the caller named itself.
    async fn visible(
        &self,
        caller: &Caller,
        id: FamilyId,
    ) -> ServiceResult<(Stored<Family>, Access)> {
        let family = self
            .ctx
            .families
            .family(id)
            .await?
            .ok_or_else(|| no_family(id))?;
        let access = access(&family, caller).ok_or_else(|| no_family(id))?;
        caller.audit.object(Object::Family, id);
        caller.audit.role(match access {
            Access::ContactPerson => Role::ContactPerson,
            Access::PrivacyOfficer => Role::PrivacyOfficer,
        });
        Ok((family, access))
    }

    /// Loads a family the caller leads as its contact person.
    async fn led(&self, caller: &Caller, id: FamilyId) -> ServiceResult<Stored<Family>> {
        match self.visible(caller, id).await? {
            (family, Access::ContactPerson) => Ok(family),
            (_, Access::PrivacyOfficer) => Err(ServiceError::PermissionDenied(
                "only the family's contact person may change it".into(),
            )),
        }
    }
}

fn term_to_proto(t: &ContactTerm) -> v1::ContactPersonTerm {
    v1::ContactPersonTerm {
        professional_id: t.professional.to_string(),
        organisation_oin: t.organisation.to_string(),
        since: Some(timestamp(t.since)),
        until: t.until.map(timestamp),
    }
}

pub(super) fn family_to_proto(f: &Family, now: SystemTime) -> v1::Family {
    v1::Family {
        family_id: f.id.to_string(),
        members: f
            .members
            .iter()
            .map(|m| v1::FamilyMember {
                member_id: m.id.to_string(),
                role: m.role.to_proto() as i32,
                age_band: m.band_at(now).to_proto() as i32,
                birth_month: match m.age {
                    Age::Born(b) => Some(v1::BirthMonth {
                        year: u32::try_from(b.year).unwrap_or_default(),
                        month: u32::from(b.month),
                    }),
                    Age::Band(_) => None,
                },
            })
            .collect(),
        contact_person: Some(term_to_proto(&f.contact)),
        previous_contact_persons: f.previous.iter().map(term_to_proto).collect(),
        registered_at: Some(timestamp(f.registered_at)),
    }
}

pub(super) fn consent_to_proto(c: &Consent, now: SystemTime) -> v1::Consent {
    v1::Consent {
        consent_id: c.id.to_string(),
        family_id: c.family.to_string(),
        concerned_member_ids: c.concerned.iter().map(ToString::to_string).collect(),
        given_by_member_ids: c.given_by.iter().map(ToString::to_string).collect(),
        purpose: v1::Purpose::Consultation as i32,
        scope: Some(v1::ConsentScope {
            expertise: c.scope.expertise.iter().map(|e| e.to_proto()).collect(),
            organisation_oins: c
                .scope
                .organisations
                .iter()
                .map(ToString::to_string)
                .collect(),
        }),
        valid_from: Some(timestamp(c.valid_from)),
        valid_until: Some(timestamp(c.valid_until)),
        evidence_reference: c.evidence.clone(),
        recorded_by_professional_id: c.recorded_by.to_string(),
        recorded_at: Some(timestamp(c.recorded_at)),
        revocation: c.revocation.as_ref().map(|r| v1::ConsentRevocation {
            revoked_at: Some(timestamp(r.at)),
            revoked_by_professional_id: r.by.to_string(),
            reason: r.reason.to_proto() as i32,
            evidence_reference: r.evidence.clone().unwrap_or_default(),
        }),
        status: c.status_at(now).to_proto() as i32,
    }
}

#[tonic::async_trait]
impl FamilyService for FamilyApi {
    async fn register_family(
        &self,
        request: Request<v1::RegisterFamilyRequest>,
    ) -> Result<Response<v1::RegisterFamilyResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        caller.require(Role::ContactPerson)?;
        let now = self.ctx.now();
        let me = (
            caller.professional.id,
            caller.professional.organisation.clone(),
        );
        let family = Family::register(request.get_ref(), me, now).map_err(ServiceError::from)?;
        self.ctx
            .families
            .insert_family(&family, {
                caller.audit.object(Object::Family, family.id);
                caller.audit.allowed()
            })
            .await
            .map_err(ServiceError::from)?;
        tracing::info!(family = %family.id, "family registered");
        Ok(Response::new(v1::RegisterFamilyResponse {
            family: Some(family_to_proto(&family, now)),
        }))
    }

    async fn get_family(
        &self,
        request: Request<v1::GetFamilyRequest>,
    ) -> Result<Response<v1::GetFamilyResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let id = FamilyId::parse("family_id", &request.get_ref().family_id)
            .map_err(ServiceError::from)?;
        caller.audit.object(Object::Family, id);
        let (family, _) = self.visible(&caller, id).await?;
        Ok(Response::new(v1::GetFamilyResponse {
            family: Some(family_to_proto(&family, self.ctx.now())),
        }))
    }

    async fn hand_over_family(
        &self,
        request: Request<v1::HandOverFamilyRequest>,
    ) -> Result<Response<v1::HandOverFamilyResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let id = FamilyId::parse("family_id", &req.family_id).map_err(ServiceError::from)?;
        let to = ProfessionalId::parse("new_contact_person_id", &req.new_contact_person_id)
            .map_err(ServiceError::from)?;
        caller.audit.object(Object::Family, id);
        let family = self
            .ctx
            .families
            .family(id)
            .await
            .map_err(ServiceError::from)?;
        let family = family.ok_or_else(|| no_family(id))?;
        let me = &caller.professional;
        if family.contact.professional == me.id {
            caller.audit.role(Role::ContactPerson);
        } else if me.has_role(Role::OrgAdmin) && me.organisation == family.contact.organisation {
            caller.audit.role(Role::OrgAdmin);
            caller.audit.on_behalf_of(family.contact.professional);
        } else {
            return Err(no_family(id).into());
        }
        caller.audit.object(Object::Professional, to);
        let successor = self
            .ctx
            .directory
            .professional(to)
            .await
            .map_err(ServiceError::from)?;
        let successor = match successor {
            Some(p) if p.is_active() && p.has_role(Role::ContactPerson) => p,
            _ => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "professional {to} is not an active professional with ROLE_CONTACT_PERSON"
                ))
                .into());
            }
        };
        if successor.id == family.contact.professional {
            return Err(ServiceError::FailedPrecondition(
                "that professional already is the family's contact person".into(),
            )
            .into());
        }
        let now = self.ctx.now();
        let mut handed = Family::clone(&family);
        handed.hand_over((successor.id, successor.organisation.clone()), now);
        let mut batch = Batch::new();
        // The successor must still be an active contact person when this
        // lands, and an admin still the admin they were.
        self.ctx.directory.stage_unchanged(&mut batch, &successor);
        self.ctx
            .directory
            .stage_unchanged(&mut batch, &caller.professional);
        self.ctx.families.stage_family(&mut batch, &family, &handed);
        // Every consult of the family moves with it, ended ones too: the
        // previous contact person keeps no view of the family through them.
        let mut transferred = Vec::new();
        let mut changed = Vec::new();
        let consults = self
            .ctx
            .consults
            .indexed(
                Keyspace::ConsultsByFamily,
                id.as_bytes(),
                CONSULTS_PER_FAMILY_SCAN,
            )
            .await?;
        for stored in consults {
            if stored.owner == successor.id {
                continue;
            }
            let mut moved = Consult::clone(&stored);
            moved.hand_over(successor.id, &successor.organisation, now);
            self.ctx.consults.stage(&mut batch, Some(&stored), &moved);
            transferred.push(moved.id.to_string());
            caller.audit.object(Object::Consult, moved.id);
            changed.push((stored.into_value(), moved, v1::ConsultChange::OwnerChanged));
        }
        batch.audit(caller.audit.allowed());
        self.commit_noticed(&caller, batch, &changed).await?;
        tracing::info!(family = %id, to = %successor.id, "family handed over");
        Ok(Response::new(v1::HandOverFamilyResponse {
            family: Some(family_to_proto(&handed, now)),
            transferred_consult_ids: transferred,
        }))
    }

    async fn record_consent(
        &self,
        request: Request<v1::RecordConsentRequest>,
    ) -> Result<Response<v1::RecordConsentResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let id = FamilyId::parse("family_id", &req.family_id).map_err(ServiceError::from)?;
        caller.audit.object(Object::Family, id);
        let family = self.led(&caller, id).await?;
        let now = self.ctx.now();
        let consent = match consent::record(req, &family, caller.professional.id, now) {
            Ok(consent) => consent,
            Err(Ok(invalid)) => return Err(ServiceError::Invalid(invalid).into()),
            Err(Err(wrong)) => {
                // The caller hears who must consent; the trail keeps no age band.
                return Err(crate::audit::with_reason(
                    ServiceError::FailedPrecondition(wrong.0).into(),
                    "the consent is not given by who must consent for the member's age",
                ));
            }
        };
        let existing = self
            .ctx
            .families
            .consents_of(id)
            .await
            .map_err(ServiceError::from)?;
        if existing.len() >= CONSENTS_PER_FAMILY_MAX {
            return Err(ServiceError::ResourceExhausted(format!(
                "a family may have at most {CONSENTS_PER_FAMILY_MAX} consents on record"
            ))
            .into());
        }
        self.ctx
            .families
            .insert_consent(&family, &consent, {
                caller.audit.object(Object::Consent, consent.id);
                caller.audit.allowed()
            })
            .await
            .map_err(ServiceError::from)?;
        tracing::info!(family = %id, consent = %consent.id, "consent recorded");
        Ok(Response::new(v1::RecordConsentResponse {
            consent: Some(consent_to_proto(&consent, now)),
        }))
    }

    async fn revoke_consent(
        &self,
        request: Request<v1::RevokeConsentRequest>,
    ) -> Result<Response<v1::RevokeConsentResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let id = ConsentId::parse("consent_id", &req.consent_id).map_err(ServiceError::from)?;
        let reason = RevocationReason::parse("reason", req.reason).map_err(ServiceError::from)?;
        let evidence = match req.evidence_reference.as_str() {
            "" => None,
            text => Some(
                parse_text("evidence_reference", text, consent::EVIDENCE_MAX)
                    .map_err(ServiceError::from)?,
            ),
        };
        caller.audit.object(Object::Consent, id);
        let no_consent = || ServiceError::NotFound(format!("no consent {id}"));
        let found = self
            .ctx
            .families
            .consent(id)
            .await
            .map_err(ServiceError::from)?;
        let old = found.ok_or_else(no_consent)?;
        let family = match self.led(&caller, old.family).await {
            Ok(family) => family,
            Err(ServiceError::NotFound(_)) => return Err(no_consent().into()),
            Err(other) => return Err(other.into()),
        };
        if old.revocation.is_some() {
            return Err(
                ServiceError::FailedPrecondition("the consent is already revoked".into()).into(),
            );
        }
        let now = self.ctx.now();
        let revocation = Revocation {
            at: now,
            by: caller.professional.id,
            reason,
            evidence,
        };
        let mut batch = Batch::new();
        let revoked = self
            .ctx
            .families
            .stage_revocation(&mut batch, &family, &old, revocation);
        // The consults resting on it are suspended in the same step.
        let mut suspended = Vec::new();
        let resting = self
            .ctx
            .consults
            .indexed(
                Keyspace::ConsultsByConsent,
                id.as_bytes(),
                CONSULTS_PER_FAMILY_SCAN,
            )
            .await?;
        let mut changes = Vec::new();
        for stored in resting {
            let mut changed = Consult::clone(&stored);
            changed.settle(now, Some(&revoked));
            if changed != *stored {
                let change = if matches!(changed.state, State::Suspended { .. }) {
                    suspended.push(changed.id.to_string());
                    caller.audit.object(Object::Consult, changed.id);
                    v1::ConsultChange::Suspended
                } else {
                    v1::ConsultChange::Expired
                };
                self.ctx.consults.stage(&mut batch, Some(&stored), &changed);
                changes.push((stored.into_value(), changed, change));
            }
        }
        batch.audit(caller.audit.allowed());
        self.commit_noticed(&caller, batch, &changes).await?;
        tracing::info!(consent = %id, "consent revoked");
        Ok(Response::new(v1::RevokeConsentResponse {
            consent: Some(consent_to_proto(&revoked, now)),
            suspended_consult_ids: suspended,
        }))
    }

    async fn list_consents(
        &self,
        request: Request<v1::ListConsentsRequest>,
    ) -> Result<Response<v1::ListConsentsResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let id = FamilyId::parse("family_id", &req.family_id).map_err(ServiceError::from)?;
        caller.audit.object(Object::Family, id);
        let after = match req.page_token.as_str() {
            "" => None,
            token => Some(ConsentId::parse("page_token", token).map_err(|_| {
                ServiceError::Invalid(InvalidInput::Malformed {
                    field: "page_token",
                    problem: "not a token this server gave out",
                })
            })?),
        };
        self.visible(&caller, id).await?;
        let now = self.ctx.now();
        let mut consents = self
            .ctx
            .families
            .consents_of(id)
            .await
            .map_err(ServiceError::from)?;
        consents.reverse(); // newest first
        consents.retain(|c| {
            req.include_inactive
                || matches!(
                    c.status_at(now),
                    consent::Status::Active | consent::Status::NotYetValid
                )
        });
        let (page, next) =
            super::page_after(&consents, after, domain::page_size(req.page_size), |c| c.id);
        Ok(Response::new(v1::ListConsentsResponse {
            consents: page.iter().map(|c| consent_to_proto(c, now)).collect(),
            next_page_token: next,
        }))
    }
}
