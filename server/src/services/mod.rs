//! One file per gRPC service of `samenop.v1`. Each handler decodes the
//! request, identifies and authorises the caller, calls the domain and the
//! store, and encodes the answer — nothing else.

mod attachments;
mod audit;
mod audit_json;
mod consult;
mod consult_view;
mod directory;
mod family;
mod family_rights;
mod key_packages;
mod notices;
mod thread;

use std::sync::Arc;

use crate::{
    auth::Authenticator,
    clock::Clock,
    delivery::Hub,
    store::{
        attachments::Attachments, audit::Trail, consults::Consults, directory::Directory,
        families::Families, threads::Threads,
    },
};

pub use audit::{AuditApi, verification_to_proto};
pub use consult::ConsultApi;
pub use directory::DirectoryApi;
pub use family::FamilyApi;
pub use thread::ThreadApi;

/// What every service handler needs.
#[derive(Clone)]
pub struct Context {
    /// Identifies callers.
    pub auth: Authenticator,
    /// Professionals and devices.
    pub directory: Directory,
    /// Families and consents.
    pub families: Families,
    /// Consults.
    pub consults: Consults,
    /// Threads, key packages and device event logs.
    pub threads: Threads,
    /// Encrypted thread attachments.
    pub attachments: Attachments,
    /// Wakes device subscriptions.
    pub hub: Hub,
    /// The audit trail, for reading (every change writes its own events).
    pub trail: Trail,
    /// The key that signs the trail's checkpoints.
    pub audit_key: Arc<crate::audit_key::AuditKey>,
    /// The current time.
    pub clock: Arc<dyn Clock>,
    /// The store itself, for what spans its typed parts (the leases of the
    /// periodic work).
    pub store: Arc<dyn crate::store::Store>,
}

impl Context {
    /// The current time, at stored precision.
    pub fn now(&self) -> std::time::SystemTime {
        crate::clock::now_ms(self.clock.as_ref())
    }
}

/// One page of an in-memory listing: the items after the one whose key is
/// `after` (from the start when `None`, nothing when the key is unknown),
/// at most `size`, and the token of the next page (empty after the last).
fn page_after<T, K: PartialEq + std::fmt::Display>(
    items: &[T],
    after: Option<K>,
    size: usize,
    key: impl Fn(&T) -> K,
) -> (&[T], String) {
    let start = after.map_or(0, |after| {
        items
            .iter()
            .position(|item| key(item) == after)
            .map_or(items.len(), |at| at + 1)
    });
    let end = start.saturating_add(size).min(items.len());
    let page = &items[start..end];
    let next = match page.last() {
        Some(last) if end < items.len() => key(last).to_string(),
        _ => String::new(),
    };
    (page, next)
}

/// Converts a time to the wire's Timestamp.
fn timestamp(time: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}
