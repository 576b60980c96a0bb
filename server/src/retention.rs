//! Retention: nothing is kept longer than configured. A purge runs every
//! `retention.purge_interval_seconds` and removes, each as one batch with
//! its own `server/retention-purge` audit event:
//!
//! - the thread content and attachments of a consult ended longer ago than
//!   the thread retention;
//! - a consult's record and indexes once it ended longer ago than the
//!   consult retention;
//! - a consent once the family's last consult (or the consent itself) ended
//!   longer ago than the consent retention, while none of its consults is
//!   open;
//! - audit events older than the audit retention, up to a signed checkpoint
//!   that becomes the chain's base, so what is left still verifies;
//! - the chunks of an upload begun more than a day ago that never landed
//!   (cut off by a crash).
//!
//! It also trims each device's event log of events older than the thread
//! retention: they refer to nothing that is still kept, and a device away
//! that long catches up with ListConsults and FetchThread. (A log is also
//! trimmed up to where its device resumes its subscription.) Trimming a
//! log of references is housekeeping, not audited.
//!
//! What is due is decided by the clock alone, so tests drive it with the
//! manual clock.

use std::time::{Duration, SystemTime};

use samenop_proto::v1::{self, AuditObjectType as Object};

use crate::{
    config::Retention,
    domain::consult::{Consult, Subject},
    error::ServiceResult,
    services::Context,
    store::{Batch, Keyspace, StoreError},
};

/// How long an upload may go without landing before its chunks count as
/// left behind by a crash.
const UPLOAD_ABANDONED_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What one purge round removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Purged {
    /// Threads emptied (content and attachments).
    pub threads: usize,
    /// Consult records removed.
    pub consults: usize,
    /// Consents removed.
    pub consents: usize,
    /// The audit chain's new base, when events were removed.
    pub audit_base: Option<u64>,
    /// Uploads cut off by a crash whose chunks were removed.
    pub uploads: usize,
    /// Device log events trimmed for their age.
    pub events: u64,
}

/// Purges every `retention.interval` until the task is dropped.
pub(crate) async fn run(ctx: Context, retention: Retention) {
    let mut ticks = tokio::time::interval(retention.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !crate::periodic::my_turn(&ctx, "retention", retention.interval).await {
            continue;
        }
        match round(&ctx, &retention).await {
            Ok(purged) if purged != Purged::default() => {
                tracing::info!(?purged, "retention purge");
            }
            Ok(_) | Err(crate::error::ServiceError::Store(StoreError::Conflict)) => {}
            Err(err) => tracing::warn!(error = %err, "retention purge failed; next round"),
        }
    }
}

/// The purge's audit event about `objects`, with `detail`.
fn purge_event(now: SystemTime, objects: &[(Object, String)], detail: &str) -> v1::AuditEvent {
    let mut event = crate::audit::server_event("server/retention-purge", now);
    event.purpose = v1::Purpose::Accountability.into();
    event.detail = detail.to_owned();
    event.objects = objects
        .iter()
        .map(|(kind, id)| v1::AuditObject {
            object_type: (*kind).into(),
            object_id: id.clone(),
        })
        .collect();
    event
}

/// A consult's objects for an audit event: itself and its family.
fn consult_objects(c: &Consult) -> Vec<(Object, String)> {
    let mut objects = vec![(Object::Consult, c.id.to_string())];
    if let Subject::Family { family, .. } = &c.subject {
        objects.push((Object::Family, family.to_string()));
    }
    objects
}

/// One purge round at the clock's `now`.
///
/// # Errors
/// A store failure; what was purged before it stays purged.
pub(crate) async fn round(ctx: &Context, retention: &Retention) -> ServiceResult<Purged> {
    let now = ctx.now();
    let mut purged = Purged::default();
    for c in ctx.consults.all().await? {
        let Some(ended) = c.closed_at.filter(|_| c.state.is_final()) else {
            continue;
        };
        if ended + retention.consult <= now {
            let mut batch = Batch::new();
            ctx.consults.stage_erase(&mut batch, &c);
            ctx.threads.stage_erase(&mut batch, c.id).await?;
            ctx.attachments.stage_erase(&mut batch, c.id).await?;
            batch.audit(purge_event(
                now,
                &consult_objects(&c),
                "consult record, thread content and attachments removed after the retention \
                 period",
            ));
            // Said whatever the outcome, even if this call is dropped: an
            // erasure whose commit failed may have committed (decision 54).
            let _said = ctx.hub.erasing();
            ctx.consults.commit(batch).await?;
            purged.consults += 1;
        } else if ended + retention.thread <= now {
            let mut batch = Batch::new();
            ctx.consults.stage_unchanged(&mut batch, &c);
            let messages = ctx.threads.stage_erase(&mut batch, c.id).await?;
            let attachments = ctx.attachments.stage_erase(&mut batch, c.id).await?;
            let head = ctx.threads.head(c.id).await?;
            if messages == 0 && attachments == 0 && head.head == Default::default() {
                continue;
            }
            batch.audit(purge_event(
                now,
                &consult_objects(&c),
                &format!(
                    "thread content ({messages} messages) and {attachments} attachments removed \
                     after the retention period"
                ),
            ));
            // Said whatever the outcome, even if this call is dropped: an
            // erasure whose commit failed may have committed (decision 54).
            let _said = ctx.hub.erasing();
            ctx.consults.commit(batch).await?;
            purged.threads += 1;
        }
    }
    purged.consents = purge_consents(ctx, retention, now).await?;
    purged.uploads = purge_abandoned_uploads(ctx, now).await?;
    if let Some(before) = now.checked_sub(retention.thread) {
        for device in ctx.threads.logged_devices().await? {
            let through = ctx.threads.last_before(device, before).await?;
            purged.events += ctx.threads.trim_log(device, through).await?;
        }
    }
    let cutoff = now.checked_sub(retention.audit);
    if let Some(cutoff) = cutoff {
        // One checkpoint's span at a time, until nothing more is due.
        while let Some(base) = ctx
            .trail
            .purge_before(cutoff, purge_event(now, &[], ""))
            .await?
        {
            purged.audit_base = Some(base);
        }
    }
    Ok(purged)
}

/// Removes the chunks of uploads begun a day ago or more that never
/// landed; returns how many uploads.
async fn purge_abandoned_uploads(ctx: &Context, now: SystemTime) -> ServiceResult<usize> {
    let Some(before) = now.checked_sub(UPLOAD_ABANDONED_AFTER) else {
        return Ok(0);
    };
    let mut removed = 0;
    for (mark, attachment, consult) in ctx.attachments.abandoned(before, 256).await? {
        let mut batch = Batch::new();
        if ctx.attachments.record(consult, attachment).await?.is_some() {
            // It landed after all: only the mark was left.
            ctx.attachments.stage_upload_done(&mut batch, &mark);
            ctx.threads.commit(batch).await?;
            continue;
        }
        let chunks = ctx
            .attachments
            .stage_abandon(&mut batch, &mark, attachment)
            .await?;
        batch.audit(purge_event(
            now,
            &[
                (Object::Consult, consult.to_string()),
                (Object::Attachment, attachment.to_string()),
            ],
            &format!("{chunks} chunks of an upload that never finished removed"),
        ));
        ctx.threads.commit(batch).await?;
        removed += 1;
    }
    Ok(removed)
}

/// Removes the consents kept long enough; returns how many.
async fn purge_consents(
    ctx: &Context,
    retention: &Retention,
    now: SystemTime,
) -> ServiceResult<usize> {
    let mut removed = 0;
    for family in ctx.families.all().await? {
        let consults = ctx
            .consults
            .indexed(Keyspace::ConsultsByFamily, family.id.as_bytes(), usize::MAX)
            .await?;
        if consults.iter().any(|c| !c.state.is_final()) {
            continue;
        }
        let last_consult = consults.iter().filter_map(|c| c.closed_at).max();
        for consent in ctx.families.consents_of(family.id).await? {
            let ended = consent
                .revocation
                .as_ref()
                .map_or(consent.valid_until, |r| r.at);
            let reference = last_consult.map_or(ended, |last| last.max(ended));
            if reference + retention.consent > now {
                continue;
            }
            let mut batch = Batch::new();
            ctx.families.stage_unchanged(&mut batch, &family);
            ctx.families.stage_erase_consent(&mut batch, &consent);
            batch.audit(purge_event(
                now,
                &[
                    (Object::Consent, consent.id.to_string()),
                    (Object::Family, family.id.to_string()),
                ],
                "consent removed after the retention period",
            ));
            ctx.consults.commit(batch).await?;
            removed += 1;
        }
    }
    Ok(removed)
}
