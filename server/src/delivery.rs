//! Live delivery: wakes each device's subscription when its event log grows.
//!
//! The events themselves are durable in the store (see
//! [`crate::store::threads`]); the hub only carries "the log of device D now
//! ends at N", so a subscription reads what is new from the store at its own
//! pace. Nothing is queued per subscriber: a slow one holds at most its
//! stream's small channel of events in memory, and a fast writer never waits
//! for it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use crate::domain::DeviceId;

/// One device's wake-up signals.
struct Mailbox {
    /// The number of the last event in the device's log, as last notified.
    head: watch::Sender<u64>,
    /// Counts subscriptions: a newer one ends the older.
    generation: watch::Sender<u64>,
}

/// The hub: one mailbox per device that ever subscribed since start.
#[derive(Clone, Default)]
pub struct Hub {
    /// Mailboxes by device.
    mailboxes: Arc<Mutex<HashMap<DeviceId, Mailbox>>>,
    /// Set at shutdown: every subscription ends.
    closing: Arc<watch::Sender<bool>>,
    /// Subscriptions alive now.
    live: Gauge,
}

/// A device's subscription as the hub sees it.
pub struct Subscription {
    /// Changes when the device's log grows.
    head: watch::Receiver<u64>,
    /// This subscription's generation.
    generation: u64,
    /// Changes when a newer subscription starts.
    current: watch::Receiver<u64>,
    /// Changes at shutdown.
    closing: watch::Receiver<bool>,
    /// The hub's count of live subscriptions, less one when this ends.
    live: Gauge,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.live.dec();
    }
}

/// Why a subscription must stop waiting.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// The log grew (or may have): read it.
    Grew,
    /// A newer subscription for the same device started.
    Replaced,
    /// The server is shutting down.
    Closing,
}

impl Subscription {
    /// The number of the device's last event as last notified. Marks it
    /// seen: [`Subscription::wait`] returns only for growth past it (a
    /// plain look would leave it unseen, and the next wait would return at
    /// once for growth already read).
    pub fn known(&mut self) -> u64 {
        *self.head.borrow_and_update()
    }

    /// Waits until the device's log grows, this subscription is replaced or
    /// the server shuts down.
    pub async fn wait(&mut self) -> Wake {
        if *self.current.borrow() != self.generation {
            return Wake::Replaced;
        }
        if *self.closing.borrow() {
            return Wake::Closing;
        }
        tokio::select! {
            changed = self.head.changed() => match changed {
                Ok(()) => Wake::Grew,
                Err(_) => Wake::Closing,
            },
            _ = self.current.changed() => Wake::Replaced,
            _ = self.closing.changed() => Wake::Closing,
        }
    }
}

impl Hub {
    /// A new hub.
    pub fn new() -> Self {
        Hub {
            mailboxes: Arc::default(),
            closing: Arc::new(watch::channel(false).0),
            live: Gauge::default(),
        }
    }

    /// The gauge of subscriptions alive now, for the metrics.
    pub fn live_subscriptions(&self) -> Gauge {
        self.live.clone()
    }

    /// Tells a device's subscription that its log now ends at `last`.
    pub fn notify(&self, device: DeviceId, last: u64) {
        let mailboxes = self
            .mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(mailbox) = mailboxes.get(&device) {
            mailbox.head.send_if_modified(|head| {
                let grew = last > *head;
                *head = (*head).max(last);
                grew
            });
        }
    }

    /// Starts a subscription for `device`, ending any older one. Take it
    /// before reading the log, so no growth after the read goes unnoticed.
    pub fn subscribe(&self, device: DeviceId) -> Subscription {
        let mut mailboxes = self
            .mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mailbox = mailboxes.entry(device).or_insert_with(|| Mailbox {
            head: watch::channel(0).0,
            generation: watch::channel(0).0,
        });
        let mut generation = 0;
        mailbox.generation.send_modify(|current| {
            *current += 1;
            generation = *current;
        });
        let mut head = mailbox.head.subscribe();
        head.mark_unchanged();
        self.live.inc();
        Subscription {
            head,
            generation,
            current: mailbox.generation.subscribe(),
            closing: self.closing.subscribe(),
            live: self.live.clone(),
        }
    }

    /// The devices with a subscription alive now.
    pub fn live_devices(&self) -> Vec<DeviceId> {
        self.mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, mailbox)| mailbox.head.receiver_count() > 0)
            .map(|(device, _)| *device)
            .collect()
    }

    /// Ends every subscription (at shutdown): clients resume elsewhere or
    /// later from their cursor.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}

/// Wakes this replica's subscriptions for what other replicas appended to
/// their devices' logs: each time the store says others appended (their
/// payload-free wake-up, or its periodic look), reads the log heads of the
/// devices subscribed here, in steps, and tells the hub. Runs until the
/// store stops saying.
pub(crate) async fn follow_others(
    store: std::sync::Arc<dyn crate::store::Store>,
    hub: Hub,
    mut appended: watch::Receiver<u64>,
) {
    const STEP: usize = 1000;
    while appended.changed().await.is_ok() {
        let devices = hub.live_devices();
        for chunk in devices.chunks(STEP) {
            let keys: Vec<Vec<u8>> = chunk.iter().map(|d| d.as_bytes().to_vec()).collect();
            match store
                .get_many(crate::store::Keyspace::EventHeads, &keys)
                .await
            {
                Ok(heads) => {
                    for (device, head) in chunk.iter().zip(heads) {
                        let last = head
                            .and_then(|raw| <[u8; 8]>::try_from(raw.as_slice()).ok())
                            .map_or(0, u64::from_be_bytes);
                        hub.notify(*device, last);
                    }
                }
                Err(err) => {
                    tracing::warn!(cause = %err, "cannot read what other replicas appended; next look");
                    break;
                }
            }
        }
    }
}
