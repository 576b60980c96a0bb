//! The service whose calls a later version implements: every call answers
//! UNIMPLEMENTED (tonic's generated default methods) until then.

use samenop_proto::v1::thread_service_server::ThreadService;

/// ThreadService: the MLS delivery service (not yet implemented).
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadApi;

#[tonic::async_trait]
impl ThreadService for ThreadApi {}
