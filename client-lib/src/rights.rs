//! A family's data rights: everything the server holds about it, and its
//! erasure (AuditService).

use std::time::SystemTime;

use samenop_proto::v1::{self, audit_service_client::AuditServiceClient};
use uuid::Uuid;

use crate::{
    Client,
    audit::AuditEvent,
    consult::Consult,
    error::{ClientError, Result},
    family::{Consent, Family},
    types::{required, time, uuid},
};

/// What the server holds of one consult's thread: metadata only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadHeld {
    /// The consult.
    pub consult: Uuid,
    /// Messages stored (commits and application messages).
    pub messages: u64,
    /// Attachments stored.
    pub attachments: u32,
    /// Stored ciphertext in bytes, attachments included.
    pub stored_bytes: u64,
}

/// Everything the server holds about a family.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyExport {
    /// The family record.
    pub family: Family,
    /// Its consents.
    pub consents: Vec<Consent>,
    /// Its consults, in full.
    pub consults: Vec<Consult>,
    /// What their threads hold.
    pub threads: Vec<ThreadHeld>,
    /// The audit events concerning it.
    pub audit: Vec<AuditEvent>,
}

/// Why a family is erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasureReason {
    /// The family asked for it (AVG/GDPR art. 17).
    DataSubjectRequest,
    /// The family was registered in error.
    RegisteredInError,
    /// The data is no longer needed for its purpose.
    NoLongerNeeded,
}

/// What an erasure removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// When.
    pub erased_at: SystemTime,
    /// Consents erased.
    pub consents: u32,
    /// Consults erased, with their threads and attachments.
    pub consults: u32,
    /// The audit event that records it.
    pub audit_event: Uuid,
}

impl Client {
    /// Everything the server holds about a family, for a data subject's
    /// access request (its contact person, or a PRIVACY_OFFICER of their
    /// organisation).
    ///
    /// # Errors
    /// NotFound for anyone else.
    pub async fn export_family_data(&self, family: Uuid) -> Result<FamilyExport> {
        use v1::export_family_data_response::Part;
        let request = v1::ExportFamilyDataRequest {
            family_id: family.to_string(),
        };
        let mut stream = AuditServiceClient::new(self.channel())
            .export_family_data(self.request(request)?)
            .await?
            .into_inner();
        let mut family = None;
        let mut export_parts = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        while let Some(part) = stream.message().await? {
            match part.part {
                Some(Part::Family(f)) => family = Some(Family::try_from(f)?),
                Some(Part::Consent(c)) => export_parts.0.push(Consent::try_from(c)?),
                Some(Part::Consult(c)) => export_parts.1.push(Consult::try_from(c)?),
                Some(Part::Thread(t)) => export_parts.2.push(ThreadHeld {
                    consult: uuid("consult_id", &t.consult_id)?,
                    messages: t.message_count,
                    attachments: t.attachment_count,
                    stored_bytes: t.stored_bytes,
                }),
                Some(Part::AuditEvent(e)) => export_parts.3.push(AuditEvent::try_from(e)?),
                None => return Err(ClientError::Protocol("an empty export part".into())),
            }
        }
        let (consents, consults, threads, audit) = export_parts;
        Ok(FamilyExport {
            family: required("the family", family)?,
            consents,
            consults,
            threads,
            audit,
        })
    }

    /// Erases a family: its record, consents, consults, threads and
    /// attachments, leaving only the audit trail. Irreversible. For its
    /// contact person, once every consult of it has ended.
    ///
    /// # Errors
    /// NotFound for anyone else; FailedPrecondition while a consult is open
    /// or suspended.
    pub async fn erase_family(
        &self,
        family: Uuid,
        reason: ErasureReason,
        evidence_reference: &str,
    ) -> Result<Erasure> {
        let reason = match reason {
            ErasureReason::DataSubjectRequest => v1::ErasureReason::DataSubjectRequest,
            ErasureReason::RegisteredInError => v1::ErasureReason::RegisteredInError,
            ErasureReason::NoLongerNeeded => v1::ErasureReason::NoLongerNeeded,
        };
        let request = v1::EraseFamilyRequest {
            family_id: family.to_string(),
            confirm_family_id: family.to_string(),
            reason: reason as i32,
            evidence_reference: evidence_reference.to_owned(),
        };
        let answer = AuditServiceClient::new(self.channel())
            .erase_family(self.request(request)?)
            .await?
            .into_inner();
        Ok(Erasure {
            erased_at: required("erased_at", time(answer.erased_at))?,
            consents: answer.consents_erased,
            consults: answer.consults_erased,
            audit_event: uuid("audit_event_id", &answer.audit_event_id)?,
        })
    }
}
