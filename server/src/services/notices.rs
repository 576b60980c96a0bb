//! Consult events in device event logs: who hears of a consult change, and
//! committing a change together with its events.
//!
//! A change to a consult reaches every active device of everyone it
//! concerns: the owner (old and new), specialists invited or taking part
//! (before or after the change), the specialist a request is addressed to,
//! the actor, and, when a pool request enters or leaves the inbox, every
//! specialist it was or is in the inbox of. The log stores only the change,
//! the consult id and the actor; the consult itself is filled in at delivery,
//! as the recipient may see it then.

use std::{collections::BTreeMap, sync::Arc};

use samenop_proto::v1;

use super::{Context, consult::ConsultApi, timestamp};
use crate::{
    delivery::HANDED_BYTES,
    domain::{DeviceId, ProfessionalId, consult::Consult, consult::Standing, consult::State},
    error::{ServiceError, ServiceResult},
    store::{Batch, Keyspace, StoreError, threads::StoredEvent},
};

/// Specialists read per directory page when finding a pool's inboxes.
const POOL_PAGE: usize = 500;

/// One consult change to tell its concerned professionals.
pub(super) struct Notice<'a> {
    /// The consult before the change (settled; `None` for a new one).
    pub old: Option<&'a Consult>,
    /// The consult after it.
    pub new: &'a Consult,
    /// What changed.
    pub change: v1::ConsultChange,
    /// Who did it; `None` when the server did (expiry, consent ending).
    pub actor: Option<ProfessionalId>,
}

/// The events one change adds to device logs: each event once, and per
/// device which of them, in order (a post tells hundreds of devices the
/// same reference, and it is encoded once).
#[derive(Default)]
pub(super) struct Fanout {
    events: Vec<StoredEvent>,
    told: BTreeMap<DeviceId, Vec<usize>>,
    /// The thread entry the change appends, in full, as its references are
    /// delivered (see [`Fanout::delivering`]).
    entry: Option<Arc<StoredEvent>>,
}

impl Fanout {
    /// Adds `event` to `device`'s log.
    pub(super) fn add(&mut self, device: DeviceId, event: StoredEvent) {
        self.add_to_each([device], event);
    }

    /// Adds `event` to the log of each of `devices`.
    pub(super) fn add_to_each(
        &mut self,
        devices: impl IntoIterator<Item = DeviceId>,
        event: StoredEvent,
    ) {
        let index = self.events.len();
        self.events.push(event);
        for device in devices {
            self.told.entry(device).or_default().push(index);
        }
    }

    /// Stages the events into `batch`, each device's at the end of its log
    /// as it is when the batch commits.
    pub(super) fn stage(&self, ctx: &Context, batch: &mut Batch) {
        let encoded: Vec<Vec<u8>> = self
            .events
            .iter()
            .map(prost::Message::encode_to_vec)
            .collect();
        for (device, events) in &self.told {
            ctx.threads.stage_events(
                batch,
                *device,
                events.iter().map(|&i| encoded[i].clone()).collect(),
            );
        }
    }

    /// Hands subscriptions `entry` (the thread entry the change appends)
    /// in full where the logs keep only a reference to it, so they need
    /// not read it back; not one over [`HANDED_BYTES`].
    pub(super) fn delivering(&mut self, entry: StoredEvent) {
        if prost::Message::encoded_len(&entry) <= HANDED_BYTES {
            self.entry = Some(Arc::new(entry));
        }
    }

    /// Commits `batch` (with [`Fanout::stage`] done on it, and no other log
    /// append), wakes each device's subscription and hands it the events.
    ///
    /// # Errors
    /// As [`crate::store::threads::Threads::commit`].
    pub(super) async fn commit(&self, ctx: &Context, batch: Batch) -> Result<(), StoreError> {
        // Read before the commit: an erasure that commits after this one
        // makes what is handed over stale, however late it is handed over.
        let erasures = ctx.hub.erasures();
        let lasts = ctx.threads.commit_logged(batch).await?;
        let delivered: Vec<Option<Arc<StoredEvent>>> =
            self.events.iter().map(|e| self.as_delivered(e)).collect();
        let mut handed = Vec::new();
        for ((device, events), last) in self.told.iter().zip(lasts) {
            handed.clear();
            // A device with an event that cannot be handed over reads them
            // all.
            let all = events.iter().all(|&i| delivered[i].is_some());
            if all {
                handed.extend(events.iter().filter_map(|&i| delivered[i].clone()));
            }
            ctx.hub.appended(*device, last, &handed, erasures);
        }
        Ok(())
    }

    /// `event` as a subscription delivers it: a reference to the entry
    /// given to [`Fanout::delivering`] is that entry. `None` when it cannot
    /// be handed over: a reference to an entry not given in full, or an
    /// event over [`HANDED_BYTES`].
    fn as_delivered(&self, event: &StoredEvent) -> Option<Arc<StoredEvent>> {
        if let Some(v1::subscribe_response::Event::ThreadEntry(reference)) = &event.event {
            return self.entry.clone().filter(|full| {
                matches!(&full.event, Some(v1::subscribe_response::Event::ThreadEntry(entry))
                    if entry.consult_id == reference.consult_id
                        && entry.sequence == reference.sequence)
            });
        }
        (prost::Message::encoded_len(event) <= HANDED_BYTES).then(|| Arc::new(event.clone()))
    }

    /// Adds `event` to every active device of `professional`.
    async fn add_to_devices(
        &mut self,
        ctx: &Context,
        professional: ProfessionalId,
        event: StoredEvent,
    ) -> ServiceResult<()> {
        let devices = ctx.directory.active_device_ids_of(professional).await?;
        self.add_to_each(devices, event);
        Ok(())
    }
}

/// Whether `c` is a pool request: in the inbox of its expertise's pool.
fn in_pool(c: &Consult) -> bool {
    c.addressed.is_none() && c.state == State::Requested
}

/// The professionals a change from `old` to `new` concerns (besides the
/// pool), each with the change they hear of.
fn concerned(notice: &Notice<'_>) -> BTreeMap<ProfessionalId, v1::ConsultChange> {
    let mut who = BTreeMap::new();
    for c in notice.old.into_iter().chain([notice.new]) {
        who.insert(c.owner, notice.change);
        for p in &c.participants {
            if matches!(p.standing, Standing::Active | Standing::Invited { .. }) {
                who.insert(p.professional, notice.change);
            }
        }
        if c.state == State::Requested
            && let Some(addressed) = c.addressed
        {
            who.insert(addressed, notice.change);
        }
    }
    if let Some(actor) = notice.actor {
        who.insert(actor, notice.change);
    }
    if notice.change == v1::ConsultChange::Invited {
        for p in &notice.new.participants {
            let newly = notice.new.is_invited(p.professional)
                && !notice.old.is_some_and(|old| old.is_invited(p.professional));
            if newly {
                who.insert(p.professional, v1::ConsultChange::Requested);
            }
        }
    }
    who
}

/// The specialists in whose inbox the pool request `c` is (or was).
async fn pool_inboxes(consults: &ConsultApi, c: &Consult) -> ServiceResult<Vec<ProfessionalId>> {
    let ctx = consults.context();
    let mut inboxes = Vec::new();
    let mut after = None;
    let mut consents = super::consult::Consents::default();
    loop {
        let page = ctx
            .directory
            .list_specialists(
                Some(c.expertise),
                true,
                |oin| ctx.auth.allows(oin),
                after,
                POOL_PAGE,
            )
            .await?;
        for p in &page.items {
            if consults.pool_eligible_with(c, p, &mut consents).await? {
                inboxes.push(p.id);
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(inboxes),
        }
    }
}

/// The events of `notices`, per device.
pub(super) async fn fanout(consults: &ConsultApi, notices: &[Notice<'_>]) -> ServiceResult<Fanout> {
    let ctx = consults.context();
    let occurred_at = Some(timestamp(ctx.now()));
    let mut fanout = Fanout::default();
    for notice in notices {
        let mut who = concerned(notice);
        let was = notice.old.is_some_and(in_pool);
        if was != in_pool(notice.new) {
            let pooled = if was { notice.old } else { Some(notice.new) };
            let taken = notice.change == v1::ConsultChange::Accepted;
            for p in pool_inboxes(consults, pooled.unwrap_or(notice.new)).await? {
                who.entry(p).or_insert(if taken {
                    v1::ConsultChange::Taken
                } else {
                    notice.change
                });
            }
        }
        for (professional, change) in who {
            let event = StoredEvent {
                occurred_at,
                event: Some(v1::subscribe_response::Event::Consult(v1::ConsultEvent {
                    change: change.into(),
                    consult: Some(v1::Consult {
                        consult_id: notice.new.id.to_string(),
                        ..Default::default()
                    }),
                    actor_professional_id: notice.actor.map(|a| a.to_string()).unwrap_or_default(),
                })),
                ..Default::default()
            };
            fanout.add_to_devices(ctx, professional, event).await?;
        }
    }
    Ok(fanout)
}

/// Commits `batch` with the events of `notices` in the same batch, and
/// wakes the devices' subscriptions. Device logs never conflict (their
/// appends are numbered in the transaction); a conflict on anything the
/// caller read is returned as [`StoreError::Conflict`].
pub(super) async fn commit(
    consults: &ConsultApi,
    batch: Batch,
    notices: &[Notice<'_>],
) -> ServiceResult<()> {
    let ctx = consults.context();
    let mut batch = batch;
    for notice in notices {
        forget_welcomes(ctx, &mut batch, notice).await?;
    }
    let fanout = fanout(consults, notices).await?;
    commit_fanout(ctx, batch, &fanout).await
}

/// Adds to `batch` the removal of the thread Welcomes of everyone who stops
/// taking part by the change: were they to return, the thread would be
/// theirs again only from the Welcome that adds them then, not from the old
/// one (which would show what was said while they were away).
async fn forget_welcomes(
    ctx: &Context,
    batch: &mut Batch,
    notice: &Notice<'_>,
) -> ServiceResult<()> {
    let Some(old) = notice.old else {
        return Ok(());
    };
    let still = super::thread::active_participants(notice.new);
    for gone in super::thread::active_participants(old).difference(&still) {
        for device in ctx.directory.devices_of(*gone).await? {
            ctx.threads
                .stage_forget_welcome(batch, notice.new.id, device.id);
        }
    }
    Ok(())
}

/// Commits `batch` with `fanout`'s events appended to the device logs
/// (which never conflicts: see [`crate::store::Batch::logs`]), and wakes
/// the subscriptions.
pub(super) async fn commit_fanout(
    ctx: &Context,
    mut batch: Batch,
    fanout: &Fanout,
) -> ServiceResult<()> {
    fanout.stage(ctx, &mut batch);
    Ok(fanout.commit(ctx, batch).await?)
}

/// Fills in a stored consult event for delivery to `viewer`: the consult as
/// they may see it now, or only its id and state when they may not.
pub(super) async fn fill(
    consults: &ConsultApi,
    viewer: &crate::domain::Professional,
    event: &mut v1::ConsultEvent,
) -> ServiceResult<()> {
    let Some(shown) = &event.consult else {
        return Ok(());
    };
    let id = crate::domain::consult::ConsultId::parse("consult_id", &shown.consult_id).map_err(
        |_| StoreError::Corrupt {
            space: Keyspace::Events,
            reason: "consult event names no consult".into(),
        },
    )?;
    let loaded = match consults.load(id).await {
        Ok(loaded) => loaded,
        // Gone (erased): the event says only that it changed.
        Err(ServiceError::NotFound(_)) => return Ok(()),
        Err(other) => return Err(other),
    };
    let shown = if consults.sees(&loaded.now, viewer).await? {
        super::consult_view::consult_to_proto(&loaded.now, viewer.id)
    } else {
        // Not even who did it.
        event.actor_professional_id.clear();
        let (state, suspension, outcome) = crate::store::consults::state_to_proto(loaded.now.state);
        v1::Consult {
            consult_id: id.to_string(),
            state: state.into(),
            suspension_reason: suspension.into(),
            outcome: outcome.into(),
            ..Default::default()
        }
    };
    event.consult = Some(shown);
    Ok(())
}
