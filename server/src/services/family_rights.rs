//! A family's data rights: the export of everything the server holds about
//! it (a data subject's access request), and its erasure, which leaves only
//! the audit trail.

use samenop_proto::v1::{self, AuditObjectType as Object};
use tonic::{Status, codegen::BoxStream};

use super::{
    Context,
    consult::ConsultApi,
    consult_view::consult_to_proto,
    family::{Access, access, consent_to_proto, family_to_proto},
    timestamp,
};
use crate::{
    auth::Caller,
    domain::{
        InvalidInput, Role,
        consult::Consult,
        family::{Family, FamilyId},
        parse_text,
    },
    error::{ServiceError, ServiceResult},
    store::{Batch, Keyspace, audit_index::IndexWalk, records::Stored},
};

/// The most consults of one family an export or erasure reads.
const FAMILY_CONSULTS_MAX: usize = 10_000;
/// Export parts held in the outgoing channel at most.
const EXPORT_BUFFER: usize = 32;
/// Audit events read at a time while exporting.
const AUDIT_STEP: usize = 500;
/// The longest evidence reference of an erasure.
const EVIDENCE_MAX: usize = 100;

fn no_family(id: FamilyId) -> ServiceError {
    ServiceError::NotFound(format!("no family {id}"))
}

/// Loads a family for `caller`: its contact person, or (when `officer_too`)
/// a PRIVACY_OFFICER of the contact person's organisation; NOT_FOUND with
/// the unknown-id text for everyone else.
pub(super) async fn family_for(
    ctx: &Context,
    caller: &Caller,
    id: FamilyId,
    officer_too: bool,
) -> ServiceResult<Stored<Family>> {
    caller.audit.object(Object::Family, id);
    let family = ctx
        .families
        .family(id)
        .await?
        .ok_or_else(|| no_family(id))?;
    let role = match access(&family, caller) {
        Some(Access::ContactPerson) => Role::ContactPerson,
        Some(Access::PrivacyOfficer) if officer_too => Role::PrivacyOfficer,
        _ => return Err(no_family(id)),
    };
    caller.audit.role(role);
    Ok(family)
}

/// The family's consults, settled now.
async fn consults_of(consults: &ConsultApi, id: FamilyId) -> ServiceResult<Vec<Consult>> {
    let ctx = consults.context();
    let stored = ctx
        .consults
        .indexed(
            Keyspace::ConsultsByFamily,
            id.as_bytes(),
            FAMILY_CONSULTS_MAX,
        )
        .await?;
    let mut settled = Vec::with_capacity(stored.len());
    for c in stored {
        settled.push(consults.load(c.id).await?.now);
    }
    Ok(settled)
}

/// ExportFamilyData: the family, its consents, its consults with what their
/// threads hold, and the audit events concerning it.
pub(super) async fn export(
    consults: &ConsultApi,
    caller: &Caller,
    raw_id: &str,
) -> ServiceResult<BoxStream<v1::ExportFamilyDataResponse>> {
    let ctx = consults.context().clone();
    let id = FamilyId::parse("family_id", raw_id)?;
    let family = family_for(&ctx, caller, id, true).await?;
    let consents = ctx.families.consents_of(id).await?;
    let family_consults = consults_of(consults, id).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_BUFFER);
    tokio::spawn(async move {
        if let Err(err) = send_export(&ctx, &family, &consents, &family_consults, &tx).await {
            let _ = tx.send(Err(err.into())).await;
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

async fn send_export(
    ctx: &Context,
    family: &Family,
    consents: &[Stored<crate::domain::consent::Consent>],
    consults: &[Consult],
    tx: &tokio::sync::mpsc::Sender<Result<v1::ExportFamilyDataResponse, Status>>,
) -> ServiceResult<()> {
    use v1::export_family_data_response::Part;
    let now = ctx.now();
    let send = |part: Part| async move {
        tx.send(Ok(v1::ExportFamilyDataResponse { part: Some(part) }))
            .await
            .is_ok()
    };
    if !send(Part::Family(family_to_proto(family, now))).await {
        return Ok(());
    }
    for consent in consents {
        if !send(Part::Consent(consent_to_proto(consent, now))).await {
            return Ok(());
        }
    }
    for c in consults {
        // In full: as its owner sees it.
        if !send(Part::Consult(consult_to_proto(c, c.owner))).await {
            return Ok(());
        }
    }
    for c in consults {
        let thread = ctx.threads.summary(c.id).await?;
        let attachments = ctx.attachments.of_consult(c.id).await?;
        let summary = v1::ThreadSummary {
            consult_id: c.id.to_string(),
            message_count: thread.messages,
            attachment_count: u32::try_from(attachments.len()).unwrap_or(u32::MAX),
            stored_bytes: thread.bytes + attachments.iter().map(|(_, r)| r.size_bytes).sum::<u64>(),
            first_posted_at: thread.first_posted_at,
            last_posted_at: thread.last_posted_at,
        };
        if !send(Part::Thread(summary)).await {
            return Ok(());
        }
    }
    // Every event naming the family or one of its consults, ever opened
    // (the audit index, decision 17).
    let (prefixes, _) = ctx.trail.family_prefixes(family.id).await?;
    let mut walk = IndexWalk::new(&prefixes, 0);
    loop {
        let step = ctx.trail.indexed(&mut walk, AUDIT_STEP).await?;
        for event in step.events {
            if !send(Part::AuditEvent(event)).await {
                return Ok(());
            }
        }
        if step.done {
            return Ok(());
        }
    }
}

/// EraseFamily: removes the family, its consents, its consults with their
/// threads and attachments, in one batch with its own audit event.
pub(super) async fn erase(
    consults: &ConsultApi,
    caller: &Caller,
    req: &v1::EraseFamilyRequest,
) -> ServiceResult<v1::EraseFamilyResponse> {
    let ctx = consults.context();
    let id = FamilyId::parse("family_id", &req.family_id)?;
    let confirm = FamilyId::parse("confirm_family_id", &req.confirm_family_id)?;
    if confirm != id {
        return Err(InvalidInput::Inconsistent("confirm_family_id differs from family_id").into());
    }
    let reason = match v1::ErasureReason::try_from(req.reason) {
        Ok(v1::ErasureReason::Unspecified) | Err(_) => {
            return Err(InvalidInput::BadEnum {
                field: "reason",
                value: req.reason,
            }
            .into());
        }
        Ok(reason) => reason,
    };
    parse_text("evidence_reference", &req.evidence_reference, EVIDENCE_MAX)?;
    let family = family_for(ctx, caller, id, false).await?;
    let family_consults = consults_of(consults, id).await?;
    if let Some(open) = family_consults.iter().find(|c| !c.state.is_final()) {
        return Err(ServiceError::FailedPrecondition(format!(
            "consult {} of this family has not ended; close it first",
            open.id
        )));
    }
    let consents = ctx.families.consents_of(id).await?;
    let mut batch = Batch::new();
    ctx.families.stage_erase_family(&mut batch, &family);
    for consent in &consents {
        ctx.families.stage_erase_consent(&mut batch, consent);
    }
    for c in &family_consults {
        caller.audit.object(Object::Consult, c.id);
        // As stored: the precondition is the record on disk.
        let stored = ctx
            .consults
            .consult(c.id)
            .await?
            .ok_or_else(|| no_family(id))?;
        ctx.consults.stage_erase(&mut batch, &stored);
        ctx.threads.stage_erase(&mut batch, c.id).await?;
        ctx.attachments.stage_erase(&mut batch, c.id).await?;
    }
    caller.audit.detail(format!(
        "family erased: {}, evidence {}",
        reason.as_str_name(),
        req.evidence_reference
    ));
    let event = caller.audit.allowed();
    let event_id = event.event_id.clone();
    batch.audit(event);
    // Said whatever the outcome, even if this call is dropped: an
    // erasure whose commit failed may have committed (decision 54).
    let _said = ctx.hub.erasing();
    ctx.consults.commit(batch).await?;
    tracing::info!(family = %id, "family erased");
    Ok(v1::EraseFamilyResponse {
        erased_at: Some(timestamp(ctx.now())),
        consents_erased: u32::try_from(consents.len()).unwrap_or(u32::MAX),
        consults_erased: u32::try_from(family_consults.len()).unwrap_or(u32::MAX),
        audit_event_id: event_id,
    })
}
