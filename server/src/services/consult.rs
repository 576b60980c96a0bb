//! ConsultService: open, route, accept, invite, close and report consults.
//!
//! A consult exists for its owner, its active and invited participants,
//! and, while REQUESTED, the specialists it is addressed to (named, or the
//! available specialists of the pool's expertise whose organisation its basis
//! covers). Everyone else gets NOT_FOUND with the unknown-id text. Every read
//! settles the consult at the clock's `now` (expiry, consent expiry); every
//! write stores the settled state, compare-and-set on the record as read.

use std::collections::{HashMap, hash_map::Entry};

use samenop_proto::v1::{self, AuditObjectType as Object, consult_service_server::ConsultService};
use tonic::{Request, Response, Status};

use super::{
    Context,
    consult_view::{consult_to_proto, report},
    notices::{self, Notice},
};
use crate::{
    auth::Caller,
    domain::{
        self, Availability, Expertise, InvalidInput, Professional, ProfessionalId, Role,
        consent::{Consent, ConsentId},
        consult::{
            self, Consult, ConsultId, DeclineReason, LegalBasis, Outcome, Part, Refusal, State,
            Subject, Urgency,
        },
        family::MemberId,
        parse_text,
    },
    error::{ServiceError, ServiceResult},
    store::{Batch, Keyspace, StoreError, records::Stored},
};

/// The most consults one listing reads from an index.
const LIST_SCAN_MAX: usize = 5000;
/// The longest period of a report.
const REPORT_PERIOD_MAX: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

/// The ConsultService implementation.
#[derive(Clone)]
pub struct ConsultApi {
    /// Shared service state.
    ctx: Context,
}

fn no_consult(id: ConsultId) -> ServiceError {
    ServiceError::NotFound(format!("no consult {id}"))
}

fn refused(refusal: Refusal) -> ServiceError {
    match refusal {
        Refusal::Precondition(text) => ServiceError::FailedPrecondition(text),
        Refusal::Taken(text) => ServiceError::AlreadyExists(text),
    }
}

fn invalid(e: InvalidInput) -> ServiceError {
    ServiceError::Invalid(e)
}

/// The consents one call has read, each read once: a listing or report of
/// many consults on the same consent, or a pool request checked against
/// every specialist of its expertise, reads that consent once, and the
/// whole call sees it as it was then.
#[derive(Default)]
pub(super) struct Consents(HashMap<ConsentId, Option<Stored<Consent>>>);

impl Consents {
    /// The consent `id` (`None`: there is none), read on first use.
    async fn get(&mut self, ctx: &Context, id: ConsentId) -> ServiceResult<Option<&Consent>> {
        let consent = match self.0.entry(id) {
            Entry::Occupied(seen) => seen.into_mut(),
            Entry::Vacant(slot) => slot.insert(ctx.families.consent(id).await?),
        };
        Ok(consent.as_deref())
    }
}

/// A consult as stored and as settled at `now`.
#[derive(Clone)]
pub(super) struct Loaded {
    /// As stored: the precondition of a write.
    pub(super) stored: Stored<Consult>,
    /// As settled now: what callers see and change.
    pub(super) now: Consult,
}

impl ConsultApi {
    /// The service over `ctx`.
    pub fn new(ctx: Context) -> Self {
        ConsultApi { ctx }
    }

    /// The shared service state.
    pub(super) fn context(&self) -> &Context {
        &self.ctx
    }

    /// Loads and settles a consult.
    pub(super) async fn load(&self, id: ConsultId) -> ServiceResult<Loaded> {
        let stored = self
            .ctx
            .consults
            .consult(id)
            .await?
            .ok_or_else(|| no_consult(id))?;
        self.settled(stored).await
    }

    /// A consult already read, settled at the current time (its consent
    /// read for it).
    pub(super) async fn settled(&self, stored: Stored<Consult>) -> ServiceResult<Loaded> {
        self.settled_with(stored, &mut Consents::default()).await
    }

    /// Like [`Self::settled`], its consent taken from (or read into)
    /// `consents`.
    async fn settled_with(
        &self,
        stored: Stored<Consult>,
        consents: &mut Consents,
    ) -> ServiceResult<Loaded> {
        let mut now = Consult::clone(&stored);
        let consent = match &stored.subject {
            Subject::Family { basis, .. } => match basis.consent() {
                Some(consent) => consents.get(&self.ctx, consent).await?,
                None => None,
            },
            Subject::Anonymous => None,
        };
        now.settle(self.ctx.now(), consent);
        Ok(Loaded { stored, now })
    }

    /// Whether `who` may take the consult's pool request: an active,
    /// available specialist with the expertise, who has not declined it,
    /// of an organisation its basis covers and this server allows.
    pub(super) async fn pool_eligible(
        &self,
        c: &Consult,
        who: &Professional,
    ) -> ServiceResult<bool> {
        self.pool_eligible_with(c, who, &mut Consents::default())
            .await
    }

    /// Like [`Self::pool_eligible`], the consult's consent taken from (or
    /// read into) `consents`.
    pub(super) async fn pool_eligible_with(
        &self,
        c: &Consult,
        who: &Professional,
        consents: &mut Consents,
    ) -> ServiceResult<bool> {
        if c.addressed.is_some()
            || c.state != State::Requested
            || !who.has_role(Role::Specialist)
            || who.availability != Some(Availability::Available)
            || !who.expertise.contains(&c.expertise)
            || c.pool_declined.contains(&who.id)
            || who.id == c.owner
            || !self.ctx.auth.allows(&who.organisation)
        {
            return Ok(false);
        }
        self.covers_organisation(c, who, consents).await
    }

    /// Whether the consult's basis covers `who`'s organisation.
    async fn covers_organisation(
        &self,
        c: &Consult,
        who: &Professional,
        consents: &mut Consents,
    ) -> ServiceResult<bool> {
        let Subject::Family { basis, .. } = &c.subject else {
            return Ok(true);
        };
        let Some(consent) = basis.consent() else {
            return Ok(true);
        };
        let consent = consents.get(&self.ctx, consent).await?;
        Ok(consent.is_some_and(|consent| {
            consent.scope.organisations.is_empty()
                || consent.scope.organisations.contains(&who.organisation)
        }))
    }

    /// Whether `who` may see the consult.
    pub(super) async fn sees(&self, c: &Consult, who: &Professional) -> ServiceResult<bool> {
        let me = who.id;
        Ok(c.is_active_participant(me)
            || c.is_invited(me)
            || (c.state == State::Requested && c.addressed == Some(me))
            || self.pool_eligible(c, who).await?)
    }

    /// Loads a consult the caller may see.
    async fn visible(&self, caller: &Caller, id: ConsultId) -> ServiceResult<Loaded> {
        caller.audit.object(Object::Consult, id);
        let loaded = self.load(id).await?;
        if self.sees(&loaded.now, &caller.professional).await? {
            note_access(caller, &loaded.now);
            Ok(loaded)
        } else {
            Err(no_consult(id))
        }
    }

    /// Loads a consult the caller owns.
    async fn owned(&self, caller: &Caller, id: ConsultId) -> ServiceResult<Loaded> {
        let loaded = self.visible(caller, id).await?;
        if loaded.now.owner == caller.professional.id {
            Ok(loaded)
        } else {
            Err(ServiceError::PermissionDenied(
                "only the consult's owner may do this".into(),
            ))
        }
    }

    /// Stores `new` in place of `loaded.stored`, with the call's audit
    /// event, and tells everyone concerned of `change` (and of what time did
    /// since the stored state, when the stored record was not settled).
    async fn save(
        &self,
        caller: &Caller,
        loaded: &Loaded,
        new: &Consult,
        change: v1::ConsultChange,
    ) -> ServiceResult<()> {
        let mut reloaded: Option<Loaded> = None;
        loop {
            let current = reloaded.as_ref().unwrap_or(loaded);
            let mut batch = Batch::new();
            self.ctx
                .consults
                .stage(&mut batch, Some(&current.stored), new);
            batch.audit(caller.audit.allowed());
            let mut notices = settled_notice(current).into_iter().collect::<Vec<_>>();
            notices.push(Notice {
                old: Some(&current.now),
                new,
                change,
                actor: Some(caller.professional.id),
            });
            match notices::commit(self, batch, &notices).await {
                // The sweep (here or on another replica) may only have
                // stored what this call already saw, the consult settled by
                // time: then the change holds as it is, on the record as
                // stored now. Anything else that moved is a conflict.
                Err(ServiceError::Store(StoreError::Conflict)) if reloaded.is_none() => {
                    let again = self.load(new.id).await?;
                    if again.now != loaded.now {
                        return Err(ServiceError::Store(StoreError::Conflict));
                    }
                    reloaded = Some(again);
                }
                outcome => return outcome,
            }
        }
    }

    /// Stores what time did to consult `id` (expiry, consent ending), when
    /// anything, and tells everyone concerned.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a concurrent change won; the sweep
    /// tries again next round (the change may have stored the settled
    /// state and told of it, or not: a handover moves the record as stored).
    pub(crate) async fn settle_stored(&self, id: ConsultId) -> ServiceResult<()> {
        let loaded = self.load(id).await?;
        let Some(notice) = settled_notice(&loaded) else {
            return Ok(());
        };
        let mut batch = Batch::new();
        self.ctx
            .consults
            .stage(&mut batch, Some(&loaded.stored), &loaded.now);
        let action = match notice.change {
            v1::ConsultChange::Expired => "server/consult-expired",
            _ => "server/consult-suspended",
        };
        let mut event = crate::audit::server_event(action, self.ctx.now());
        event.purpose = v1::Purpose::Consultation.into();
        event.objects.push(v1::AuditObject {
            object_type: Object::Consult.into(),
            object_id: id.to_string(),
        });
        if let Subject::Family { family, basis, .. } = &loaded.now.subject {
            event.objects.push(v1::AuditObject {
                object_type: Object::Family.into(),
                object_id: family.to_string(),
            });
            event.legal_basis = Some(basis.to_proto(false));
        }
        batch.audit(event);
        notices::commit(self, batch, &[notice]).await
    }

    /// Checks that a family consult's basis covers `expertise` at
    /// `organisation` for its concerned members.
    async fn check_basis(
        &self,
        family: domain::family::FamilyId,
        concerned: &[MemberId],
        basis: &LegalBasis,
        expertise: Expertise,
        organisation: Option<&domain::Oin>,
    ) -> ServiceResult<()> {
        let Some(id) = basis.consent() else {
            return Ok(());
        };
        let consent = self.ctx.families.consent(id).await?;
        let consent = consent.ok_or_else(|| {
            ServiceError::NoLegalBasis(format!("consent {id} is not a consent of this family"))
        })?;
        consult::consent_covers(
            &consent,
            family,
            concerned,
            expertise,
            organisation,
            self.ctx.now(),
        )
        .map_err(|not| ServiceError::NoLegalBasis(not.0))
    }

    /// Loads an active specialist with `expertise`, of an organisation
    /// still allowed on this server, or NOT_FOUND.
    async fn specialist(
        &self,
        id: ProfessionalId,
        expertise: Expertise,
    ) -> ServiceResult<Professional> {
        match self.ctx.directory.professional(id).await? {
            Some(p)
                if p.is_active()
                    && p.has_role(Role::Specialist)
                    && p.expertise.contains(&expertise)
                    && self.ctx.auth.allows(&p.organisation) =>
            {
                Ok(p.into_value())
            }
            _ => Err(ServiceError::NotFound(format!(
                "no active specialist {id} with the expertise asked for"
            ))),
        }
    }

    fn respond_by(
        &self,
        raw: Option<&prost_types::Timestamp>,
        urgency: Urgency,
    ) -> ServiceResult<std::time::SystemTime> {
        let now = self.ctx.now();
        let at = match raw {
            None => now + urgency.default_response_time(),
            Some(t) => domain::parse_time("respond_by", t).map_err(invalid)?,
        };
        if at <= now {
            return Err(invalid(InvalidInput::Inconsistent(
                "respond_by must lie in the future",
            )));
        }
        Ok(at)
    }

    fn answer(c: &Consult, caller: &Caller) -> Option<v1::Consult> {
        Some(consult_to_proto(c, caller.professional.id))
    }
}

/// The notice of what time did to a consult since it was stored, if
/// anything: it expired unaccepted, or its consent ended.
fn settled_notice(loaded: &Loaded) -> Option<Notice<'_>> {
    let change = match loaded.now.state {
        _ if loaded.now.state == loaded.stored.state => return None,
        State::Expired => v1::ConsultChange::Expired,
        State::Suspended { .. } => v1::ConsultChange::Suspended,
        _ => return None,
    };
    Some(Notice {
        old: Some(&loaded.stored),
        new: &loaded.now,
        change,
        actor: None,
    })
}

/// Records in the call's audit what access to `c` was granted on: its
/// family and legal basis, and the role the caller acts in.
pub(super) fn note_access(caller: &Caller, c: &Consult) {
    if let Subject::Family { family, basis, .. } = &c.subject {
        caller.audit.object(Object::Family, family);
        caller.audit.basis(basis);
    }
    caller.audit.role(if c.owner == caller.professional.id {
        Role::ContactPerson
    } else {
        Role::Specialist
    });
}

fn consult_id(raw: &str) -> ServiceResult<ConsultId> {
    ConsultId::parse("consult_id", raw).map_err(invalid)
}

fn expertise(field: &'static str, raw: Option<&v1::Expertise>) -> ServiceResult<Expertise> {
    let raw = raw
        .ok_or(InvalidInput::Missing { field })
        .map_err(invalid)?;
    Expertise::parse(field, raw).map_err(invalid)
}

/// Conflicts of a consult write become ABORTED, except where the caller
/// must hear that someone else won.
fn conflict_or(err: ServiceError, taken: bool) -> ServiceError {
    match err {
        ServiceError::Store(StoreError::Conflict) if taken => {
            ServiceError::AlreadyExists("another specialist already accepted this request".into())
        }
        other => other,
    }
}

#[tonic::async_trait]
impl ConsultService for ConsultApi {
    async fn open_consult(
        &self,
        request: Request<v1::OpenConsultRequest>,
    ) -> Result<Response<v1::OpenConsultResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        caller.require(Role::ContactPerson)?;
        let req = request.get_ref();
        let now = self.ctx.now();
        let question = parse_text(
            "question_summary",
            &req.question_summary,
            consult::QUESTION_MAX,
        )
        .map_err(invalid)?;
        let wanted = expertise("expertise", req.expertise.as_ref())?;
        let urgency = Urgency::parse("urgency", req.urgency).map_err(invalid)?;
        let respond_by = self.respond_by(req.respond_by.as_ref(), urgency)?;
        let named = match req.specialist_id.as_str() {
            "" => None,
            raw => {
                let id = ProfessionalId::parse("specialist_id", raw).map_err(invalid)?;
                caller.audit.object(Object::Professional, id);
                Some(self.specialist(id, wanted).await?)
            }
        };
        let mut batch = Batch::new();
        let subject = match v1::ConsultKind::try_from(req.kind) {
            Ok(v1::ConsultKind::Family) => {
                let family_id = domain::family::FamilyId::parse("family_id", &req.family_id)
                    .map_err(invalid)?;
                caller.audit.object(Object::Family, family_id);
                let family = self.ctx.families.family(family_id).await?;
                let family = match family {
                    Some(f) if f.contact.professional == caller.professional.id => f,
                    _ => {
                        return Err(ServiceError::NotFound(format!("no family {family_id}")).into());
                    }
                };
                if req.concerned_member_ids.is_empty() {
                    return Err(invalid(InvalidInput::Missing {
                        field: "concerned_member_ids",
                    })
                    .into());
                }
                let mut concerned = Vec::new();
                for raw in &req.concerned_member_ids {
                    let member = MemberId::parse("concerned_member_ids", raw).map_err(invalid)?;
                    if family.member(member).is_none() {
                        return Err(invalid(InvalidInput::Inconsistent(
                            "a member id is not a member of this family",
                        ))
                        .into());
                    }
                    if concerned.contains(&member) {
                        return Err(invalid(InvalidInput::Repeated {
                            field: "concerned_member_ids",
                        })
                        .into());
                    }
                    concerned.push(member);
                }
                let basis = LegalBasis::parse(req.legal_basis.as_ref()).map_err(invalid)?;
                caller.audit.basis(&basis);
                let organisation = named.as_ref().map(|p| &p.organisation);
                self.check_basis(family.id, &concerned, &basis, wanted, organisation)
                    .await?;
                // The family must still be led by the caller when this lands.
                self.ctx.families.stage_unchanged(&mut batch, &family);
                Subject::Family {
                    family: family.id,
                    concerned,
                    basis,
                }
            }
            Ok(v1::ConsultKind::Anonymous) => {
                if !req.family_id.is_empty()
                    || !req.concerned_member_ids.is_empty()
                    || req.legal_basis.is_some()
                {
                    return Err(invalid(InvalidInput::Inconsistent(
                        "an ANONYMOUS consult has no family_id, concerned_member_ids or legal_basis",
                    ))
                    .into());
                }
                Subject::Anonymous
            }
            Ok(v1::ConsultKind::Unspecified) | Err(_) => {
                return Err(invalid(InvalidInput::BadEnum {
                    field: "kind",
                    value: req.kind,
                })
                .into());
            }
        };
        let me = &caller.professional;
        let consult = Consult {
            id: ConsultId::generate(now),
            subject,
            question,
            expertise: wanted,
            urgency,
            respond_by,
            addressed: named.as_ref().map(|p| p.id),
            owner: me.id,
            owner_organisation: me.organisation.clone(),
            state: State::Requested,
            state_changed_at: now,
            participants: vec![consult::Participant::owner(
                me.id,
                me.organisation.clone(),
                now,
            )],
            pool_declined: Vec::new(),
            requested_at: now,
            accepted_at: None,
            first_answer_at: None,
            closed_at: None,
        };
        self.ctx.consults.stage(&mut batch, None, &consult);
        caller.audit.object(Object::Consult, consult.id);
        batch.audit(caller.audit.allowed());
        let notice = Notice {
            old: None,
            new: &consult,
            change: v1::ConsultChange::Requested,
            actor: Some(me.id),
        };
        notices::commit(self, batch, &[notice]).await?;
        tracing::info!(consult = %consult.id, "consult opened");
        Ok(Response::new(v1::OpenConsultResponse {
            consult: Self::answer(&consult, &caller),
        }))
    }

    async fn get_consult(
        &self,
        request: Request<v1::GetConsultRequest>,
    ) -> Result<Response<v1::GetConsultResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let id = consult_id(&request.get_ref().consult_id)?;
        let loaded = self.visible(&caller, id).await?;
        Ok(Response::new(v1::GetConsultResponse {
            consult: Self::answer(&loaded.now, &caller),
        }))
    }

    async fn list_consults(
        &self,
        request: Request<v1::ListConsultsRequest>,
    ) -> Result<Response<v1::ListConsultsResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let scope = v1::ConsultListScope::try_from(req.scope)
            .ok()
            .filter(|s| *s != v1::ConsultListScope::Unspecified)
            .ok_or_else(|| {
                invalid(InvalidInput::BadEnum {
                    field: "scope",
                    value: req.scope,
                })
            })?;
        let mut states = Vec::new();
        for &value in &req.states {
            match v1::ConsultState::try_from(value) {
                Ok(v1::ConsultState::Unspecified) | Err(_) => {
                    return Err(invalid(InvalidInput::BadEnum {
                        field: "states",
                        value,
                    })
                    .into());
                }
                Ok(state) => states.push(state),
            }
        }
        let family = match req.family_id.as_str() {
            "" => None,
            _ if scope != v1::ConsultListScope::Owned => {
                return Err(invalid(InvalidInput::Inconsistent(
                    "family_id filters only the OWNED scope",
                ))
                .into());
            }
            raw => Some(domain::family::FamilyId::parse("family_id", raw).map_err(invalid)?),
        };
        // A family the caller does not lead does not exist for them, as in
        // every other call that names one.
        if let Some(id) = family {
            caller.audit.object(Object::Family, id);
            let led = self
                .ctx
                .families
                .family(id)
                .await
                .map_err(ServiceError::from)?
                .is_some_and(|f| f.contact.professional == caller.professional.id);
            if !led {
                return Err(ServiceError::NotFound(format!("no family {id}")).into());
            }
        }
        let after = match req.page_token.as_str() {
            "" => None,
            raw => Some(ConsultId::parse("page_token", raw).map_err(|_| {
                invalid(InvalidInput::Malformed {
                    field: "page_token",
                    problem: "not a token this server gave out",
                })
            })?),
        };
        let me = &caller.professional;
        let candidates = match scope {
            v1::ConsultListScope::Owned => {
                self.ctx
                    .consults
                    .indexed(Keyspace::ConsultsByOwner, me.id.as_bytes(), LIST_SCAN_MAX)
                    .await
            }
            v1::ConsultListScope::Participating => {
                self.ctx
                    .consults
                    .indexed(
                        Keyspace::ConsultsBySpecialist,
                        me.id.as_bytes(),
                        LIST_SCAN_MAX,
                    )
                    .await
            }
            _ => {
                let mut all = self
                    .ctx
                    .consults
                    .indexed(
                        Keyspace::ConsultsBySpecialist,
                        me.id.as_bytes(),
                        LIST_SCAN_MAX,
                    )
                    .await?;
                if me.has_role(Role::Specialist) && me.availability == Some(Availability::Available)
                {
                    for e in &me.expertise {
                        all.extend(
                            self.ctx
                                .consults
                                .indexed(Keyspace::PoolRequests, &e.code(), LIST_SCAN_MAX)
                                .await?,
                        );
                    }
                }
                Ok(all)
            }
        }
        .map_err(ServiceError::from)?;
        let mut shown = Vec::new();
        let mut consents = Consents::default();
        for stored in candidates {
            // Read by the index scan: settled as it is, not read again.
            let c = self.settled_with(stored, &mut consents).await?.now;
            let keep = match scope {
                v1::ConsultListScope::Owned => c.owner == me.id,
                v1::ConsultListScope::Participating => {
                    c.active_specialists().any(|p| p.professional == me.id)
                }
                _ => {
                    c.is_invited(me.id)
                        || (c.state == State::Requested && c.addressed == Some(me.id))
                        || self.pool_eligible_with(&c, me, &mut consents).await?
                }
            };
            let state_ok = states.is_empty()
                || states.contains(&crate::store::consults::state_to_proto(c.state).0);
            let family_ok = family.is_none_or(
                |f| matches!(&c.subject, Subject::Family { family, .. } if *family == f),
            );
            if keep && state_ok && family_ok && !shown.iter().any(|s: &Consult| s.id == c.id) {
                shown.push(c);
            }
        }
        if scope == v1::ConsultListScope::Inbox {
            shown.sort_by_key(|c| (c.respond_by, c.id));
        } else {
            shown.sort_by_key(|c| std::cmp::Reverse(c.id));
        }
        let (page, next) =
            super::page_after(&shown, after, domain::page_size(req.page_size), |c| c.id);
        // The consults shown, without their families: the event is read by
        // the readers of each of those families (through the consult), and
        // must not tell one family's readers which other families there are.
        for c in page {
            caller.audit.object(Object::Consult, c.id);
        }
        Ok(Response::new(v1::ListConsultsResponse {
            consults: page.iter().map(|c| consult_to_proto(c, me.id)).collect(),
            next_page_token: next,
        }))
    }

    async fn accept_consult(
        &self,
        request: Request<v1::AcceptConsultRequest>,
    ) -> Result<Response<v1::AcceptConsultResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        caller.require(Role::Specialist)?;
        let id = consult_id(&request.get_ref().consult_id)?;
        caller.audit.object(Object::Consult, id);
        let loaded = self.load(id).await?;
        let me = &caller.professional;
        let c = &loaded.now;
        let for_me = c.is_invited(me.id)
            || c.addressed == Some(me.id)
            || (c.addressed.is_none()
                && me.expertise.contains(&c.expertise)
                && !c.pool_declined.contains(&me.id)
                && c.owner != me.id
                && self
                    .covers_organisation(c, me, &mut Consents::default())
                    .await?);
        if !for_me {
            return Err(no_consult(id).into());
        }
        note_access(&caller, c);
        let pool = c.addressed.is_none() && !c.is_invited(me.id);
        if pool && c.state == State::Requested && me.availability != Some(Availability::Available) {
            return Err(ServiceError::FailedPrecondition(
                "only an AVAILABLE specialist takes pool requests; set your availability first"
                    .into(),
            )
            .into());
        }
        let mut new = loaded.now.clone();
        new.accept(me.id, &me.organisation, self.ctx.now())
            .map_err(refused)?;
        self.save(&caller, &loaded, &new, v1::ConsultChange::Accepted)
            .await
            .map_err(|e| conflict_or(e, pool))?;
        tracing::info!(consult = %id, "consult accepted");
        Ok(Response::new(v1::AcceptConsultResponse {
            consult: Self::answer(&new, &caller),
        }))
    }

    async fn decline_consult(
        &self,
        request: Request<v1::DeclineConsultRequest>,
    ) -> Result<Response<v1::DeclineConsultResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        caller.require(Role::Specialist)?;
        let req = request.get_ref();
        let id = consult_id(&req.consult_id)?;
        caller.audit.object(Object::Consult, id);
        let reason = DeclineReason::parse("reason", req.reason).map_err(invalid)?;
        let note = match req.note.as_str() {
            "" if reason == DeclineReason::Other => {
                return Err(invalid(InvalidInput::Missing { field: "note" }).into());
            }
            "" => None,
            raw => Some(parse_text("note", raw, consult::DECLINE_NOTE_MAX).map_err(invalid)?),
        };
        let loaded = self.visible(&caller, id).await?;
        let me = &caller.professional;
        if loaded.now.owner == me.id {
            return Err(ServiceError::FailedPrecondition(
                "the owner cannot decline their own consult".into(),
            )
            .into());
        }
        let mut new = loaded.now.clone();
        new.decline(me.id, &me.organisation, reason, note, self.ctx.now())
            .map_err(refused)?;
        // Decided before the change lands: nothing may fail after it.
        let still = self.sees(&new, &caller.professional).await?;
        self.save(&caller, &loaded, &new, v1::ConsultChange::Declined)
            .await?;
        Ok(Response::new(v1::DeclineConsultResponse {
            consult: if still {
                Self::answer(&new, &caller)
            } else {
                None
            },
        }))
    }

    async fn invite_specialist(
        &self,
        request: Request<v1::InviteSpecialistRequest>,
    ) -> Result<Response<v1::InviteSpecialistResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let id = consult_id(&req.consult_id)?;
        let who = ProfessionalId::parse("specialist_id", &req.specialist_id).map_err(invalid)?;
        caller.audit.object(Object::Professional, who);
        let wanted = expertise("expertise", req.expertise.as_ref())?;
        let loaded = self.owned(&caller, id).await?;
        let specialist = self.specialist(who, wanted).await?;
        let respond_by = self.respond_by(req.respond_by.as_ref(), loaded.now.urgency)?;
        if let Subject::Family {
            family,
            concerned,
            basis,
        } = &loaded.now.subject
        {
            self.check_basis(
                *family,
                concerned,
                basis,
                wanted,
                Some(&specialist.organisation),
            )
            .await?;
        }
        let mut new = loaded.now.clone();
        new.invite(
            who,
            &specialist.organisation,
            wanted,
            respond_by,
            self.ctx.now(),
        )
        .map_err(refused)?;
        self.save(&caller, &loaded, &new, v1::ConsultChange::Invited)
            .await?;
        Ok(Response::new(v1::InviteSpecialistResponse {
            consult: Self::answer(&new, &caller),
        }))
    }

    async fn remove_participant(
        &self,
        request: Request<v1::RemoveParticipantRequest>,
    ) -> Result<Response<v1::RemoveParticipantResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let id = consult_id(&req.consult_id)?;
        let who =
            ProfessionalId::parse("professional_id", &req.professional_id).map_err(invalid)?;
        caller.audit.object(Object::Professional, who);
        let loaded = self.owned(&caller, id).await?;
        let mut new = loaded.now.clone();
        new.remove(who, self.ctx.now()).map_err(refused)?;
        self.save(
            &caller,
            &loaded,
            &new,
            v1::ConsultChange::ParticipantRemoved,
        )
        .await?;
        Ok(Response::new(v1::RemoveParticipantResponse {
            consult: Self::answer(&new, &caller),
        }))
    }

    async fn leave_consult(
        &self,
        request: Request<v1::LeaveConsultRequest>,
    ) -> Result<Response<v1::LeaveConsultResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let id = consult_id(&request.get_ref().consult_id)?;
        let loaded = self.visible(&caller, id).await?;
        let mut new = loaded.now.clone();
        new.leave(caller.professional.id, self.ctx.now())
            .map_err(refused)?;
        self.save(&caller, &loaded, &new, v1::ConsultChange::ParticipantLeft)
            .await?;
        Ok(Response::new(v1::LeaveConsultResponse {}))
    }

    async fn change_legal_basis(
        &self,
        request: Request<v1::ChangeLegalBasisRequest>,
    ) -> Result<Response<v1::ChangeLegalBasisResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let id = consult_id(&req.consult_id)?;
        let basis = LegalBasis::parse(req.legal_basis.as_ref()).map_err(invalid)?;
        let loaded = self.owned(&caller, id).await?;
        // The basis the call would rest on, not the one it replaces.
        caller.audit.basis(&basis);
        let c = &loaded.now;
        if let Subject::Family {
            family, concerned, ..
        } = &c.subject
        {
            self.check_basis(*family, concerned, &basis, c.expertise, None)
                .await?;
            for p in c.active_specialists() {
                let Part::Specialist(e) = p.part else {
                    continue;
                };
                self.check_basis(*family, concerned, &basis, e, Some(&p.organisation))
                    .await?;
            }
        }
        let mut new = loaded.now.clone();
        new.change_basis(basis, self.ctx.now()).map_err(refused)?;
        self.save(&caller, &loaded, &new, v1::ConsultChange::LegalBasisChanged)
            .await?;
        Ok(Response::new(v1::ChangeLegalBasisResponse {
            consult: Self::answer(&new, &caller),
        }))
    }

    async fn close_consult(
        &self,
        request: Request<v1::CloseConsultRequest>,
    ) -> Result<Response<v1::CloseConsultResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let id = consult_id(&req.consult_id)?;
        caller.audit.object(Object::Consult, id);
        let outcome = Outcome::parse("outcome", req.outcome).map_err(invalid)?;
        let loaded = self.owned(&caller, id).await?;
        let mut new = loaded.now.clone();
        new.close(outcome, self.ctx.now()).map_err(refused)?;
        self.save(&caller, &loaded, &new, v1::ConsultChange::Closed)
            .await?;
        tracing::info!(consult = %id, "consult closed");
        Ok(Response::new(v1::CloseConsultResponse {
            consult: Self::answer(&new, &caller),
        }))
    }

    async fn get_consult_report(
        &self,
        request: Request<v1::GetConsultReportRequest>,
    ) -> Result<Response<v1::GetConsultReportResponse>, Status> {
        self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let start = req
            .period_start
            .as_ref()
            .ok_or(InvalidInput::Missing {
                field: "period_start",
            })
            .and_then(|t| domain::parse_time("period_start", t))
            .map_err(invalid)?;
        let end = req
            .period_end
            .as_ref()
            .ok_or(InvalidInput::Missing {
                field: "period_end",
            })
            .and_then(|t| domain::parse_time("period_end", t))
            .map_err(invalid)?;
        if end <= start || end > start + REPORT_PERIOD_MAX {
            return Err(invalid(InvalidInput::Inconsistent(
                "the period must end after it starts and span at most 366 days",
            ))
            .into());
        }
        let only_expertise = req
            .expertise
            .as_ref()
            .map(|e| Expertise::parse("expertise", e))
            .transpose()
            .map_err(invalid)?;
        let only_urgency = match req.urgency {
            0 => None,
            value => Some(Urgency::parse("urgency", value).map_err(invalid)?),
        };
        let mut consults = Vec::new();
        let mut consents = Consents::default();
        for stored in self
            .ctx
            .consults
            .requested_between(start, end, 100_000)
            .await
            .map_err(ServiceError::from)?
        {
            // Read by the index scan: settled as it is, not read again.
            let c = self.settled_with(stored, &mut consents).await?.now;
            if only_expertise.is_none_or(|e| e == c.expertise)
                && only_urgency.is_none_or(|u| u == c.urgency)
            {
                consults.push(c);
            }
        }
        Ok(Response::new(v1::GetConsultReportResponse {
            rows: report(&consults),
            generated_at: Some(super::timestamp(self.ctx.now())),
        }))
    }
}
