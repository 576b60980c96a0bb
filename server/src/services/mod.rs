//! One file per gRPC service of `samenop.v1`. Each handler decodes the
//! request, identifies and authorises the caller, calls the domain and the
//! store, and encodes the answer — nothing else.

mod consult;
mod consult_view;
mod directory;
mod family;
mod unimplemented;

use std::sync::Arc;

use crate::{
    auth::Authenticator,
    clock::Clock,
    store::{consults::Consults, directory::Directory, families::Families},
};

pub use consult::ConsultApi;
pub use directory::DirectoryApi;
pub use family::FamilyApi;
pub use unimplemented::{AuditApi, ThreadApi};

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
    /// The current time.
    pub clock: Arc<dyn Clock>,
}

impl Context {
    /// The current time, at stored precision.
    pub fn now(&self) -> std::time::SystemTime {
        crate::clock::now_ms(self.clock.as_ref())
    }
}

/// Converts a time to the wire's Timestamp.
fn timestamp(time: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}
