//! AuditService: reading and verifying the audit trail.
//!
//! A caller sees a share of the trail: a PRIVACY_OFFICER the events acted by
//! their own organisation's professionals and those concerning the families
//! their organisation leads; a CONTACT_PERSON those concerning the families
//! they lead. Who leads a family is read now, so a handover moves the
//! family's history to its new contact person. The family's transparency
//! view is here too; its export and erasure are in `family_rights`.

use std::collections::HashMap;

use samenop_proto::v1::{self, AuditObjectType as Object, audit_service_server::AuditService};
use tonic::{Request, Response, Status, codegen::BoxStream};

use super::Context;
use crate::{
    auth::Caller,
    domain::{
        self, InvalidInput, Oin, ProfessionalId, Role,
        consult::{ConsultId, Part, Subject},
        family::FamilyId,
    },
    error::{ServiceError, ServiceResult},
    store::{
        Keyspace,
        audit::{Verification, stored_event},
        audit_index::{self, IndexKind, IndexWalk, Step},
    },
};

/// The most events one query reads before it answers (with a token to go
/// on), so a narrow filter over a long trail cannot hold a call for long.
const QUERY_SCAN_MAX: usize = 20_000;
/// How many events one store read fetches while querying.
const QUERY_SCAN_STEP: usize = 500;
/// The most consults of one family a transparency view or export reads.
const FAMILY_CONSULTS_MAX: usize = 10_000;
/// Export items held in the outgoing channel at most.
const EXPORT_BUFFER: usize = 64;

/// The AuditService implementation.
#[derive(Clone)]
pub struct AuditApi {
    /// Shared service state.
    ctx: Context,
}

/// Whose share of the trail a caller reads.
#[derive(Debug)]
struct Share {
    /// As PRIVACY_OFFICER: the organisation.
    officer_of: Option<Oin>,
    /// As CONTACT_PERSON: the professional.
    contact_person: Option<ProfessionalId>,
}

/// A parsed audit filter.
#[derive(Debug, Default)]
struct Filter {
    /// Only events concerning this family: naming it or one of its
    /// consults (ever opened, as text).
    family: Option<(String, Vec<String>)>,
    /// Only events concerning this consult.
    consult: Option<String>,
    /// Only events acted by or concerning this professional.
    professional: Option<String>,
    /// Only events from this time on.
    start: Option<prost_types::Timestamp>,
    /// Only events before this time.
    end: Option<prost_types::Timestamp>,
    /// Only events with this outcome (0: any).
    outcome: i32,
    /// The audit index prefixes that hold every event the filter can
    /// match; empty: the whole chain is read.
    index: Vec<Vec<u8>>,
}

fn concerns(event: &v1::AuditEvent, kind: Object, id: &str) -> bool {
    event
        .objects
        .iter()
        .any(|o| o.object_type == kind as i32 && o.object_id == id)
}

fn millis(t: &prost_types::Timestamp) -> i128 {
    i128::from(t.seconds) * 1000 + i128::from(t.nanos) / 1_000_000
}

impl Filter {
    /// The walk through the audit index of the events this filter may
    /// match after `after`; `None` when it names nothing indexed.
    fn walk(&self, after: u64) -> Option<IndexWalk> {
        (!self.index.is_empty()).then(|| IndexWalk::new(&self.index, after))
    }

    fn matches(&self, event: &v1::AuditEvent) -> bool {
        let actor = event.actor.as_ref();
        let at = event.occurred_at.as_ref().map_or(0, millis);
        self.family.as_ref().is_none_or(|(family, consults)| {
            concerns(event, Object::Family, family)
                || consults.iter().any(|c| concerns(event, Object::Consult, c))
        }) && self
            .consult
            .as_deref()
            .is_none_or(|c| concerns(event, Object::Consult, c))
            && self.professional.as_deref().is_none_or(|p| {
                actor.is_some_and(|a| a.professional_id == p)
                    || concerns(event, Object::Professional, p)
            })
            && self.start.as_ref().is_none_or(|s| at >= millis(s))
            && self.end.as_ref().is_none_or(|e| at < millis(e))
            && (self.outcome == 0 || event.outcome == self.outcome)
    }
}

impl AuditApi {
    /// The service over `ctx`.
    pub fn new(ctx: Context) -> Self {
        AuditApi { ctx }
    }

    /// The caller's share; PERMISSION_DENIED without a role that has one.
    fn share(caller: &Caller) -> ServiceResult<Share> {
        let me = &caller.professional;
        let share = Share {
            officer_of: me
                .has_role(Role::PrivacyOfficer)
                .then(|| me.organisation.clone()),
            contact_person: me.has_role(Role::ContactPerson).then_some(me.id),
        };
        match (&share.officer_of, &share.contact_person) {
            (Some(_), _) => caller.audit.role(Role::PrivacyOfficer),
            (None, Some(_)) => caller.audit.role(Role::ContactPerson),
            (None, None) => {
                return Err(ServiceError::PermissionDenied(
                    "reading the audit trail needs the role ROLE_PRIVACY_OFFICER or ROLE_CONTACT_PERSON"
                        .into(),
                ));
            }
        }
        Ok(share)
    }

    /// Whether the family `id` (text) is in `share`, remembering answers.
    async fn family_in_share(
        &self,
        share: &Share,
        id: &str,
        leads: &mut HashMap<String, bool>,
    ) -> ServiceResult<bool> {
        if let Some(known) = leads.get(id) {
            return Ok(*known);
        }
        let family = match FamilyId::parse("family_id", id) {
            Ok(family) => self.ctx.families.family(family).await?,
            Err(_) => None,
        };
        let led = family.is_some_and(|f| {
            share.officer_of.as_ref() == Some(&f.contact.organisation)
                || share.contact_person == Some(f.contact.professional)
        });
        leads.insert(id.to_owned(), led);
        Ok(led)
    }

    /// Whether the consult `id` (text) is in `share`: a family consult
    /// when its family is, an anonymous one when the reader's organisation
    /// (officer) or the reader (contact person) owns it.
    async fn consult_in_share(
        &self,
        share: &Share,
        id: &str,
        leads: &mut HashMap<String, bool>,
    ) -> ServiceResult<bool> {
        let key = format!("consult:{id}");
        if let Some(known) = leads.get(&key) {
            return Ok(*known);
        }
        let Ok(consult) = ConsultId::parse("consult_id", id) else {
            leads.insert(key, false);
            return Ok(false);
        };
        // A family consult's events are its family's, whether or not its
        // record is still there (erased or purged before its events).
        let visible = if let Some(family) = self.ctx.trail.family_of(consult).await? {
            self.family_in_share(share, &family.to_string(), leads)
                .await?
        } else {
            match self.ctx.consults.consult(consult).await? {
                Some(c) => match c.subject {
                    domain::consult::Subject::Family { family, .. } => {
                        self.family_in_share(share, &family.to_string(), leads)
                            .await?
                    }
                    domain::consult::Subject::Anonymous => {
                        share.officer_of.as_ref() == Some(&c.owner_organisation)
                            || share.contact_person == Some(c.owner)
                    }
                },
                None => false,
            }
        };
        leads.insert(key, visible);
        Ok(visible)
    }

    /// Whether `event` is in `share`.
    async fn in_share(
        &self,
        share: &Share,
        event: &v1::AuditEvent,
        leads: &mut HashMap<String, bool>,
    ) -> ServiceResult<bool> {
        if let (Some(org), Some(actor)) = (&share.officer_of, &event.actor)
            && actor.organisation_oin == org.as_str()
        {
            return Ok(true);
        }
        // The server's actions on the trail as a whole (a retention purge of
        // old events) concern every privacy officer.
        if share.officer_of.is_some()
            && event.objects.is_empty()
            && event.actor.as_ref().is_some_and(|a| a.by_server)
        {
            return Ok(true);
        }
        for object in &event.objects {
            let ours = match Object::try_from(object.object_type) {
                Ok(Object::Family) => {
                    self.family_in_share(share, &object.object_id, leads)
                        .await?
                }
                Ok(Object::Consult) => {
                    self.consult_in_share(share, &object.object_id, leads)
                        .await?
                }
                _ => false,
            };
            if ours {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Parses a filter, refusing objects outside the caller's share with
    /// NOT_FOUND.
    async fn filter(
        &self,
        caller: &Caller,
        share: &Share,
        raw: Option<&v1::AuditFilter>,
    ) -> ServiceResult<Filter> {
        let Some(raw) = raw else {
            return Ok(Filter::default());
        };
        let mut leads = HashMap::new();
        let mut filter = Filter {
            outcome: match v1::AuditOutcome::try_from(raw.outcome) {
                Ok(outcome) => outcome as i32,
                Err(_) => {
                    return Err(InvalidInput::BadEnum {
                        field: "filter.outcome",
                        value: raw.outcome,
                    }
                    .into());
                }
            },
            ..Filter::default()
        };
        if !raw.family_id.is_empty() {
            let id = FamilyId::parse("filter.family_id", &raw.family_id)?;
            caller.audit.object(Object::Family, id);
            if !self
                .family_in_share(share, &id.to_string(), &mut leads)
                .await?
            {
                return Err(ServiceError::NotFound(format!("no family {id}")));
            }
            let (prefixes, consults) = self.ctx.trail.family_prefixes(id).await?;
            filter.index = prefixes;
            filter.family = Some((
                id.to_string(),
                consults.iter().map(ToString::to_string).collect(),
            ));
        }
        if !raw.consult_id.is_empty() {
            let id = ConsultId::parse("filter.consult_id", &raw.consult_id)?;
            caller.audit.object(Object::Consult, id);
            let visible = self
                .consult_in_share(share, &id.to_string(), &mut leads)
                .await?;
            if !visible {
                return Err(ServiceError::NotFound(format!("no consult {id}")));
            }
            filter.index = vec![audit_index::prefix(IndexKind::Consult, id.as_bytes())];
            filter.consult = Some(id.to_string());
        }
        if !raw.professional_id.is_empty() {
            let id = ProfessionalId::parse("filter.professional_id", &raw.professional_id)?;
            caller.audit.object(Object::Professional, id);
            let ours = self
                .ctx
                .directory
                .professional(id)
                .await?
                .is_some_and(|p| p.organisation == caller.professional.organisation);
            if !ours {
                return Err(ServiceError::NotFound(format!(
                    "no professional {id} in your organisation"
                )));
            }
            if filter.index.is_empty() {
                filter.index = vec![audit_index::prefix(IndexKind::Professional, id.as_bytes())];
            }
            filter.professional = Some(id.to_string());
        }
        if let Some(t) = &raw.start_time {
            domain::parse_time("filter.start_time", t)?;
            filter.start = Some(*t);
        }
        if let Some(t) = &raw.end_time {
            domain::parse_time("filter.end_time", t)?;
            filter.end = Some(*t);
        }
        Ok(filter)
    }
}

impl AuditApi {
    /// The next step of events after `after` that a filter may match: from
    /// its walk through the audit index when it names a family, consult or
    /// professional ([`Filter::walk`]), else from the chain itself.
    async fn candidates(&self, walk: &mut Option<IndexWalk>, after: u64) -> ServiceResult<Step> {
        if let Some(walk) = walk {
            return Ok(self.ctx.trail.indexed(walk, QUERY_SCAN_STEP).await?);
        }
        let entries = self.ctx.trail.entries(after, QUERY_SCAN_STEP).await?;
        let mut step = Step {
            after,
            done: entries.len() < QUERY_SCAN_STEP,
            events: Vec::with_capacity(entries.len()),
        };
        for (key, raw) in entries {
            let event = stored_event(&raw)?;
            step.after = <[u8; 8]>::try_from(key.as_slice())
                .map(u64::from_be_bytes)
                .unwrap_or(event.sequence);
            step.events.push(event);
        }
        Ok(step)
    }

    /// Sends every event of the caller's share that matches, oldest first,
    /// then the newest checkpoint; stops quietly when the receiver went.
    async fn export(
        &self,
        share: Share,
        filter: Filter,
        json: bool,
        tx: &tokio::sync::mpsc::Sender<Result<v1::ExportAuditResponse, Status>>,
    ) -> ServiceResult<()> {
        use v1::export_audit_response::Item;
        let mut after = 0;
        let mut leads = HashMap::new();
        let mut walk = filter.walk(after);
        loop {
            let step = self.candidates(&mut walk, after).await?;
            after = step.after;
            for event in step.events {
                if filter.matches(&event) && self.in_share(&share, &event, &mut leads).await? {
                    let item = if json {
                        Item::JsonLine(super::audit_json::json_line(&event))
                    } else {
                        Item::Event(event)
                    };
                    let sent = tx
                        .send(Ok(v1::ExportAuditResponse { item: Some(item) }))
                        .await;
                    if sent.is_err() {
                        return Ok(());
                    }
                }
            }
            if step.done {
                break;
            }
        }
        if let Some(checkpoint) = self.ctx.trail.latest_checkpoint().await? {
            let _ = tx
                .send(Ok(v1::ExportAuditResponse {
                    item: Some(Item::Checkpoint(checkpoint)),
                }))
                .await;
        }
        Ok(())
    }
}

fn after_token(raw: &str) -> ServiceResult<u64> {
    if raw.is_empty() {
        return Ok(0);
    }
    raw.parse::<u64>().map_err(|_| {
        InvalidInput::Malformed {
            field: "page_token",
            problem: "not a token this server gave out",
        }
        .into()
    })
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn query_audit(
        &self,
        request: Request<v1::QueryAuditRequest>,
    ) -> Result<Response<v1::QueryAuditResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let share = Self::share(&caller)?;
        let req = request.get_ref();
        let filter = self.filter(&caller, &share, req.filter.as_ref()).await?;
        let size = domain::page_size(req.page_size);
        let mut after = after_token(&req.page_token)?;
        let mut leads = HashMap::new();
        let mut events = Vec::new();
        let mut scanned = 0;
        let mut walk = filter.walk(after);
        let next = loop {
            let step = self.candidates(&mut walk, after).await?;
            let mut stopped_early = false;
            for event in step.events {
                after = event.sequence;
                scanned += 1;
                if filter.matches(&event) && self.in_share(&share, &event, &mut leads).await? {
                    events.push(event);
                    if events.len() == size {
                        stopped_early = true;
                        break;
                    }
                }
            }
            if !stopped_early {
                after = step.after;
            }
            if events.len() == size || scanned >= QUERY_SCAN_MAX {
                break after.to_string();
            }
            if step.done {
                break String::new();
            }
        };
        Ok(Response::new(v1::QueryAuditResponse {
            events,
            next_page_token: next,
        }))
    }

    async fn export_audit(
        &self,
        request: Request<v1::ExportAuditRequest>,
    ) -> Result<Response<BoxStream<v1::ExportAuditResponse>>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let share = Self::share(&caller)?;
        let req = request.get_ref();
        let json = match v1::AuditExportFormat::try_from(req.format) {
            Ok(v1::AuditExportFormat::JsonLines) => true,
            Ok(v1::AuditExportFormat::Events) => false,
            _ => {
                return Err(ServiceError::from(InvalidInput::BadEnum {
                    field: "format",
                    value: req.format,
                })
                .into());
            }
        };
        let filter = self.filter(&caller, &share, req.filter.as_ref()).await?;
        // The export's own event is on record before the export reads the
        // trail, so an export that covers it ends with it.
        self.ctx
            .trail
            .record(caller.audit.allowed())
            .await
            .map_err(ServiceError::from)?;
        let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_BUFFER);
        let api = self.clone();
        tokio::spawn(async move {
            if let Err(err) = api.export(share, filter, json, &tx).await {
                let _ = tx.send(Err(err.into())).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_family_transparency(
        &self,
        request: Request<v1::GetFamilyTransparencyRequest>,
    ) -> Result<Response<v1::GetFamilyTransparencyResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let id = FamilyId::parse("family_id", &request.get_ref().family_id)
            .map_err(ServiceError::from)?;
        super::family_rights::family_for(&self.ctx, &caller, id, false).await?;
        let consults = self
            .ctx
            .consults
            .indexed(
                Keyspace::ConsultsByFamily,
                id.as_bytes(),
                FAMILY_CONSULTS_MAX,
            )
            .await
            .map_err(ServiceError::from)?;
        let mut entries = Vec::new();
        let mut withheld = 0u32;
        for c in &consults {
            let Subject::Family { basis, .. } = &c.subject else {
                continue;
            };
            let consulted: Vec<_> = c
                .participants
                .iter()
                .filter_map(|p| match (p.part, p.joined_at) {
                    (Part::Specialist(expertise), Some(joined)) => Some((p, expertise, joined)),
                    _ => None,
                })
                .collect();
            if basis.safety_sensitive {
                // Withheld from the family; the withholding is on record.
                withheld += u32::try_from(consulted.len()).unwrap_or(u32::MAX);
                caller.audit.object(Object::Consult, c.id);
                continue;
            }
            let wire = basis.to_proto(false);
            for (p, expertise, joined) in consulted {
                entries.push(v1::TransparencyEntry {
                    consulted_at: Some(super::timestamp(joined)),
                    organisation_oin: p.organisation.to_string(),
                    expertise: Some(expertise.to_proto()),
                    ground: wire.ground,
                    consent_id: wire.consent_id.clone(),
                    ended_at: p.ended_at.map(super::timestamp),
                });
            }
        }
        entries.sort_by_key(|e| e.consulted_at.map(|t| (t.seconds, t.nanos)));
        if withheld > 0 {
            caller.audit.detail(format!(
                "withheld {withheld} safety-sensitive consultations from the family's view"
            ));
        }
        Ok(Response::new(v1::GetFamilyTransparencyResponse {
            family_id: id.to_string(),
            entries,
            withheld_count: withheld,
            generated_at: Some(super::timestamp(self.ctx.now())),
        }))
    }

    async fn export_family_data(
        &self,
        request: Request<v1::ExportFamilyDataRequest>,
    ) -> Result<Response<BoxStream<v1::ExportFamilyDataResponse>>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let consults = super::ConsultApi::new(self.ctx.clone());
        let stream =
            super::family_rights::export(&consults, &caller, &request.get_ref().family_id).await?;
        Ok(Response::new(stream))
    }

    async fn erase_family(
        &self,
        request: Request<v1::EraseFamilyRequest>,
    ) -> Result<Response<v1::EraseFamilyResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let consults = super::ConsultApi::new(self.ctx.clone());
        let answer = super::family_rights::erase(&consults, &caller, request.get_ref()).await?;
        Ok(Response::new(answer))
    }

    async fn verify_audit(
        &self,
        request: Request<v1::VerifyAuditRequest>,
    ) -> Result<Response<v1::VerifyAuditResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        caller.require(Role::PrivacyOfficer)?;
        let result = self
            .ctx
            .trail
            .verify(Some(self.ctx.audit_key.public_key()))
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(verification_to_proto(&result)))
    }
}

/// The wire form of a verification.
pub fn verification_to_proto(result: &Verification) -> v1::VerifyAuditResponse {
    let mut answer = v1::VerifyAuditResponse {
        ok: result.broken.is_none(),
        events_checked: result.checked.sequence,
        checkpoints_checked: result.checkpoints_checked,
        last_sequence: result.recorded.sequence.max(result.checked.sequence),
        latest_checkpoint: result.latest_checkpoint.clone(),
        ..Default::default()
    };
    if let Some(broken) = result.broken {
        answer.first_broken_sequence = broken.sequence;
        answer.fault = broken.fault.to_proto() as i32;
        answer.detail = format!("event {}: {}", broken.sequence, broken.fault.explain());
    }
    answer
}
