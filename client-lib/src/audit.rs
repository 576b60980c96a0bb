//! Audit calls: the caller's share of the audit trail, and its verification.
//!
//! A PRIVACY_OFFICER reads the events of their organisation's professionals
//! and of the families their organisation leads; a CONTACT_PERSON those of
//! the families they lead.

use std::time::SystemTime;

use samenop_proto::v1::{self, audit_service_client::AuditServiceClient};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{
    Client,
    consult::{LegalGround, ground_from},
    error::{ClientError, Result},
    types::{Expertise, Role, required, time, uuid},
};

/// Whether an audited action was performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Allowed and performed.
    Allowed,
    /// Refused by authorisation or for want of a legal basis.
    Denied,
    /// Allowed, but not performed (bad input, wrong state, a limit).
    Failed,
}

/// The kind of an object an event concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A family (its pseudonymous id).
    Family,
    /// A member of a family.
    FamilyMember,
    /// A consult.
    Consult,
    /// A consent.
    Consent,
    /// A professional.
    Professional,
    /// A device.
    Device,
    /// An attachment.
    Attachment,
    /// Another audit event.
    AuditEvent,
}

/// Who acted, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The server acted by itself.
    pub by_server: bool,
    /// The acting professional, when identified.
    pub professional: Option<Uuid>,
    /// The OIN of the calling certificate's organisation, when it had one.
    pub organisation_oin: String,
    /// The role the call was authorised under.
    pub role: Option<Role>,
    /// The professional on whose behalf the actor acted, when different.
    pub on_behalf_of: Option<Uuid>,
    /// SHA-256 of the client certificate, lower-case hex.
    pub certificate_fingerprint: String,
    /// The caller's address and port, as the server saw it.
    pub network_address: String,
}

/// One event of the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Its id.
    pub id: Uuid,
    /// Its place in the chain, from 1.
    pub sequence: u64,
    /// The gRPC method ("samenop.v1.ConsultService/OpenConsult") or the
    /// server's own action ("server/…").
    pub action: String,
    /// When it happened.
    pub occurred_at: Option<SystemTime>,
    /// Whether it was performed.
    pub outcome: Outcome,
    /// The status code name of the answer ("OK", "NOT_FOUND", …).
    pub status_code: String,
    /// Why a call was denied or failed.
    pub outcome_reason: String,
    /// Who acted.
    pub actor: Actor,
    /// The objects involved.
    pub objects: Vec<(ObjectKind, String)>,
    /// The legal ground the action rested on, when one applies.
    pub ground: Option<LegalGround>,
    /// The ground is one without consent, marked for review.
    pub flagged_for_review: bool,
    /// The purpose, by its protocol name ("PURPOSE_CONSULTATION").
    pub purpose: String,
    /// A short detail the server wrote (e.g. what was withheld or erased).
    pub detail: String,
    /// The request id of the call.
    pub request_id: String,
    /// The previous event's hash.
    pub previous_hash: Vec<u8>,
    /// This event's hash.
    pub hash: Vec<u8>,
}

impl AuditEvent {
    /// Whether the event concerns the object `id` of kind `kind`.
    pub fn concerns(&self, kind: ObjectKind, id: impl std::fmt::Display) -> bool {
        let id = id.to_string();
        self.objects.iter().any(|(k, o)| *k == kind && *o == id)
    }
}

/// Which events to read; the filters combine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events concerning this family.
    pub family: Option<Uuid>,
    /// Only events concerning this consult.
    pub consult: Option<Uuid>,
    /// Only events acted by or concerning this professional.
    pub professional: Option<Uuid>,
    /// Only events from this time on.
    pub start: Option<SystemTime>,
    /// Only events before this time.
    pub end: Option<SystemTime>,
    /// Only events with this outcome.
    pub outcome: Option<Outcome>,
}

impl AuditFilter {
    fn to_proto(&self) -> v1::AuditFilter {
        let text = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
        v1::AuditFilter {
            family_id: text(self.family),
            consult_id: text(self.consult),
            professional_id: text(self.professional),
            start_time: self.start.map(prost_types::Timestamp::from),
            end_time: self.end.map(prost_types::Timestamp::from),
            outcome: self.outcome.map_or(0, |o| outcome_to(o) as i32),
        }
    }
}

/// A family's transparency view.
#[derive(Debug, Clone, PartialEq)]
pub struct Transparency {
    /// The consultations that may be shown, oldest first.
    pub entries: Vec<Consulted>,
    /// How many consultations were withheld as safety-sensitive.
    pub withheld: u32,
}

/// One organisation's part in a consultation about the family.
#[derive(Debug, Clone, PartialEq)]
pub struct Consulted {
    /// When it was consulted (its specialist accepted).
    pub at: SystemTime,
    /// The organisation's OIN.
    pub organisation_oin: String,
    /// The expertise consulted.
    pub expertise: Expertise,
    /// The basis it rested on.
    pub ground: LegalGround,
    /// When its part ended, if it did.
    pub ended_at: Option<SystemTime>,
}

/// An export of audit events as JSON lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditExport {
    /// One JSON object per event, per line.
    pub json_lines: String,
    /// The newest signed checkpoint: the sequence it covers and the audit
    /// public key.
    pub checkpoint: Option<(u64, Vec<u8>)>,
}

/// The result of verifying the whole trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Every event verified.
    pub ok: bool,
    /// How many events verified.
    pub events_checked: u64,
    /// The last sequence of the trail.
    pub last_sequence: u64,
    /// When broken: the first broken event.
    pub first_broken: Option<u64>,
    /// When broken: the fault, by its protocol name.
    pub fault: String,
    /// When broken: what is wrong, in words.
    pub detail: String,
    /// How many signed checkpoints were checked.
    pub checkpoints_checked: u64,
    /// The newest checkpoint that verified: the sequence it covers and the
    /// audit public key (32 bytes) it was signed with, to compare with the
    /// key the operator published.
    pub latest_checkpoint: Option<(u64, Vec<u8>)>,
}

fn outcome_from(value: i32) -> Result<Outcome> {
    match v1::AuditOutcome::try_from(value) {
        Ok(v1::AuditOutcome::Allowed) => Ok(Outcome::Allowed),
        Ok(v1::AuditOutcome::Denied) => Ok(Outcome::Denied),
        Ok(v1::AuditOutcome::Failed) => Ok(Outcome::Failed),
        _ => Err(ClientError::Protocol(format!(
            "unknown audit outcome {value}"
        ))),
    }
}

fn outcome_to(outcome: Outcome) -> v1::AuditOutcome {
    match outcome {
        Outcome::Allowed => v1::AuditOutcome::Allowed,
        Outcome::Denied => v1::AuditOutcome::Denied,
        Outcome::Failed => v1::AuditOutcome::Failed,
    }
}

fn object_from(raw: &v1::AuditObject) -> Result<(ObjectKind, String)> {
    use v1::AuditObjectType as T;
    let kind = match T::try_from(raw.object_type) {
        Ok(T::Family) => ObjectKind::Family,
        Ok(T::FamilyMember) => ObjectKind::FamilyMember,
        Ok(T::Consult) => ObjectKind::Consult,
        Ok(T::Consent) => ObjectKind::Consent,
        Ok(T::Professional) => ObjectKind::Professional,
        Ok(T::Device) => ObjectKind::Device,
        Ok(T::Attachment) => ObjectKind::Attachment,
        Ok(T::AuditEvent) => ObjectKind::AuditEvent,
        Ok(T::Unspecified) | Err(_) => {
            return Err(ClientError::Protocol(format!(
                "unknown audit object type {}",
                raw.object_type
            )));
        }
    };
    Ok((kind, raw.object_id.clone()))
}

fn optional_uuid(field: &str, raw: &str) -> Result<Option<Uuid>> {
    if raw.is_empty() {
        Ok(None)
    } else {
        uuid(field, raw).map(Some)
    }
}

impl TryFrom<v1::AuditEvent> for AuditEvent {
    type Error = ClientError;

    fn try_from(raw: v1::AuditEvent) -> Result<Self> {
        let actor = raw.actor.unwrap_or_default();
        let role = match actor.role {
            0 => None,
            value => Some(Role::from_proto(value)?),
        };
        Ok(AuditEvent {
            id: uuid("event_id", &raw.event_id)?,
            sequence: raw.sequence,
            outcome: outcome_from(raw.outcome)?,
            occurred_at: time(raw.occurred_at),
            status_code: raw.status_code,
            outcome_reason: raw.outcome_reason,
            actor: Actor {
                by_server: actor.by_server,
                professional: optional_uuid("professional_id", &actor.professional_id)?,
                organisation_oin: actor.organisation_oin,
                role,
                on_behalf_of: optional_uuid(
                    "on_behalf_of_professional_id",
                    &actor.on_behalf_of_professional_id,
                )?,
                certificate_fingerprint: actor.certificate_fingerprint,
                network_address: actor.network_address,
            },
            objects: raw.objects.iter().map(object_from).collect::<Result<_>>()?,
            ground: raw.legal_basis.as_ref().map(ground_from).transpose()?,
            flagged_for_review: raw.legal_basis.is_some_and(|b| b.flagged_for_review),
            purpose: v1::Purpose::try_from(raw.purpose)
                .map(|p| p.as_str_name().to_owned())
                .unwrap_or_default(),
            detail: raw.detail,
            request_id: raw.request_id,
            action: raw.action,
            previous_hash: raw.previous_hash,
            hash: raw.hash,
        })
    }
}

impl Client {
    fn audit(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.channel.clone())
    }

    /// Reads the caller's share of the trail matching `filter`, oldest
    /// first, following every page (PRIVACY_OFFICER or CONTACT_PERSON).
    ///
    /// # Errors
    /// PermissionDenied for other roles; NotFound for a family, consult or
    /// professional outside the caller's share.
    pub async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let filter = filter.to_proto();
        let mut events = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = v1::QueryAuditRequest {
                filter: Some(filter.clone()),
                page_size: 500,
                page_token,
            };
            let answer = self
                .audit()
                .query_audit(self.request(request)?)
                .await?
                .into_inner();
            for event in answer.events {
                events.push(event.try_into()?);
            }
            if answer.next_page_token.is_empty() {
                return Ok(events);
            }
            page_token = answer.next_page_token;
        }
    }

    /// Exports the caller's share of the trail matching `filter` as JSON
    /// lines (one event per line, as the protocol documents), with the
    /// newest signed checkpoint.
    ///
    /// # Errors
    /// As [`Client::query_audit`].
    pub async fn export_audit_json(&self, filter: &AuditFilter) -> Result<AuditExport> {
        use v1::export_audit_response::Item;
        let request = v1::ExportAuditRequest {
            filter: Some(filter.to_proto()),
            format: v1::AuditExportFormat::JsonLines as i32,
        };
        let mut stream = self
            .audit()
            .export_audit(self.request(request)?)
            .await?
            .into_inner();
        let mut export = AuditExport::default();
        while let Some(item) = stream.message().await? {
            match item.item {
                Some(Item::JsonLine(line)) => export.json_lines.push_str(&line),
                Some(Item::Checkpoint(c)) => export.checkpoint = Some((c.sequence, c.public_key)),
                Some(Item::Event(_)) | None => {
                    return Err(ClientError::Protocol(
                        "a JSON-lines export carried something else".into(),
                    ));
                }
            }
        }
        Ok(export)
    }

    /// The summary a contact person can hand to the family: which
    /// organisations and expertise were consulted about it, when and on
    /// which basis; safety-sensitive sharing only counted.
    ///
    /// # Errors
    /// NotFound for anyone but the family's contact person.
    pub async fn family_transparency(&self, family: Uuid) -> Result<Transparency> {
        let request = v1::GetFamilyTransparencyRequest {
            family_id: family.to_string(),
        };
        let answer = self
            .audit()
            .get_family_transparency(self.request(request)?)
            .await?
            .into_inner();
        let entries = answer
            .entries
            .into_iter()
            .map(|e| {
                let basis = v1::LegalBasis {
                    ground: e.ground,
                    consent_id: e.consent_id.clone(),
                    ..Default::default()
                };
                Ok(Consulted {
                    at: required("consulted_at", time(e.consulted_at))?,
                    organisation_oin: e.organisation_oin,
                    expertise: Expertise::from_proto(&required("expertise", e.expertise)?)?,
                    ground: ground_from(&basis)?,
                    ended_at: time(e.ended_at),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Transparency {
            entries,
            withheld: answer.withheld_count,
        })
    }

    /// Verifies the whole trail (PRIVACY_OFFICER).
    ///
    /// # Errors
    /// PermissionDenied for other roles.
    pub async fn verify_audit(&self) -> Result<Verification> {
        let request = self.request(v1::VerifyAuditRequest {})?;
        let answer = self.audit().verify_audit(request).await?.into_inner();
        Ok(Verification {
            ok: answer.ok,
            events_checked: answer.events_checked,
            last_sequence: answer.last_sequence,
            first_broken: (!answer.ok).then_some(answer.first_broken_sequence),
            fault: answer.fault().as_str_name().to_owned(),
            detail: answer.detail,
            checkpoints_checked: answer.checkpoints_checked,
            latest_checkpoint: answer.latest_checkpoint.map(|c| (c.sequence, c.public_key)),
        })
    }
}
