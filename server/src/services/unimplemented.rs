//! The services whose calls later versions implement: every call answers
//! UNIMPLEMENTED (tonic's generated default methods) until then.

use samenop_proto::v1::{audit_service_server::AuditService, thread_service_server::ThreadService};

/// ThreadService: the MLS delivery service (not yet implemented).
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadApi;

#[tonic::async_trait]
impl ThreadService for ThreadApi {}

/// AuditService: the audit trail (not yet implemented).
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditApi;

#[tonic::async_trait]
impl AuditService for AuditApi {}
