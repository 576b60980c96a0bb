//! The services whose calls later versions implement: every call answers
//! UNIMPLEMENTED (tonic's generated default methods) until then.

use samenop_proto::v1::{
    audit_service_server::AuditService, consult_service_server::ConsultService,
    family_service_server::FamilyService, thread_service_server::ThreadService,
};

/// FamilyService: families, consent (not yet implemented).
#[derive(Debug, Clone, Copy, Default)]
pub struct FamilyApi;

#[tonic::async_trait]
impl FamilyService for FamilyApi {}

/// ConsultService: consults and their routing (not yet implemented).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsultApi;

#[tonic::async_trait]
impl ConsultService for ConsultApi {}

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
