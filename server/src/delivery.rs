//! Live delivery: wakes each device's subscription when its event log grows.
//!
//! The events themselves are durable in the store (see
//! [`crate::store::threads`]); the hub carries "the log of device D now
//! ends at N", so a subscription reads what is new from the store at its own
//! pace. A change committed on this server also hands the hub the events it
//! appended, as they are delivered (a post's entry in full, shared by every
//! device told), and a subscription takes them from there instead of reading
//! them back, when they are exactly the ones it is behind by (decision 54).
//! That is a cache: a subscription that finds anything else there reads the
//! store. Nothing is queued per subscriber beyond it: a slow one holds at
//! most [`HANDED_KEPT`] handed events and as many taken or read ahead, none
//! over [`HANDED_BYTES`] when handed over, and a fast writer never waits for
//! it.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::watch;

use crate::{domain::DeviceId, store::threads::StoredEvent};

/// Handed events kept per subscribed device, newest first kept.
pub const HANDED_KEPT: usize = 32;
/// The largest event handed over (encoded): a change with a larger one
/// (a thread entry or a Welcome) hands the devices it tells of it nothing,
/// and they read the store, so that a slow subscription holds no more than
/// a few of those.
pub const HANDED_BYTES: usize = 16 * 1024;
/// How long after it was handed over a thread entry may be delivered as
/// it was (checked when taken and at delivery): a later one is read from
/// the store, so a thread erased on another replica is not delivered from
/// here later than this.
const HANDED_FOR: Duration = Duration::from_millis(500);

/// When an event was handed over: it is delivered as handed over only
/// while [`Subscription::fresh`] says so, up to its delivery.
#[derive(Clone, Copy)]
pub struct Stamp {
    /// When it was handed over.
    at: Instant,
    /// The hub's count of thread erasures before the change that appended
    /// it committed.
    erasures: u64,
}

/// An event handed over by the change that appended it.
struct Handed {
    /// Its number in the device's log.
    number: u64,
    stamp: Stamp,
    /// The event as delivered.
    event: Arc<StoredEvent>,
}

/// Events handed over for one device, in number order.
type HandedEvents = Arc<Mutex<VecDeque<Handed>>>;

/// One device's wake-up signals.
struct Mailbox {
    /// The number of the last event in the device's log, as last notified.
    head: watch::Sender<u64>,
    /// Counts subscriptions: a newer one ends the older.
    generation: watch::Sender<u64>,
    /// Events handed over and not taken yet.
    handed: HandedEvents,
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
    /// Thread erasures committed (or maybe committed) since start: entries
    /// committed before one are no longer delivered as handed over.
    erasures: Arc<AtomicU64>,
    /// Events delivered, by where they came from.
    deliveries: Deliveries,
}

/// Where a delivered event came from, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    /// `handed` (from the change that appended it) or `read` (from the
    /// store).
    source: &'static str,
}

/// The count of delivered events, by where they came from.
#[derive(Clone)]
struct Deliveries {
    family: Family<SourceLabels, Counter>,
    handed: Counter,
    read: Counter,
}

impl Default for Deliveries {
    fn default() -> Self {
        let family = Family::<SourceLabels, Counter>::default();
        let handed = family
            .get_or_create(&SourceLabels { source: "handed" })
            .clone();
        let read = family
            .get_or_create(&SourceLabels { source: "read" })
            .clone();
        Deliveries {
            family,
            handed,
            read,
        }
    }
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
    /// The device's handed events.
    handed: HandedEvents,
    /// The hub's count of thread erasures.
    erasures: Arc<AtomicU64>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.live.dec();
        // What was handed over and not taken is not kept for nobody.
        if *self.current.borrow() == self.generation {
            self.handed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }
}

/// See [`Hub::erasing`].
pub struct Erasing<'a>(&'a Hub);

impl Drop for Erasing<'_> {
    fn drop(&mut self) {
        self.0.threads_erased();
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

    /// The events numbered `after + 1` to `last`, when they were all handed
    /// over, not too long ago and before no thread erasure; `None`
    /// otherwise (read them from the store). Events up to `after` are
    /// dropped either way: the subscription has them.
    pub fn handed(&self, after: u64, last: u64) -> Option<Vec<(u64, Arc<StoredEvent>, Stamp)>> {
        let mut handed = self.handed.lock().unwrap_or_else(PoisonError::into_inner);
        while handed.front().is_some_and(|h| h.number <= after) {
            handed.pop_front();
        }
        let wanted = usize::try_from(last.checked_sub(after)?).ok()?;
        if wanted == 0 || handed.len() < wanted {
            return None;
        }
        let whole = handed
            .iter()
            .take(wanted)
            .zip(after + 1..)
            .all(|(h, number)| h.number == number && self.fresh(h.stamp));
        if !whole {
            return None;
        }
        Some(
            handed
                .drain(..wanted)
                .map(|h| (h.number, h.event, h.stamp))
                .collect(),
        )
    }

    /// Whether an event handed over at `stamp` may still be delivered as it
    /// was handed over: less than 500 ms ago, and no thread erasure has
    /// committed here since before the change that appended it.
    pub fn fresh(&self, stamp: Stamp) -> bool {
        stamp.erasures == self.erasures.load(Ordering::Acquire) && stamp.at.elapsed() < HANDED_FOR
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
            erasures: Arc::default(),
            deliveries: Deliveries::default(),
        }
    }

    /// Registers the hub's own metrics.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "samenop_deliveries",
            "Events delivered to subscriptions, by where they came from: handed over by the change \
             that appended them on this server, or read from the store",
            self.deliveries.family.clone(),
        );
    }

    /// Counts one event delivered, `handed` over or read.
    pub fn delivered(&self, handed: bool) {
        if handed {
            self.deliveries.handed.inc();
        } else {
            self.deliveries.read.inc();
        }
    }

    /// The gauge of subscriptions alive now, for the metrics.
    pub fn live_subscriptions(&self) -> Gauge {
        self.live.clone()
    }

    /// Tells a device's subscription that its log now ends at `last`.
    pub fn notify(&self, device: DeviceId, last: u64) {
        self.appended(device, last, &[], self.erasures());
    }

    /// The count of thread erasures committed here: read it before
    /// committing a change whose events are then handed over.
    pub fn erasures(&self) -> u64 {
        self.erasures.load(Ordering::Acquire)
    }

    /// Tells a device's subscription that its log now ends at `last`, and
    /// hands over `events`, the last of the log (numbered up to `last`), as
    /// they are delivered, for a live subscription to take instead of
    /// reading them (none kept when there is none). `erasures` is
    /// [`Hub::erasures`] as read before the change committed.
    pub fn appended(
        &self,
        device: DeviceId,
        last: u64,
        events: &[Arc<StoredEvent>],
        erasures: u64,
    ) {
        let mailboxes = self
            .mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(mailbox) = mailboxes.get(&device) else {
            return;
        };
        let mut handed = mailbox
            .handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if mailbox.head.receiver_count() == 0 {
            // Handed over while the last subscription was ending: kept for
            // nobody.
            handed.clear();
        } else if let Some(first) = (last + 1).checked_sub(events.len() as u64) {
            let stamp = Stamp {
                at: Instant::now(),
                erasures,
            };
            for (number, event) in (first..).zip(events) {
                // Changes committed together may be handed over in another
                // order: each goes where its number says.
                let at_index = handed.partition_point(|h| h.number < number);
                if handed.get(at_index).is_some_and(|h| h.number == number) {
                    continue;
                }
                handed.insert(
                    at_index,
                    Handed {
                        number,
                        stamp,
                        event: event.clone(),
                    },
                );
            }
            while handed.len() > HANDED_KEPT {
                handed.pop_front();
            }
        }
        drop(handed);
        mailbox.head.send_if_modified(|head| {
            let grew = last > *head;
            *head = (*head).max(last);
            grew
        });
    }

    /// Says a change that erased threads committed, or may have: nothing
    /// handed over by a change that committed before it is delivered as
    /// handed over any more (it may be an entry now gone).
    pub fn threads_erased(&self) {
        self.erasures.fetch_add(1, Ordering::AcqRel);
    }

    /// A guard that says [`Hub::threads_erased`] when dropped: take it
    /// before committing an erasure, so that it is said whatever the
    /// commit's outcome, even when the call committing it is dropped (its
    /// batch may commit anyway).
    pub fn erasing(&self) -> Erasing<'_> {
        Erasing(self)
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
            handed: HandedEvents::default(),
        });
        // What was handed over for an earlier subscription is not kept for
        // this one, which reads from its own cursor.
        mailbox
            .handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
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
            handed: mailbox.handed.clone(),
            erasures: self.erasures.clone(),
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

#[cfg(test)]
mod tests {
    use samenop_proto::v1;

    use super::*;

    fn device() -> DeviceId {
        DeviceId::from_bytes(*uuid::Uuid::now_v7().as_bytes())
    }

    /// An event whose content says which number it was handed over as.
    fn event(number: u64) -> Arc<StoredEvent> {
        Arc::new(StoredEvent {
            event: Some(v1::subscribe_response::Event::ThreadEntry(
                v1::ThreadEntry {
                    sequence: number,
                    ..Default::default()
                },
            )),
            ..Default::default()
        })
    }

    fn numbers(handed: Option<Vec<(u64, Arc<StoredEvent>, Stamp)>>) -> Option<Vec<u64>> {
        handed.map(|events| {
            events
                .into_iter()
                .map(|(number, event, _)| match &event.event {
                    Some(v1::subscribe_response::Event::ThreadEntry(e)) => {
                        assert_eq!(e.sequence, number, "the event handed over as {number}");
                        number
                    }
                    _ => panic!("not an event made here"),
                })
                .collect()
        })
    }

    #[test]
    fn handed_events_are_taken_once_in_order_and_only_all_together() {
        let hub = Hub::new();
        let d = device();
        let mut s = hub.subscribe(d);
        hub.appended(d, 3, &[event(2), event(3)], hub.erasures());
        assert_eq!(s.known(), 3);
        // Event 1 was never handed over: the store has it.
        assert_eq!(numbers(s.handed(0, 3)), None);
        assert_eq!(numbers(s.handed(1, 3)), Some(vec![2, 3]));
        assert_eq!(numbers(s.handed(3, 3)), None, "taken once");
        // Two changes handed over in the other order than their numbers.
        hub.appended(d, 6, &[event(6)], hub.erasures());
        assert_eq!(numbers(s.handed(3, 6)), None);
        hub.appended(d, 5, &[event(4), event(5)], hub.erasures());
        assert_eq!(s.known(), 6, "the head never goes back");
        assert_eq!(numbers(s.handed(3, 6)), Some(vec![4, 5, 6]));
        // Woken by a change that handed nothing over (another replica's).
        hub.notify(d, 7);
        assert_eq!(numbers(s.handed(6, 7)), None);
    }

    #[test]
    fn what_a_subscription_is_behind_by_beyond_what_is_kept_is_read() {
        let hub = Hub::new();
        let d = device();
        let s = hub.subscribe(d);
        let events: Vec<_> = (1..=40).map(event).collect();
        hub.appended(d, 40, &events, hub.erasures());
        assert_eq!(numbers(s.handed(0, 40)), None);
        let kept = 40 - HANDED_KEPT as u64;
        assert_eq!(
            numbers(s.handed(kept, 40)),
            Some((kept + 1..=40).collect::<Vec<_>>())
        );
    }

    #[test]
    fn nothing_is_kept_without_a_subscription_nor_for_the_next() {
        let hub = Hub::new();
        let d = device();
        let first = hub.subscribe(d);
        drop(first);
        hub.appended(d, 1, &[event(1)], hub.erasures());
        let s = hub.subscribe(d);
        assert_eq!(numbers(s.handed(0, 1)), None, "no subscription was alive");
        hub.appended(d, 2, &[event(2)], hub.erasures());
        let newer = hub.subscribe(d);
        assert_eq!(numbers(newer.handed(1, 2)), None, "kept for the older one");
        assert_eq!(numbers(s.handed(1, 2)), None);
    }

    #[test]
    fn an_erasure_or_time_sends_subscriptions_to_the_store() {
        let hub = Hub::new();
        let d = device();
        let s = hub.subscribe(d);
        hub.appended(d, 1, &[event(1)], hub.erasures());
        hub.threads_erased();
        assert_eq!(
            numbers(s.handed(0, 1)),
            None,
            "handed over before an erasure"
        );
        // Taken before an erasure, delivered after it.
        hub.appended(d, 2, &[event(2)], hub.erasures());
        let taken = s.handed(1, 2).expect("taken");
        assert!(s.fresh(taken[0].2));
        hub.threads_erased();
        assert!(
            !s.fresh(taken[0].2),
            "an erasure between taking and delivering"
        );
        // Committed before an erasure, handed over after it (the erasure
        // said by its guard, as a dropped call says it too).
        let before = hub.erasures();
        drop(hub.erasing());
        hub.appended(d, 3, &[event(3)], before);
        assert_eq!(numbers(s.handed(2, 3)), None, "committed before an erasure");
        hub.appended(d, 4, &[event(4)], hub.erasures());
        assert_eq!(numbers(s.handed(3, 4)), Some(vec![4]), "after it");
        hub.appended(d, 5, &[event(5)], hub.erasures());
        std::thread::sleep(HANDED_FOR + Duration::from_millis(50));
        assert_eq!(numbers(s.handed(4, 5)), None, "handed over too long ago");
    }

    #[test]
    fn what_an_ended_subscription_did_not_take_is_let_go() {
        let hub = Hub::new();
        let d = device();
        let kept = |hub: &Hub| {
            hub.mailboxes.lock().unwrap()[&d]
                .handed
                .lock()
                .unwrap()
                .len()
        };
        let s = hub.subscribe(d);
        hub.appended(d, 2, &[event(1), event(2)], hub.erasures());
        assert_eq!(kept(&hub), 2);
        drop(s);
        assert_eq!(kept(&hub), 0);
        hub.appended(d, 3, &[event(3)], hub.erasures());
        assert_eq!(kept(&hub), 0, "kept for no subscription");
    }
}
