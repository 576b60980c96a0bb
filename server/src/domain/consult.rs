//! Consults: the contact person brings a specialist in, on a legal basis.
//! The contact person stays the owner; specialists are participants.
//!
//! Time-driven changes need no background job: a REQUESTED consult past its
//! respond-by time *is* EXPIRED, and one resting on a consent past its
//! valid_until *is* SUSPENDED, whenever it is read ([`Consult::settle`]).
//! Writes store the settled state.

use std::time::{Duration, SystemTime};

use samenop_proto::v1;
use uuid::Uuid;

use super::{
    Expertise, InvalidInput, Oin, ProfessionalId,
    consent::{Consent, ConsentId},
    family::{FamilyId, MemberId},
    parse_text,
};

/// The longest question summary, in characters.
pub(crate) const QUESTION_MAX: usize = 500;
/// The shortest and longest justification of a ground without consent.
pub(crate) const JUSTIFICATION_MIN: usize = 20;
/// See [`JUSTIFICATION_MIN`].
pub(crate) const JUSTIFICATION_MAX: usize = 2000;
/// The longest decline note, in characters.
pub(crate) const DECLINE_NOTE_MAX: usize = 500;
/// The most participants (owner included) one consult may have.
pub(crate) const PARTICIPANTS_MAX: usize = 20;

super::ids::uuid_id!(
    /// A consult's id (UUID v7); also its thread's and MLS group's id.
    ConsultId
);

impl ConsultId {
    /// A new id whose time part is `now` (the server clock's), so consults
    /// are stored in the order they were requested.
    pub fn generate(now: SystemTime) -> Self {
        Self(Uuid::new_v7(v7_timestamp(now)))
    }

    /// The smallest id of a consult requested at or after `at`: where a
    /// scan by request time starts.
    pub fn first_at(at: SystemTime) -> Self {
        let millis = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        Self(Uuid::from_bytes(bytes))
    }
}

fn v7_timestamp(now: SystemTime) -> uuid::Timestamp {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    uuid::Timestamp::from_unix(uuid::NoContext, since.as_secs(), since.subsec_nanos())
}

/// How soon an answer is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Urgency {
    /// Within hours.
    Acute,
    /// Within a few working days.
    Soon,
    /// Within the usual response time.
    Normal,
}

impl Urgency {
    /// Parses an urgency.
    ///
    /// # Errors
    /// [`InvalidInput::BadEnum`] for an unknown number or the unspecified value.
    pub fn parse(field: &'static str, value: i32) -> Result<Self, InvalidInput> {
        match v1::Urgency::try_from(value) {
            Ok(v1::Urgency::Acute) => Ok(Urgency::Acute),
            Ok(v1::Urgency::Soon) => Ok(Urgency::Soon),
            Ok(v1::Urgency::Normal) => Ok(Urgency::Normal),
            Ok(v1::Urgency::Unspecified) | Err(_) => Err(InvalidInput::BadEnum { field, value }),
        }
    }

    /// The urgency's wire value.
    pub fn to_proto(self) -> v1::Urgency {
        match self {
            Urgency::Acute => v1::Urgency::Acute,
            Urgency::Soon => v1::Urgency::Soon,
            Urgency::Normal => v1::Urgency::Normal,
        }
    }

    /// The respond-by time used when a request names none.
    pub fn default_response_time(self) -> Duration {
        const HOUR: u64 = 3600;
        match self {
            Urgency::Acute => Duration::from_secs(4 * HOUR),
            Urgency::Soon => Duration::from_secs(3 * 24 * HOUR),
            Urgency::Normal => Duration::from_secs(10 * 24 * HOUR),
        }
    }
}

/// The ground a family consult rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ground {
    /// A recorded consent of the family.
    Consent(ConsentId),
    /// Reporting to or consulting Veilig Thuis (Wmo 2015 art. 5.2.6).
    VeiligThuisReport,
    /// A request of the child protection board (BW 1:240).
    ChildProtectionBoardRequest,
    /// A statutory task under a supervision order (Jeugdwet 7.3.11).
    SupervisionOrder,
    /// A documented conflict of duties.
    ConflictOfDuties,
}

/// The legal basis of a family consult.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalBasis {
    /// The ground.
    pub ground: Ground,
    /// The written justification (grounds without consent only).
    pub justification: Option<String>,
    /// Withheld from the family's transparency view (grounds without consent only).
    pub safety_sensitive: bool,
}

impl LegalBasis {
    /// The wire form; the justification only when `with_justification`
    /// (it is shown to the consult's insiders, never to the audit trail).
    pub fn to_proto(&self, with_justification: bool) -> v1::LegalBasis {
        v1::LegalBasis {
            ground: self.ground_to_proto() as i32,
            consent_id: self.consent().map(|id| id.to_string()).unwrap_or_default(),
            justification: if with_justification {
                self.justification.clone().unwrap_or_default()
            } else {
                String::new()
            },
            safety_sensitive: self.safety_sensitive,
            flagged_for_review: self.flagged_for_review(),
        }
    }

    /// Parses a legal basis.
    ///
    /// # Errors
    /// [`InvalidInput`] for a missing or unknown ground, a consent id with a
    /// ground without consent (or none with CONSENT), or a justification that
    /// is missing, too short, too long, or holds what looks like a BSN.
    pub fn parse(raw: Option<&v1::LegalBasis>) -> Result<Self, InvalidInput> {
        let raw = raw.ok_or(InvalidInput::Missing {
            field: "legal_basis",
        })?;
        let without_consent = |ground| -> Result<LegalBasis, InvalidInput> {
            if !raw.consent_id.is_empty() {
                return Err(InvalidInput::Inconsistent(
                    "legal_basis.consent_id belongs only with LEGAL_GROUND_CONSENT",
                ));
            }
            let text = parse_text(
                "legal_basis.justification",
                &raw.justification,
                JUSTIFICATION_MAX,
            )?;
            if text.chars().count() < JUSTIFICATION_MIN {
                return Err(InvalidInput::Malformed {
                    field: "legal_basis.justification",
                    problem: "a ground without consent needs a written justification of at least 20 characters",
                });
            }
            if holds_bsn(&text) {
                return Err(InvalidInput::Malformed {
                    field: "legal_basis.justification",
                    problem: "holds a number that looks like a BSN; facts and weighing only, no identifiers",
                });
            }
            Ok(LegalBasis {
                ground,
                justification: Some(text),
                safety_sensitive: raw.safety_sensitive,
            })
        };
        match v1::LegalGround::try_from(raw.ground) {
            Ok(v1::LegalGround::Consent) => {
                if !raw.justification.is_empty() || raw.safety_sensitive {
                    return Err(InvalidInput::Inconsistent(
                        "justification and safety_sensitive belong only with a ground without consent",
                    ));
                }
                let consent = ConsentId::parse("legal_basis.consent_id", &raw.consent_id)?;
                Ok(LegalBasis {
                    ground: Ground::Consent(consent),
                    justification: None,
                    safety_sensitive: false,
                })
            }
            Ok(v1::LegalGround::VeiligThuisReport) => without_consent(Ground::VeiligThuisReport),
            Ok(v1::LegalGround::ChildProtectionBoardRequest) => {
                without_consent(Ground::ChildProtectionBoardRequest)
            }
            Ok(v1::LegalGround::SupervisionOrder) => without_consent(Ground::SupervisionOrder),
            Ok(v1::LegalGround::ConflictOfDuties) => without_consent(Ground::ConflictOfDuties),
            Ok(v1::LegalGround::Unspecified) | Err(_) => Err(InvalidInput::BadEnum {
                field: "legal_basis.ground",
                value: raw.ground,
            }),
        }
    }

    /// The consent it rests on, if any.
    pub fn consent(&self) -> Option<ConsentId> {
        match self.ground {
            Ground::Consent(id) => Some(id),
            _ => None,
        }
    }

    /// Whether sharing on this basis is flagged for review (every ground
    /// without consent).
    pub fn flagged_for_review(&self) -> bool {
        self.consent().is_none()
    }

    /// The ground's wire value.
    pub fn ground_to_proto(&self) -> v1::LegalGround {
        match self.ground {
            Ground::Consent(_) => v1::LegalGround::Consent,
            Ground::VeiligThuisReport => v1::LegalGround::VeiligThuisReport,
            Ground::ChildProtectionBoardRequest => v1::LegalGround::ChildProtectionBoardRequest,
            Ground::SupervisionOrder => v1::LegalGround::SupervisionOrder,
            Ground::ConflictOfDuties => v1::LegalGround::ConflictOfDuties,
        }
    }
}

/// Whether `text` holds a run of exactly nine digits that passes the BSN
/// eleven-test, which the protocol promises to refuse.
fn holds_bsn(text: &str) -> bool {
    let mut run: Vec<u32> = Vec::new();
    let check = |run: &[u32]| {
        run.len() == 9 && {
            let sum: i64 = run
                .iter()
                .zip([9i64, 8, 7, 6, 5, 4, 3, 2, -1])
                .map(|(digit, weight)| i64::from(*digit) * weight)
                .sum();
            sum != 0 && sum % 11 == 0
        }
    };
    for c in text.chars() {
        match c.to_digit(10) {
            Some(digit) => run.push(digit),
            None => {
                if check(&run) {
                    return true;
                }
                run.clear();
            }
        }
    }
    check(&run)
}

/// Why a basis does not cover a consult; the text says what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCovered(pub String);

/// Checks that `consent` covers consulting `expertise` at `organisation`
/// (when known) about `concerned`, at `now`, for `family`.
///
/// # Errors
/// [`NotCovered`] saying what is missing.
pub fn consent_covers(
    consent: &Consent,
    family: FamilyId,
    concerned: &[MemberId],
    expertise: Expertise,
    organisation: Option<&Oin>,
    now: SystemTime,
) -> Result<(), NotCovered> {
    use super::consent::Status;
    if consent.family != family {
        return Err(NotCovered(format!(
            "consent {} is not a consent of this family",
            consent.id
        )));
    }
    match consent.status_at(now) {
        Status::Active => {}
        Status::NotYetValid => {
            return Err(NotCovered(format!(
                "consent {} is not valid yet",
                consent.id
            )));
        }
        Status::Expired => return Err(NotCovered(format!("consent {} has expired", consent.id))),
        Status::Revoked => return Err(NotCovered(format!("consent {} was revoked", consent.id))),
    }
    if let Some(member) = concerned.iter().find(|m| !consent.concerned.contains(m)) {
        return Err(NotCovered(format!(
            "consent {} does not concern member {member}",
            consent.id
        )));
    }
    if !consent.scope.expertise.contains(&expertise) {
        return Err(NotCovered(format!(
            "consent {} does not cover the expertise asked for",
            consent.id
        )));
    }
    if let Some(organisation) = organisation
        && !consent.scope.organisations.is_empty()
        && !consent.scope.organisations.contains(organisation)
    {
        return Err(NotCovered(format!(
            "consent {} does not cover organisation {organisation}",
            consent.id
        )));
    }
    Ok(())
}

/// Why a consult is suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspensionReason {
    /// The consent it rested on was revoked.
    ConsentRevoked,
    /// The consent it rested on expired.
    ConsentExpired,
}

/// How a consult ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The advice answered the question.
    AdviceGiven,
    /// Specialist and contact person work on together with the family.
    JointApproach,
    /// It led to a referral or report.
    Referred,
    /// Withdrawn or no longer relevant.
    Withdrawn,
    /// Its legal basis ended and no other was given.
    BasisEnded,
}

impl Outcome {
    /// Parses an outcome.
    ///
    /// # Errors
    /// [`InvalidInput::BadEnum`] for an unknown number or the unspecified value.
    pub fn parse(field: &'static str, value: i32) -> Result<Self, InvalidInput> {
        match v1::ConsultOutcome::try_from(value) {
            Ok(v1::ConsultOutcome::AdviceGiven) => Ok(Outcome::AdviceGiven),
            Ok(v1::ConsultOutcome::JointApproach) => Ok(Outcome::JointApproach),
            Ok(v1::ConsultOutcome::Referred) => Ok(Outcome::Referred),
            Ok(v1::ConsultOutcome::Withdrawn) => Ok(Outcome::Withdrawn),
            Ok(v1::ConsultOutcome::BasisEnded) => Ok(Outcome::BasisEnded),
            Ok(v1::ConsultOutcome::Unspecified) | Err(_) => {
                Err(InvalidInput::BadEnum { field, value })
            }
        }
    }
}

/// Where a consult stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for a specialist to accept.
    Requested,
    /// Accepted; the thread is open.
    Accepted,
    /// The named specialist declined. Final.
    Declined,
    /// Nobody accepted in time. Final.
    Expired,
    /// Its legal basis ended; `resume` is the state it returns to.
    Suspended {
        /// Why.
        reason: SuspensionReason,
        /// The state before the suspension (Requested or Accepted).
        resume_accepted: bool,
    },
    /// Closed by the owner. Final.
    Closed(Outcome),
}

impl State {
    /// Whether the consult has ended for good.
    pub fn is_final(self) -> bool {
        matches!(self, State::Declined | State::Expired | State::Closed(_))
    }

    /// Whether the consult is open (requested or accepted, not suspended).
    pub fn is_open(self) -> bool {
        matches!(self, State::Requested | State::Accepted)
    }
}

/// Why a specialist declined.
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

impl DeclineReason {
    /// Parses a decline reason.
    ///
    /// # Errors
    /// [`InvalidInput::BadEnum`] for an unknown number or the unspecified value.
    pub fn parse(field: &'static str, value: i32) -> Result<Self, InvalidInput> {
        match v1::DeclineReason::try_from(value) {
            Ok(v1::DeclineReason::NoCapacity) => Ok(DeclineReason::NoCapacity),
            Ok(v1::DeclineReason::OutsideExpertise) => Ok(DeclineReason::OutsideExpertise),
            Ok(v1::DeclineReason::ConflictOfInterest) => Ok(DeclineReason::ConflictOfInterest),
            Ok(v1::DeclineReason::Other) => Ok(DeclineReason::Other),
            Ok(v1::DeclineReason::Unspecified) | Err(_) => {
                Err(InvalidInput::BadEnum { field, value })
            }
        }
    }
}

/// A professional's part in a consult.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The owner (the family's contact person).
    Owner,
    /// A specialist, for one expertise.
    Specialist(Expertise),
}

/// Where a participant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Invited, not yet accepted; must accept by the time given.
    Invited {
        /// By when.
        respond_by: SystemTime,
    },
    /// Takes part.
    Active,
    /// Declined.
    Declined(DeclineReason),
    /// Left.
    Left,
    /// Removed by the owner.
    Removed,
    /// Was the owner until a handover.
    HandedOver,
}

/// One professional in a consult.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The professional.
    pub professional: ProfessionalId,
    /// Their organisation.
    pub organisation: Oin,
    /// Their part.
    pub part: Part,
    /// Where they stand.
    pub standing: Standing,
    /// When invited or addressed.
    pub invited_at: Option<SystemTime>,
    /// When they became active.
    pub joined_at: Option<SystemTime>,
    /// When they stopped taking part.
    pub ended_at: Option<SystemTime>,
    /// A decline note, if any.
    pub decline_note: Option<String>,
}

impl Participant {
    /// The owner's entry, active from `now`.
    pub fn owner(professional: ProfessionalId, organisation: Oin, now: SystemTime) -> Self {
        Participant {
            professional,
            organisation,
            part: Part::Owner,
            standing: Standing::Active,
            invited_at: None,
            joined_at: Some(now),
            ended_at: None,
            decline_note: None,
        }
    }
}

/// What a consult is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A registered family, on a legal basis.
    Family {
        /// The family.
        family: FamilyId,
        /// The members the question is about.
        concerned: Vec<MemberId>,
        /// The legal basis.
        basis: LegalBasis,
    },
    /// No family link.
    Anonymous,
}

/// A consult.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consult {
    /// Its id.
    pub id: ConsultId,
    /// What it is about.
    pub subject: Subject,
    /// The question in short.
    pub question: String,
    /// The expertise wanted.
    pub expertise: Expertise,
    /// How soon.
    pub urgency: Urgency,
    /// By when a specialist must accept.
    pub respond_by: SystemTime,
    /// The named specialist, or `None` for the pool.
    pub addressed: Option<ProfessionalId>,
    /// The owner.
    pub owner: ProfessionalId,
    /// The owner's organisation.
    pub owner_organisation: Oin,
    /// Where it stands (as stored; see [`Consult::settle`]).
    pub state: State,
    /// When the state last changed.
    pub state_changed_at: SystemTime,
    /// Everyone who took part, was invited or declined, in order.
    pub participants: Vec<Participant>,
    /// Specialists who declined the pool request (it left their inbox).
    pub pool_declined: Vec<ProfessionalId>,
    /// When it was requested.
    pub requested_at: SystemTime,
    /// When a specialist first accepted.
    pub accepted_at: Option<SystemTime>,
    /// When a specialist first answered in the thread.
    pub first_answer_at: Option<SystemTime>,
    /// When it reached a final state.
    pub closed_at: Option<SystemTime>,
}

/// Why a transition is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The consult is not in a state that allows it.
    Precondition(String),
    /// Someone else got there first, or it is there already.
    Taken(String),
}

fn precondition(text: impl Into<String>) -> Refusal {
    Refusal::Precondition(text.into())
}

impl Consult {
    /// The participant entry of `who`, if any.
    pub fn participant(&self, who: ProfessionalId) -> Option<&Participant> {
        self.participants
            .iter()
            .rev()
            .find(|p| p.professional == who)
    }

    fn participant_mut(&mut self, who: ProfessionalId) -> Option<&mut Participant> {
        self.participants
            .iter_mut()
            .rev()
            .find(|p| p.professional == who)
    }

    /// Whether `who` currently takes part (owner, or active specialist).
    pub fn is_active_participant(&self, who: ProfessionalId) -> bool {
        who == self.owner
            || self
                .participant(who)
                .is_some_and(|p| p.standing == Standing::Active)
    }

    /// Whether `who` holds an open invitation.
    pub fn is_invited(&self, who: ProfessionalId) -> bool {
        self.participant(who)
            .is_some_and(|p| matches!(p.standing, Standing::Invited { .. }))
    }

    /// Applies what time has done by `now`: a request past its respond-by
    /// time expires; a consult resting on `consent` (as read) is suspended
    /// once the consent expired or was revoked. Returns whether it changed.
    pub fn settle(&mut self, now: SystemTime, consent: Option<&Consent>) -> bool {
        let mut changed = false;
        if let (Some(consent), State::Requested | State::Accepted) = (consent, self.state) {
            let ended = match &consent.revocation {
                Some(revocation) => Some((revocation.at, SuspensionReason::ConsentRevoked)),
                None if consent.valid_until <= now => {
                    Some((consent.valid_until, SuspensionReason::ConsentExpired))
                }
                None => None,
            };
            if let Some((at, reason)) = ended
                && (self.state == State::Accepted || at < self.respond_by)
            {
                self.suspend(reason, at.max(self.state_changed_at));
                changed = true;
            }
        }
        if self.state == State::Requested && now >= self.respond_by {
            self.state = State::Expired;
            self.state_changed_at = self.respond_by;
            self.closed_at = Some(self.respond_by);
            changed = true;
        }
        changed
    }

    /// Suspends an open consult: its basis ended.
    pub fn suspend(&mut self, reason: SuspensionReason, at: SystemTime) {
        if self.state.is_open() {
            self.state = State::Suspended {
                reason,
                resume_accepted: self.state == State::Accepted,
            };
            self.state_changed_at = at;
        }
    }

    /// `by` (checked by the caller to be eligible) accepts the request or
    /// their invitation.
    ///
    /// # Errors
    /// [`Refusal::Taken`] when a pool request was accepted by someone else;
    /// [`Refusal::Precondition`] when there is nothing open to accept.
    pub fn accept(
        &mut self,
        by: ProfessionalId,
        organisation: &Oin,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let open = self.state.is_open();
        if let Some(p) = self.participant_mut(by)
            && let Standing::Invited { respond_by } = p.standing
        {
            if !open {
                return Err(precondition("the consult is not open"));
            }
            if now >= respond_by {
                return Err(precondition("the invitation's respond-by time has passed"));
            }
            p.standing = Standing::Active;
            p.joined_at = Some(now);
            self.mark_accepted(now);
            return Ok(());
        }
        match self.state {
            State::Requested => {}
            State::Accepted if self.addressed.is_none() => {
                return Err(Refusal::Taken(
                    "another specialist already accepted this request".into(),
                ));
            }
            State::Expired => {
                return Err(precondition(
                    "the request expired: its respond-by time has passed",
                ));
            }
            _ => return Err(precondition("the consult is no longer open for acceptance")),
        }
        self.participants.push(Participant {
            professional: by,
            organisation: organisation.clone(),
            part: Part::Specialist(self.expertise),
            standing: Standing::Active,
            invited_at: self.addressed.map(|_| self.requested_at),
            joined_at: Some(now),
            ended_at: None,
            decline_note: None,
        });
        self.mark_accepted(now);
        Ok(())
    }

    fn mark_accepted(&mut self, now: SystemTime) {
        if self.state == State::Requested {
            self.state = State::Accepted;
            self.state_changed_at = now;
        }
        if self.accepted_at.is_none() {
            self.accepted_at = Some(now);
        }
    }

    /// `by` declines their invitation, the named request, or the pool request.
    ///
    /// # Errors
    /// [`Refusal::Precondition`] when there is nothing open to decline.
    pub fn decline(
        &mut self,
        by: ProfessionalId,
        organisation: &Oin,
        reason: DeclineReason,
        note: Option<String>,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        if let Some(p) = self.participant_mut(by)
            && matches!(p.standing, Standing::Invited { .. })
        {
            p.standing = Standing::Declined(reason);
            p.ended_at = Some(now);
            p.decline_note = note;
            return Ok(());
        }
        if self.state != State::Requested {
            return Err(precondition("there is no open request to decline"));
        }
        if self.addressed == Some(by) {
            self.participants.push(Participant {
                professional: by,
                organisation: organisation.clone(),
                part: Part::Specialist(self.expertise),
                standing: Standing::Declined(reason),
                invited_at: Some(self.requested_at),
                joined_at: None,
                ended_at: Some(now),
                decline_note: note,
            });
            self.state = State::Declined;
            self.state_changed_at = now;
            self.closed_at = Some(now);
        } else if !self.pool_declined.contains(&by) {
            self.pool_declined.push(by);
        }
        Ok(())
    }

    /// Invites a further specialist.
    ///
    /// # Errors
    /// [`Refusal::Taken`] when they take part or are invited already;
    /// [`Refusal::Precondition`] when the consult is not open or full.
    pub fn invite(
        &mut self,
        specialist: ProfessionalId,
        organisation: &Oin,
        expertise: Expertise,
        respond_by: SystemTime,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        if !self.state.is_open() {
            return Err(precondition(
                "only a REQUESTED or ACCEPTED consult takes invitations",
            ));
        }
        if specialist == self.owner
            || self.is_active_participant(specialist)
            || self.is_invited(specialist)
        {
            return Err(Refusal::Taken(
                "that specialist already takes part or is invited".into(),
            ));
        }
        if self.participants.len() >= PARTICIPANTS_MAX {
            return Err(precondition(format!(
                "a consult has at most {PARTICIPANTS_MAX} participants"
            )));
        }
        if respond_by <= now {
            return Err(precondition("respond_by must lie in the future"));
        }
        self.participants.push(Participant {
            professional: specialist,
            organisation: organisation.clone(),
            part: Part::Specialist(expertise),
            standing: Standing::Invited { respond_by },
            invited_at: Some(now),
            joined_at: None,
            ended_at: None,
            decline_note: None,
        });
        Ok(())
    }

    /// The owner removes a specialist.
    ///
    /// # Errors
    /// [`Refusal::Precondition`] for the owner or someone not taking part.
    pub fn remove(&mut self, who: ProfessionalId, now: SystemTime) -> Result<(), Refusal> {
        if who == self.owner {
            return Err(precondition(
                "the owner cannot be removed; hand the family over or close the consult",
            ));
        }
        match self.participant_mut(who) {
            Some(p) if matches!(p.standing, Standing::Active | Standing::Invited { .. }) => {
                p.standing = Standing::Removed;
                p.ended_at = Some(now);
                Ok(())
            }
            _ => Err(precondition(
                "that professional does not take part in the consult",
            )),
        }
    }

    /// A specialist leaves.
    ///
    /// # Errors
    /// [`Refusal::Precondition`] for the owner or someone not taking part.
    pub fn leave(&mut self, who: ProfessionalId, now: SystemTime) -> Result<(), Refusal> {
        if who == self.owner {
            return Err(precondition(
                "the owner cannot leave; hand the family over or close the consult",
            ));
        }
        match self.participant_mut(who) {
            Some(p) if p.standing == Standing::Active => {
                p.standing = Standing::Left;
                p.ended_at = Some(now);
                Ok(())
            }
            _ => Err(precondition("you do not take part in the consult")),
        }
    }

    /// Gives a family consult another legal basis; a suspended one returns
    /// to the state it was suspended from.
    ///
    /// # Errors
    /// [`Refusal::Precondition`] for an anonymous or ended consult.
    pub fn change_basis(&mut self, basis: LegalBasis, now: SystemTime) -> Result<(), Refusal> {
        if self.state.is_final() {
            return Err(precondition("the consult has ended"));
        }
        let Subject::Family { basis: current, .. } = &mut self.subject else {
            return Err(precondition("an ANONYMOUS consult has no legal basis"));
        };
        *current = basis;
        if let State::Suspended {
            resume_accepted, ..
        } = self.state
        {
            self.state = if resume_accepted {
                State::Accepted
            } else {
                State::Requested
            };
            self.state_changed_at = now;
        }
        Ok(())
    }

    /// The owner closes the consult.
    ///
    /// # Errors
    /// [`Refusal::Precondition`] when it has ended already.
    pub fn close(&mut self, outcome: Outcome, now: SystemTime) -> Result<(), Refusal> {
        if self.state.is_final() {
            return Err(precondition("the consult has ended already"));
        }
        self.state = State::Closed(outcome);
        self.state_changed_at = now;
        self.closed_at = Some(now);
        Ok(())
    }

    /// The family was handed over: `to` becomes the owner.
    pub fn hand_over(&mut self, to: ProfessionalId, organisation: &Oin, now: SystemTime) {
        if let Some(p) = self.participant_mut(self.owner) {
            p.standing = Standing::HandedOver;
            p.ended_at = Some(now);
        }
        self.owner = to;
        self.owner_organisation = organisation.clone();
        self.participants
            .push(Participant::owner(to, organisation.clone(), now));
    }

    /// The specialists taking part now (active), with their organisations.
    pub fn active_specialists(&self) -> impl Iterator<Item = &Participant> {
        self.participants
            .iter()
            .filter(|p| matches!(p.part, Part::Specialist(_)) && p.standing == Standing::Active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsn_like_numbers_are_found() {
        // 111222333 passes the eleven-test; 123456789 does not.
        assert!(holds_bsn("client 111222333 thuis"));
        assert!(holds_bsn("111222333"));
        assert!(!holds_bsn("dossier 123456789"));
        assert!(!holds_bsn("1112223334 is ten digits"));
        assert!(!holds_bsn("no numbers at all"));
    }

    fn basis(ground: v1::LegalGround, consent: &str, justification: &str) -> v1::LegalBasis {
        v1::LegalBasis {
            ground: ground as i32,
            consent_id: consent.into(),
            justification: justification.into(),
            safety_sensitive: false,
            flagged_for_review: false,
        }
    }

    #[test]
    fn legal_bases_are_checked() {
        let consent = ConsentId::generate().to_string();
        let long = "Acute safety concern after repeated incidents at home.";
        assert!(LegalBasis::parse(Some(&basis(v1::LegalGround::Consent, &consent, ""))).is_ok());
        assert!(LegalBasis::parse(Some(&basis(v1::LegalGround::Consent, "", ""))).is_err());
        assert!(LegalBasis::parse(Some(&basis(v1::LegalGround::Consent, &consent, long))).is_err());
        for ground in [
            v1::LegalGround::VeiligThuisReport,
            v1::LegalGround::ChildProtectionBoardRequest,
            v1::LegalGround::SupervisionOrder,
            v1::LegalGround::ConflictOfDuties,
        ] {
            let ok = LegalBasis::parse(Some(&basis(ground, "", long))).unwrap();
            assert!(ok.flagged_for_review());
            assert!(LegalBasis::parse(Some(&basis(ground, "", "too short"))).is_err());
            assert!(LegalBasis::parse(Some(&basis(ground, "", ""))).is_err());
            assert!(LegalBasis::parse(Some(&basis(ground, &consent, long))).is_err());
        }
        assert!(LegalBasis::parse(None).is_err());
        assert!(LegalBasis::parse(Some(&basis(v1::LegalGround::Unspecified, "", long))).is_err());
    }
}
