//! The devices the agent holds, one per professional it acts for, and each
//! device's follower.
//!
//! A device is opened (created and registered at the server the first
//! time) when a call first names its professional, and again for every
//! device directory at start. Each has one follower: the device's only
//! subscription at the server. It applies what arrives (thread messages,
//! Welcomes), keeps the groups in line as `Messenger::follow` says (the
//! owner's device adds an accepted specialist's devices; the owner's thread
//! is made when its first specialist accepts), and appends what callers see
//! to the [`Log`], with the server cursor, in one transaction.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use samenop_client::{
    Client, ClientError,
    consult::ConsultState,
    mls::{Event, EventKind, Messenger},
};
use samenop_proto::{agent::v1 as agent, v1};
use tokio::sync::{OnceCell, watch};
use tracing::{info, warn};
use uuid::Uuid;

use crate::{
    log::{Batch, Log},
    status::from_client,
};

/// One professional's device at this agent.
pub(crate) struct Device {
    /// The professional.
    pub(crate) professional: Uuid,
    /// The organisation's connection, acting as the professional.
    pub(crate) client: Client,
    /// The device.
    pub(crate) messenger: Messenger,
    /// The position of the last event logged for the professional.
    pub(crate) latest: watch::Sender<u64>,
}

/// Every device of the agent.
pub(crate) struct Devices {
    /// The organisation's connection.
    client: Client,
    /// Where the devices' state lives: one directory per professional.
    dir: PathBuf,
    /// The events kept for callers.
    pub(crate) log: Arc<Log>,
    /// The devices, opened once each.
    open: Mutex<HashMap<Uuid, Arc<OnceCell<Arc<Device>>>>>,
    /// Turns true at shutdown: followers stop.
    stop: watch::Receiver<bool>,
}

/// How long a follower waits at most before subscribing again.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Devices {
    /// The devices under `dir`, logging to `log`.
    pub(crate) fn new(
        client: Client,
        dir: PathBuf,
        log: Arc<Log>,
        stop: watch::Receiver<bool>,
    ) -> Arc<Devices> {
        Arc::new(Devices {
            client,
            dir,
            log,
            open: Mutex::default(),
            stop,
        })
    }

    /// Opens every device that has a directory, so their followers run
    /// from the start; a device the server cannot be asked about now is
    /// tried again until it opens or the agent stops.
    pub(crate) fn resume_all(self: &Arc<Self>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Some(professional) = entry
                .file_name()
                .to_str()
                .and_then(|n| Uuid::try_parse(n).ok())
            else {
                continue;
            };
            let devices = Arc::clone(self);
            tokio::spawn(async move {
                let mut wait = Duration::from_millis(250);
                let mut stop = devices.stop.clone();
                loop {
                    match devices.get(professional).await {
                        Ok(_) => return,
                        Err(status) => {
                            warn!(%professional, error = %status.message(), "device not opened yet");
                        }
                    }
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            });
        }
    }

    /// The device of `professional`, opened (and on first use created and
    /// registered) once.
    ///
    /// # Errors
    /// The server's refusal (an unknown professional, one of another
    /// organisation), or the device's state that cannot be read.
    pub(crate) async fn get(
        self: &Arc<Self>,
        professional: Uuid,
    ) -> Result<Arc<Device>, tonic::Status> {
        let cell = {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(open.entry(professional).or_default())
        };
        cell.get_or_try_init(|| self.open_device(professional))
            .await
            .cloned()
    }

    async fn open_device(
        self: &Arc<Self>,
        professional: Uuid,
    ) -> Result<Arc<Device>, tonic::Status> {
        let client = self.client.acting_as(professional);
        // Who it is first, so a mistyped id makes no directory.
        client
            .professional_with_devices(professional)
            .await
            .map_err(from_client)?;
        let dir = self.dir.join(professional.to_string());
        crate::fsutil::private_dir(&self.dir)
            .map_err(|e| tonic::Status::internal(format!("the agent's devices directory: {e}")))?;
        let label = format!("samenop-agent ({})", crate::fsutil::host());
        let messenger = Messenger::open(&client, &dir, &label)
            .await
            .map_err(from_client)?;
        // Others claim a key package each time they add this device; the
        // device tops up after each Welcome, and here at every start.
        if let Err(err) = messenger.top_up_key_packages().await {
            warn!(%professional, error = %err, "key packages not topped up yet");
        }
        let last = self
            .log
            .last(professional)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let device = Arc::new(Device {
            professional,
            client,
            messenger,
            latest: watch::Sender::new(last),
        });
        info!(%professional, device = %device.messenger.device(), "device open");
        tokio::spawn(follow(
            Arc::clone(&device),
            Arc::clone(&self.log),
            self.stop.clone(),
        ));
        Ok(device)
    }
}

/// Whether a failure is passing: the same event is handled again later.
/// Only what the same event would meet again is final (a message that
/// fails verification, a consult that refuses, a device removed); a
/// timeout, an unreachable server, a full disk pass.
fn passing(err: &ClientError) -> bool {
    !matches!(
        err,
        ClientError::Rejected(_)
            | ClientError::GroupMismatch(_)
            | ClientError::FailedPrecondition(_)
            | ClientError::NotFound(_)
            | ClientError::PermissionDenied(_)
            | ClientError::InvalidArgument(_)
            | ClientError::InvalidInput(_)
            | ClientError::AlreadyExists(_)
            | ClientError::Protocol(_)
            | ClientError::NoProfessional
    )
}

/// The follower of one device: its subscription at the server, for as
/// long as the agent runs.
async fn follow(device: Arc<Device>, log: Arc<Log>, mut stop: watch::Receiver<bool>) {
    let professional = device.professional;
    let mut wait = Duration::from_millis(250);
    loop {
        if *stop.borrow() {
            return;
        }
        // Without the cursor the server would replay from where it trimmed,
        // and callers would see events again: wait until it reads.
        let cursor = match log.server_cursor(professional) {
            Ok(cursor) => cursor,
            Err(err) => {
                warn!(%professional, error = %err, "cannot read where the subscription stands");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
                wait = (wait * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let subscribed = tokio::select! {
            s = device.messenger.subscribe(cursor.as_deref()) => s,
            _ = stop.changed() => return,
        };
        match subscribed {
            Ok(mut events) => loop {
                let next = tokio::select! {
                    n = events.next() => n,
                    _ = stop.changed() => return,
                };
                match next {
                    Ok(Some(event)) => match handle(&device, &log, &event).await {
                        Ok(batch) => match log.append(professional, batch, &event.cursor) {
                            Ok(last) => {
                                device.latest.send_replace(last);
                                wait = Duration::from_millis(250);
                            }
                            Err(err) => {
                                warn!(%professional, error = %err, "event not kept; trying again");
                                break;
                            }
                        },
                        Err(err) => {
                            warn!(%professional, error = %err, "event not handled yet; trying again");
                            break;
                        }
                    },
                    Ok(None) => break,
                    Err(err) => {
                        info!(%professional, error = %err, "subscription ended; resuming");
                        break;
                    }
                }
            },
            Err(err) => warn!(%professional, error = %err, "cannot subscribe yet"),
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}

/// What one server event becomes for callers; `Err` for a passing failure
/// (the event is handled again after resubscribing).
async fn handle(device: &Device, log: &Log, event: &Event) -> Result<Batch, ClientError> {
    let messenger = &device.messenger;
    let mut batch = Batch {
        occurred_at: event
            .wire()
            .occurred_at
            .and_then(|t| SystemTime::try_from(t).ok()),
        ..Batch::default()
    };
    // A consult event goes to callers as the server sent it, one this
    // version does not know too.
    if let Some(v1::subscribe_response::Event::Consult(raw)) = &event.wire().event {
        batch
            .events
            .push(agent::watch_response::Event::Consult(raw.clone()));
    }
    match &event.kind {
        EventKind::Consult(change) => {
            let owner_of_open = change.view.as_ref().is_some_and(|view| {
                view.owner == device.professional
                    && matches!(view.state, ConsultState::Requested | ConsultState::Accepted)
            });
            // The owner's device makes the thread when it is first needed.
            if owner_of_open && !messenger.joined(change.consult).await? {
                match messenger.create_thread(change.consult).await {
                    Ok(()) | Err(ClientError::FailedPrecondition(_)) => {}
                    Err(err) if passing(&err) => return Err(err),
                    Err(err) => warn!(consult = %change.consult, error = %err, "thread not made"),
                }
            }
            match messenger.follow(change).await {
                Ok(Some(m)) if !m.added.is_empty() || !m.removed.is_empty() => {
                    batch.events.push(agent::watch_response::Event::Membership(
                        agent::MembershipEvent {
                            consult_id: change.consult.to_string(),
                            joined: false,
                            added_device_ids: m.added.iter().map(ToString::to_string).collect(),
                            removed_device_ids: m.removed.iter().map(ToString::to_string).collect(),
                        },
                    ));
                }
                Ok(_) => {}
                Err(err) if passing(&err) => return Err(err),
                Err(err) => {
                    warn!(consult = %change.consult, error = %err, "the thread's members are not in line");
                }
            }
        }
        EventKind::ThreadEntry(entry) => {
            let Ok(consult) = Uuid::try_parse(&entry.consult_id) else {
                return Ok(batch);
            };
            match messenger.apply(consult, vec![entry.clone()]).await {
                Ok(_) => {}
                Err(err) if passing(&err) => return Err(err),
                Err(err) => {
                    warn!(%consult, sequence = entry.sequence, error = %err, "thread entry not applied")
                }
            }
            new_messages(device, log, consult, &mut batch).await?;
        }
        EventKind::Welcome { consult, .. } => {
            match messenger.catch_up(*consult).await {
                Ok(_) => {}
                Err(err) if passing(&err) => return Err(err),
                Err(err) => warn!(%consult, error = %err, "Welcome not taken"),
            }
            if messenger.joined(*consult).await? {
                batch.events.push(agent::watch_response::Event::Membership(
                    agent::MembershipEvent {
                        consult_id: consult.to_string(),
                        joined: true,
                        added_device_ids: Vec::new(),
                        removed_device_ids: Vec::new(),
                    },
                ));
            }
            new_messages(device, log, *consult, &mut batch).await?;
        }
        _ => {}
    }
    Ok(batch)
}

/// Adds the messages of others the device stored after the last one
/// logged for `consult`, so each is logged once however often an event is
/// handled.
async fn new_messages(
    device: &Device,
    log: &Log,
    consult: Uuid,
    batch: &mut Batch,
) -> Result<(), ClientError> {
    let after = log
        .logged(device.professional, consult)
        .map_err(|e| ClientError::LocalState(e.to_string()))?;
    let messages = device
        .messenger
        .messages_after(consult, after, usize::MAX)
        .await?;
    if let Some(last) = messages.last() {
        batch.logged.push((consult, last.sequence));
    }
    batch.events.extend(
        messages
            .iter()
            .filter(|m| !m.own)
            .map(|m| agent::watch_response::Event::Message(crate::status::message(m))),
    );
    Ok(())
}
