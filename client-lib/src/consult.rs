//! Consult calls: open, route, accept, invite, close, and the report.

use std::time::{Duration, SystemTime};

use samenop_proto::v1::{self, consult_service_client::ConsultServiceClient};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{
    Client,
    error::{ClientError, Result},
    types::{Expertise, required, time, uuid},
};

/// How soon an answer is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Urgency {
    /// Within hours.
    Acute,
    /// Within a few working days.
    Soon,
    /// Within the usual response time.
    Normal,
}

/// The ground a family consult rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegalGround {
    /// A recorded consent (its id).
    Consent(Uuid),
    /// Reporting to or consulting Veilig Thuis (Wmo 2015 art. 5.2.6).
    VeiligThuisReport,
    /// A request of the child protection board (BW 1:240).
    ChildProtectionBoardRequest,
    /// A statutory task under a supervision order (Jeugdwet 7.3.11).
    SupervisionOrder,
    /// A documented conflict of duties.
    ConflictOfDuties,
}

/// A legal basis: a consent, or a ground without consent with its
/// justification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalBasis {
    /// The ground.
    pub ground: LegalGround,
    /// The written justification (grounds without consent only; empty otherwise).
    pub justification: String,
    /// Withhold from the family's transparency view (grounds without consent only).
    pub safety_sensitive: bool,
}

impl LegalBasis {
    /// A basis resting on consent `consent`.
    pub fn consent(consent: Uuid) -> Self {
        LegalBasis {
            ground: LegalGround::Consent(consent),
            justification: String::new(),
            safety_sensitive: false,
        }
    }

    fn to_proto(&self) -> v1::LegalBasis {
        let (ground, consent) = match self.ground {
            LegalGround::Consent(id) => (v1::LegalGround::Consent, id.to_string()),
            LegalGround::VeiligThuisReport => (v1::LegalGround::VeiligThuisReport, String::new()),
            LegalGround::ChildProtectionBoardRequest => {
                (v1::LegalGround::ChildProtectionBoardRequest, String::new())
            }
            LegalGround::SupervisionOrder => (v1::LegalGround::SupervisionOrder, String::new()),
            LegalGround::ConflictOfDuties => (v1::LegalGround::ConflictOfDuties, String::new()),
        };
        v1::LegalBasis {
            ground: ground as i32,
            consent_id: consent,
            justification: self.justification.clone(),
            safety_sensitive: self.safety_sensitive,
            flagged_for_review: false,
        }
    }
}

/// What a new consult is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum About {
    /// A registered family the caller leads.
    Family {
        /// The family.
        family: Uuid,
        /// The members the question is about.
        concerned: Vec<Uuid>,
        /// The legal basis.
        basis: LegalBasis,
    },
    /// No family link.
    Anonymous,
}

/// A consult to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsult {
    /// What it is about.
    pub about: About,
    /// The question in short; the content belongs in the thread.
    pub question: String,
    /// The expertise wanted.
    pub expertise: Expertise,
    /// How soon.
    pub urgency: Urgency,
    /// By when a specialist must accept; `None` for the urgency's default.
    pub respond_by: Option<SystemTime>,
    /// A named specialist; `None` for the pool of the expertise.
    pub specialist: Option<Uuid>,
}

/// How a consult ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The advice answered the question.
    AdviceGiven,
    /// Specialist and contact person work on together.
    JointApproach,
    /// It led to a referral or report.
    Referred,
    /// Withdrawn.
    Withdrawn,
    /// Its basis ended.
    BasisEnded,
}

/// Why a consult is suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspensionReason {
    /// The consent was revoked.
    ConsentRevoked,
    /// The consent expired.
    ConsentExpired,
}

/// Where a consult stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsultState {
    /// Waiting for a specialist.
    Requested,
    /// Accepted.
    Accepted,
    /// The named specialist declined.
    Declined,
    /// Nobody accepted in time.
    Expired,
    /// Its basis ended.
    Suspended(SuspensionReason),
    /// Closed.
    Closed(Outcome),
}

/// What changed in a consult, as a live event tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsultChange {
    /// A new request for the recipient: named, pool or invitation.
    Requested,
    /// A specialist accepted the consult or an invitation.
    Accepted,
    /// A pool request was taken by another specialist: it left the inbox.
    Taken,
    /// A specialist declined.
    Declined,
    /// The request expired unaccepted.
    Expired,
    /// A further specialist was invited.
    Invited,
    /// A specialist left.
    ParticipantLeft,
    /// A specialist was removed (for the removed one: they lost access).
    ParticipantRemoved,
    /// Its legal basis ended.
    Suspended,
    /// It got another legal basis (and resumed when suspended).
    LegalBasisChanged,
    /// The family was handed over: the consult has a new owner.
    OwnerChanged,
    /// It was closed.
    Closed,
}

impl ConsultChange {
    pub(crate) fn from_proto(value: i32) -> Result<Self> {
        use v1::ConsultChange as C;
        Ok(match C::try_from(value) {
            Ok(C::Requested) => Self::Requested,
            Ok(C::Accepted) => Self::Accepted,
            Ok(C::Taken) => Self::Taken,
            Ok(C::Declined) => Self::Declined,
            Ok(C::Expired) => Self::Expired,
            Ok(C::Invited) => Self::Invited,
            Ok(C::ParticipantLeft) => Self::ParticipantLeft,
            Ok(C::ParticipantRemoved) => Self::ParticipantRemoved,
            Ok(C::Suspended) => Self::Suspended,
            Ok(C::LegalBasisChanged) => Self::LegalBasisChanged,
            Ok(C::OwnerChanged) => Self::OwnerChanged,
            Ok(C::Closed) => Self::Closed,
            _ => return Err(protocol("consult change")),
        })
    }
}

/// A consult change delivered live.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsultEvent {
    /// The consult.
    pub consult: Uuid,
    /// What changed.
    pub change: ConsultChange,
    /// Where the consult stands now.
    pub state: ConsultState,
    /// The consult as the recipient may see it now; `None` when they
    /// cannot (any more): a request taken by someone else, a removal.
    pub view: Option<Consult>,
    /// Who caused it; `None` when the server did (expiry, consent ending).
    pub actor: Option<Uuid>,
}

impl TryFrom<v1::ConsultEvent> for ConsultEvent {
    type Error = ClientError;

    fn try_from(raw: v1::ConsultEvent) -> Result<Self> {
        let change = ConsultChange::from_proto(raw.change)?;
        let shown = raw
            .consult
            .ok_or_else(|| protocol("consult event without a consult"))?;
        let consult = uuid("consult_id", &shown.consult_id)?;
        let state = state_from(&shown)?;
        // A full view names its expertise; the bare one only id and state.
        let view = match shown.expertise {
            Some(_) => Some(Consult::try_from(shown)?),
            None => None,
        };
        let actor = match raw.actor_professional_id.as_str() {
            "" => None,
            id => Some(uuid("actor_professional_id", id)?),
        };
        Ok(ConsultEvent {
            consult,
            change,
            state,
            view,
            actor,
        })
    }
}

/// Why a specialist declines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineReason {
    /// No capacity in time.
    NoCapacity,
    /// Outside their expertise.
    OutsideExpertise,
    /// A conflict of interest.
    ConflictOfInterest,
    /// Another reason, in the note.
    Other,
}

/// Which consults to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListScope {
    /// Requests and invitations the caller may accept.
    Inbox,
    /// Consults the caller owns.
    Owned,
    /// Consults the caller takes part in as specialist.
    Participating,
}

/// Where a participant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantStatus {
    /// Invited.
    Invited,
    /// Takes part.
    Active,
    /// Declined.
    Declined,
    /// Left.
    Left,
    /// Removed.
    Removed,
    /// Was the owner until a handover.
    HandedOver,
}

/// One professional in a consult.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsultParticipant {
    /// The professional.
    pub professional: Uuid,
    /// Their organisation.
    pub organisation_oin: String,
    /// Whether they are (or were) the owner.
    pub owner: bool,
    /// Where they stand.
    pub status: ParticipantStatus,
}

/// A consult as the caller may see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Consult {
    /// Its id (also its thread's).
    pub id: Uuid,
    /// The family (owner only).
    pub family: Option<Uuid>,
    /// The concerned members (owner only).
    pub concerned: Vec<Uuid>,
    /// The question in short.
    pub question: String,
    /// The expertise wanted.
    pub expertise: Expertise,
    /// How soon an answer is needed.
    pub urgency: Urgency,
    /// The named specialist, if any.
    pub addressed: Option<Uuid>,
    /// The owner.
    pub owner: Uuid,
    /// Where it stands.
    pub state: ConsultState,
    /// The legal ground (family consults).
    pub ground: Option<LegalGround>,
    /// The justification (owner and active participants only).
    pub justification: String,
    /// Whether the sharing is flagged for review (grounds without consent).
    pub flagged_for_review: bool,
    /// Everyone who took part, was invited or declined.
    pub participants: Vec<ConsultParticipant>,
    /// By when a specialist must accept.
    pub respond_by: Option<SystemTime>,
    /// When it was accepted.
    pub accepted_at: Option<SystemTime>,
    /// When a specialist first answered in its thread.
    pub first_answer_at: Option<SystemTime>,
    /// When it ended.
    pub closed_at: Option<SystemTime>,
}

/// The report's figures for one expertise and urgency.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    /// The expertise.
    pub expertise: Expertise,
    /// The urgency.
    pub urgency: Urgency,
    /// Consults requested in the period.
    pub consults: u32,
    /// Accepted at all.
    pub accepted: u32,
    /// Accepted by their respond-by time.
    pub accepted_in_time: u32,
    /// Share accepted in time.
    pub accepted_in_time_share: f64,
    /// Median time to accept.
    pub median_time_to_accept: Option<Duration>,
    /// 90th percentile time to accept.
    pub p90_time_to_accept: Option<Duration>,
    /// Answered in the thread.
    pub answered: u32,
    /// Expired without being accepted.
    pub expired: u32,
}

fn protocol(what: &str) -> ClientError {
    ClientError::Protocol(format!("unknown {what} in the answer"))
}

fn urgency_to(u: Urgency) -> i32 {
    let u = match u {
        Urgency::Acute => v1::Urgency::Acute,
        Urgency::Soon => v1::Urgency::Soon,
        Urgency::Normal => v1::Urgency::Normal,
    };
    u as i32
}

fn urgency_from(value: i32) -> Result<Urgency> {
    match v1::Urgency::try_from(value) {
        Ok(v1::Urgency::Acute) => Ok(Urgency::Acute),
        Ok(v1::Urgency::Soon) => Ok(Urgency::Soon),
        Ok(v1::Urgency::Normal) => Ok(Urgency::Normal),
        _ => Err(protocol("urgency")),
    }
}

fn outcome_to(o: Outcome) -> i32 {
    let o = match o {
        Outcome::AdviceGiven => v1::ConsultOutcome::AdviceGiven,
        Outcome::JointApproach => v1::ConsultOutcome::JointApproach,
        Outcome::Referred => v1::ConsultOutcome::Referred,
        Outcome::Withdrawn => v1::ConsultOutcome::Withdrawn,
        Outcome::BasisEnded => v1::ConsultOutcome::BasisEnded,
    };
    o as i32
}

fn state_from(raw: &v1::Consult) -> Result<ConsultState> {
    use v1::ConsultState as S;
    Ok(match S::try_from(raw.state) {
        Ok(S::Requested) => ConsultState::Requested,
        Ok(S::Accepted) => ConsultState::Accepted,
        Ok(S::Declined) => ConsultState::Declined,
        Ok(S::Expired) => ConsultState::Expired,
        Ok(S::Suspended) => ConsultState::Suspended(
            match v1::SuspensionReason::try_from(raw.suspension_reason) {
                Ok(v1::SuspensionReason::ConsentRevoked) => SuspensionReason::ConsentRevoked,
                Ok(v1::SuspensionReason::ConsentExpired) => SuspensionReason::ConsentExpired,
                _ => return Err(protocol("suspension reason")),
            },
        ),
        Ok(S::Closed) => ConsultState::Closed(match v1::ConsultOutcome::try_from(raw.outcome) {
            Ok(v1::ConsultOutcome::AdviceGiven) => Outcome::AdviceGiven,
            Ok(v1::ConsultOutcome::JointApproach) => Outcome::JointApproach,
            Ok(v1::ConsultOutcome::Referred) => Outcome::Referred,
            Ok(v1::ConsultOutcome::Withdrawn) => Outcome::Withdrawn,
            Ok(v1::ConsultOutcome::BasisEnded) => Outcome::BasisEnded,
            _ => return Err(protocol("outcome")),
        }),
        _ => return Err(protocol("consult state")),
    })
}

pub(crate) fn ground_from(raw: &v1::LegalBasis) -> Result<LegalGround> {
    use v1::LegalGround as G;
    Ok(match G::try_from(raw.ground) {
        Ok(G::Consent) => LegalGround::Consent(uuid("consent_id", &raw.consent_id)?),
        Ok(G::VeiligThuisReport) => LegalGround::VeiligThuisReport,
        Ok(G::ChildProtectionBoardRequest) => LegalGround::ChildProtectionBoardRequest,
        Ok(G::SupervisionOrder) => LegalGround::SupervisionOrder,
        Ok(G::ConflictOfDuties) => LegalGround::ConflictOfDuties,
        _ => return Err(protocol("legal ground")),
    })
}

fn optional_uuid(field: &str, raw: &str) -> Result<Option<Uuid>> {
    if raw.is_empty() {
        Ok(None)
    } else {
        uuid(field, raw).map(Some)
    }
}

impl TryFrom<v1::Consult> for Consult {
    type Error = ClientError;

    fn try_from(raw: v1::Consult) -> Result<Self> {
        let state = state_from(&raw)?;
        let participants = raw
            .participants
            .iter()
            .map(|p| {
                use v1::ParticipantStatus as S;
                let status = match S::try_from(p.status) {
                    Ok(S::Invited) => ParticipantStatus::Invited,
                    Ok(S::Active) => ParticipantStatus::Active,
                    Ok(S::Declined) => ParticipantStatus::Declined,
                    Ok(S::Left) => ParticipantStatus::Left,
                    Ok(S::Removed) => ParticipantStatus::Removed,
                    Ok(S::HandedOver) => ParticipantStatus::HandedOver,
                    _ => return Err(protocol("participant status")),
                };
                Ok(ConsultParticipant {
                    professional: uuid("professional_id", &p.professional_id)?,
                    organisation_oin: p.organisation_oin.clone(),
                    owner: p.role == v1::ParticipantRole::Owner as i32,
                    status,
                })
            })
            .collect::<Result<_>>()?;
        let milestones = raw.milestones.unwrap_or_default();
        Ok(Consult {
            id: uuid("consult_id", &raw.consult_id)?,
            family: optional_uuid("family_id", &raw.family_id)?,
            concerned: raw
                .concerned_member_ids
                .iter()
                .map(|m| uuid("concerned_member_ids", m))
                .collect::<Result<_>>()?,
            question: raw.question_summary.clone(),
            expertise: Expertise::from_proto(&required("expertise", raw.expertise)?)?,
            urgency: urgency_from(raw.urgency)?,
            addressed: optional_uuid("addressed_specialist_id", &raw.addressed_specialist_id)?,
            owner: uuid("owner_professional_id", &raw.owner_professional_id)?,
            state,
            ground: raw.legal_basis.as_ref().map(ground_from).transpose()?,
            justification: raw
                .legal_basis
                .as_ref()
                .map(|b| b.justification.clone())
                .unwrap_or_default(),
            flagged_for_review: raw
                .legal_basis
                .as_ref()
                .is_some_and(|b| b.flagged_for_review),
            participants,
            respond_by: time(raw.respond_by),
            accepted_at: time(milestones.accepted_at),
            first_answer_at: time(milestones.first_answer_at),
            closed_at: time(milestones.closed_at),
        })
    }
}

fn duration(raw: Option<prost_types::Duration>) -> Option<Duration> {
    raw.and_then(|d| Duration::try_from(d).ok())
}

impl Client {
    fn consults(&self) -> ConsultServiceClient<Channel> {
        ConsultServiceClient::new(self.channel.clone())
    }

    /// Opens a consult (CONTACT_PERSON; for a family, its contact person).
    ///
    /// # Errors
    /// FailedPrecondition when the legal basis does not cover it (the message
    /// says what is missing); NotFound for a family the caller does not lead
    /// or a named specialist without the expertise.
    pub async fn open_consult(&self, consult: &NewConsult) -> Result<Consult> {
        let (kind, family_id, concerned, basis) = match &consult.about {
            About::Family {
                family,
                concerned,
                basis,
            } => (
                v1::ConsultKind::Family,
                family.to_string(),
                concerned.iter().map(Uuid::to_string).collect(),
                Some(basis.to_proto()),
            ),
            About::Anonymous => (v1::ConsultKind::Anonymous, String::new(), Vec::new(), None),
        };
        let request = v1::OpenConsultRequest {
            kind: kind as i32,
            family_id,
            concerned_member_ids: concerned,
            question_summary: consult.question.clone(),
            expertise: Some(consult.expertise.to_proto()?),
            urgency: urgency_to(consult.urgency),
            respond_by: consult.respond_by.map(prost_types::Timestamp::from),
            specialist_id: consult
                .specialist
                .map(|s| s.to_string())
                .unwrap_or_default(),
            legal_basis: basis,
        };
        let answer = self.consults().open_consult(self.request(request)?).await?;
        required("consult", answer.into_inner().consult)?.try_into()
    }

    /// Returns a consult as the caller may see it.
    ///
    /// # Errors
    /// NotFound for a consult the caller may not see.
    pub async fn consult(&self, consult: Uuid) -> Result<Consult> {
        let request = v1::GetConsultRequest {
            consult_id: consult.to_string(),
        };
        let answer = self.consults().get_consult(self.request(request)?).await?;
        required("consult", answer.into_inner().consult)?.try_into()
    }

    /// Lists the caller's consults of a scope, following every page.
    ///
    /// # Errors
    /// [`ClientError`] when the call fails.
    pub async fn list_consults(&self, scope: ListScope) -> Result<Vec<Consult>> {
        let scope = match scope {
            ListScope::Inbox => v1::ConsultListScope::Inbox,
            ListScope::Owned => v1::ConsultListScope::Owned,
            ListScope::Participating => v1::ConsultListScope::Participating,
        };
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = v1::ListConsultsRequest {
                scope: scope as i32,
                page_size: 200,
                page_token,
                ..Default::default()
            };
            let page = self
                .consults()
                .list_consults(self.request(request)?)
                .await?
                .into_inner();
            for consult in page.consults {
                all.push(consult.try_into()?);
            }
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// Accepts a request or invitation.
    ///
    /// # Errors
    /// AlreadyExists when another specialist took the pool request first;
    /// FailedPrecondition when it is no longer open.
    pub async fn accept_consult(&self, consult: Uuid) -> Result<Consult> {
        let request = v1::AcceptConsultRequest {
            consult_id: consult.to_string(),
        };
        let answer = self
            .consults()
            .accept_consult(self.request(request)?)
            .await?;
        required("consult", answer.into_inner().consult)?.try_into()
    }

    /// Declines a request or invitation; returns the consult if the caller
    /// still sees it.
    ///
    /// # Errors
    /// FailedPrecondition when there is nothing open to decline.
    pub async fn decline_consult(
        &self,
        consult: Uuid,
        reason: DeclineReason,
        note: &str,
    ) -> Result<Option<Consult>> {
        let reason = match reason {
            DeclineReason::NoCapacity => v1::DeclineReason::NoCapacity,
            DeclineReason::OutsideExpertise => v1::DeclineReason::OutsideExpertise,
            DeclineReason::ConflictOfInterest => v1::DeclineReason::ConflictOfInterest,
            DeclineReason::Other => v1::DeclineReason::Other,
        };
        let request = v1::DeclineConsultRequest {
            consult_id: consult.to_string(),
            reason: reason as i32,
            note: note.to_owned(),
        };
        let answer = self
            .consults()
            .decline_consult(self.request(request)?)
            .await?;
        answer
            .into_inner()
            .consult
            .map(Consult::try_from)
            .transpose()
    }

    /// Invites a further specialist (the owner).
    ///
    /// # Errors
    /// FailedPrecondition when the basis does not cover them; AlreadyExists
    /// when they take part already.
    pub async fn invite_specialist(
        &self,
        consult: Uuid,
        specialist: Uuid,
        expertise: Expertise,
    ) -> Result<Consult> {
        let request = v1::InviteSpecialistRequest {
            consult_id: consult.to_string(),
            specialist_id: specialist.to_string(),
            expertise: Some(expertise.to_proto()?),
            respond_by: None,
        };
        let answer = self
            .consults()
            .invite_specialist(self.request(request)?)
            .await?;
        required("consult", answer.into_inner().consult)?.try_into()
    }

    /// Removes a specialist (the owner).
    ///
    /// # Errors
    /// FailedPrecondition for someone not taking part.
    pub async fn remove_participant(&self, consult: Uuid, professional: Uuid) -> Result<Consult> {
        let request = v1::RemoveParticipantRequest {
            consult_id: consult.to_string(),
            professional_id: professional.to_string(),
        };
        let answer = self
            .consults()
            .remove_participant(self.request(request)?)
            .await?;
        required("consult", answer.into_inner().consult)?.try_into()
    }

    /// Leaves a consult (a specialist).
    ///
    /// # Errors
    /// FailedPrecondition for the owner or someone not taking part.
    pub async fn leave_consult(&self, consult: Uuid) -> Result<()> {
        let request = v1::LeaveConsultRequest {
            consult_id: consult.to_string(),
        };
        self.consults()
            .leave_consult(self.request(request)?)
            .await?;
        Ok(())
    }

    /// Gives a family consult another legal basis (the owner).
    ///
    /// # Errors
    /// FailedPrecondition when the basis does not cover the consult.
    pub async fn change_legal_basis(&self, consult: Uuid, basis: &LegalBasis) -> Result<Consult> {
        let request = v1::ChangeLegalBasisRequest {
            consult_id: consult.to_string(),
            legal_basis: Some(basis.to_proto()),
        };
        let answer = self
            .consults()
            .change_legal_basis(self.request(request)?)
            .await?;
        required("consult", answer.into_inner().consult)?.try_into()
    }

    /// Closes a consult with an outcome (the owner).
    ///
    /// # Errors
    /// FailedPrecondition when it has ended already.
    pub async fn close_consult(&self, consult: Uuid, outcome: Outcome) -> Result<Consult> {
        let request = v1::CloseConsultRequest {
            consult_id: consult.to_string(),
            outcome: outcome_to(outcome),
        };
        let answer = self
            .consults()
            .close_consult(self.request(request)?)
            .await?;
        required("consult", answer.into_inner().consult)?.try_into()
    }

    /// The response-time report over `[start, end)`.
    ///
    /// # Errors
    /// InvalidArgument for an empty, reversed or over-long period.
    pub async fn consult_report(
        &self,
        start: SystemTime,
        end: SystemTime,
    ) -> Result<Vec<ReportRow>> {
        let request = v1::GetConsultReportRequest {
            period_start: Some(start.into()),
            period_end: Some(end.into()),
            expertise: None,
            urgency: 0,
        };
        let answer = self
            .consults()
            .get_consult_report(self.request(request)?)
            .await?
            .into_inner();
        answer
            .rows
            .into_iter()
            .map(|row| {
                Ok(ReportRow {
                    expertise: Expertise::from_proto(&required("expertise", row.expertise)?)?,
                    urgency: urgency_from(row.urgency)?,
                    consults: row.consults,
                    accepted: row.accepted,
                    accepted_in_time: row.accepted_in_time,
                    accepted_in_time_share: row.accepted_in_time_share,
                    median_time_to_accept: duration(row.median_time_to_accept),
                    p90_time_to_accept: duration(row.p90_time_to_accept),
                    answered: row.answered,
                    expired: row.expired,
                })
            })
            .collect()
    }
}
