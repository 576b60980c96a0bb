//! The sweep: what time does to consults, stored and told as it happens.
//!
//! Reads settle a consult at the clock's `now` anyway (decision 14); the
//! sweep makes the change happen without a read, so that the contact person
//! and the specialists hear of it: every interval it expires the requests
//! past their respond-by time and suspends the consults whose consent ran
//! out, each as one batch with a `server/...` audit event and the consult
//! events of everyone concerned. Its work comes from two deadline indexes,
//! so a sweep with nothing due reads two keys.

use std::time::Duration;

use crate::{
    error::ServiceResult,
    services::{ConsultApi, Context},
    store::{Batch, Keyspace},
};

/// Deadlines handled per index and round; the rest wait for the next round.
const PER_ROUND: usize = 256;
/// The most consults of one consent suspended in one round.
const CONSULTS_PER_CONSENT: usize = 5000;

/// Sweeps every `interval` until the task is dropped.
pub(crate) async fn run(ctx: Context, interval: Duration) {
    let consults = ConsultApi::new(ctx.clone());
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !crate::periodic::my_turn(&ctx, "sweep", interval).await {
            continue;
        }
        if let Err(err) = round(&ctx, &consults).await {
            tracing::warn!(error = %err, "sweep round failed; trying again next round");
        }
    }
}

/// One round; returns how many consults it looked at.
///
/// # Errors
/// A store failure; what was done before it stays done.
pub(crate) async fn round(ctx: &Context, consults: &ConsultApi) -> ServiceResult<usize> {
    let now = ctx.now();
    let mut seen = 0;
    for id in ctx.consults.due(now, PER_ROUND).await? {
        settle(consults, id).await;
        seen += 1;
    }
    for (key, consent) in ctx.families.consents_due(now, PER_ROUND).await? {
        let resting = ctx
            .consults
            .indexed(
                Keyspace::ConsultsByConsent,
                consent.as_bytes(),
                CONSULTS_PER_CONSENT,
            )
            .await?;
        let complete = resting.len() < CONSULTS_PER_CONSENT;
        let mut settled = true;
        for consult in resting {
            settled &= settle(consults, consult.id).await;
            seen += 1;
        }
        // Only once every consult on it is settled: otherwise next round.
        if complete && settled {
            let mut batch = Batch::new();
            ctx.families.stage_swept(&mut batch, key);
            ctx.consults.commit(batch).await?;
        }
    }
    Ok(seen)
}

/// Settles one consult; returns whether it is settled. A failure is left
/// for the next round (logged unless a concurrent change won), so one bad
/// record does not hold up the others.
async fn settle(consults: &ConsultApi, id: crate::domain::consult::ConsultId) -> bool {
    match consults.settle_stored(id).await {
        Ok(()) => true,
        Err(crate::error::ServiceError::Store(crate::store::StoreError::Conflict)) => false,
        Err(err) => {
            tracing::warn!(consult = %id, error = %err, "sweep could not settle a consult");
            false
        }
    }
}

/// Signs a checkpoint of the audit chain every `interval` when it grew,
/// until the task is dropped.
pub(crate) async fn checkpoints(ctx: Context, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !crate::periodic::my_turn(&ctx, "audit-checkpoint", interval).await {
            continue;
        }
        match ctx.trail.checkpoint(&ctx.audit_key, ctx.now()).await {
            Ok(_) | Err(crate::store::StoreError::Conflict) => {}
            Err(err) => tracing::warn!(error = %err, "audit checkpoint failed; next round"),
        }
    }
}
