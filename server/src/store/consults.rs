//! Typed storage of consults: the record, and its indexes kept in step with
//! every change in the same batch. Every change is compare-and-set on the
//! consult as read, so of two concurrent accepts exactly one lands.

use std::{sync::Arc, time::SystemTime};

use prost::Message;

use super::{
    Batch, Keyspace, Store, StoreError,
    records::{SCHEMA_VERSION, Stored, from_millis, to_millis},
};
use crate::domain::{
    Expertise, Oin, ProfessionalId,
    consent::ConsentId,
    consult::{
        Consult, ConsultId, DeclineReason, Ground, LegalBasis, Outcome, Part, Participant,
        Standing, State, Subject, SuspensionReason, Urgency,
    },
    family::{FamilyId, MemberId},
};
use samenop_proto::v1;

/// A stored participant.
#[derive(Clone, PartialEq, Message)]
pub struct ParticipantRecord {
    /// Professional id (16 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub professional: Vec<u8>,
    /// Organisation OIN.
    #[prost(string, tag = "2")]
    pub organisation: String,
    /// Expertise (unset for the owner).
    #[prost(message, optional, tag = "3")]
    pub expertise: Option<v1::Expertise>,
    /// Standing: 1 invited, 2 active, 3 declined, 4 left, 5 removed, 6 handed over.
    #[prost(int32, tag = "4")]
    pub standing: i32,
    /// Invitation respond-by, ms.
    #[prost(int64, optional, tag = "5")]
    pub respond_by_ms: Option<i64>,
    /// Decline reason as a protocol number.
    #[prost(int32, tag = "6")]
    pub decline_reason: i32,
    /// Invited at, ms.
    #[prost(int64, optional, tag = "7")]
    pub invited_at_ms: Option<i64>,
    /// Joined at, ms.
    #[prost(int64, optional, tag = "8")]
    pub joined_at_ms: Option<i64>,
    /// Ended at, ms.
    #[prost(int64, optional, tag = "9")]
    pub ended_at_ms: Option<i64>,
    /// Decline note.
    #[prost(string, optional, tag = "10")]
    pub decline_note: Option<String>,
}

/// A stored consult.
#[derive(Clone, PartialEq, Message)]
pub struct ConsultRecord {
    /// Schema version.
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// Consult id (16 bytes).
    #[prost(bytes = "vec", tag = "2")]
    pub id: Vec<u8>,
    /// Family id (16 bytes), empty for an anonymous consult.
    #[prost(bytes = "vec", tag = "3")]
    pub family: Vec<u8>,
    /// Concerned member ids.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub concerned: Vec<Vec<u8>>,
    /// Legal ground as a protocol number (0 for anonymous).
    #[prost(int32, tag = "5")]
    pub ground: i32,
    /// Consent id (16 bytes) with the consent ground.
    #[prost(bytes = "vec", tag = "6")]
    pub consent: Vec<u8>,
    /// Justification.
    #[prost(string, optional, tag = "7")]
    pub justification: Option<String>,
    /// Safety-sensitive flag.
    #[prost(bool, tag = "8")]
    pub safety_sensitive: bool,
    /// Question summary.
    #[prost(string, tag = "9")]
    pub question: String,
    /// Expertise wanted.
    #[prost(message, optional, tag = "10")]
    pub expertise: Option<v1::Expertise>,
    /// Urgency as a protocol number.
    #[prost(int32, tag = "11")]
    pub urgency: i32,
    /// Respond-by, ms.
    #[prost(int64, tag = "12")]
    pub respond_by_ms: i64,
    /// Addressed specialist (16 bytes), empty for the pool.
    #[prost(bytes = "vec", tag = "13")]
    pub addressed: Vec<u8>,
    /// Owner (16 bytes).
    #[prost(bytes = "vec", tag = "14")]
    pub owner: Vec<u8>,
    /// Owner's organisation.
    #[prost(string, tag = "15")]
    pub owner_organisation: String,
    /// State as a protocol number.
    #[prost(int32, tag = "16")]
    pub state: i32,
    /// Suspension reason as a protocol number.
    #[prost(int32, tag = "17")]
    pub suspension_reason: i32,
    /// Whether a suspended consult resumes as accepted.
    #[prost(bool, tag = "18")]
    pub resume_accepted: bool,
    /// Outcome as a protocol number.
    #[prost(int32, tag = "19")]
    pub outcome: i32,
    /// State changed at, ms.
    #[prost(int64, tag = "20")]
    pub state_changed_at_ms: i64,
    /// Participants.
    #[prost(message, repeated, tag = "21")]
    pub participants: Vec<ParticipantRecord>,
    /// Specialists who declined the pool request.
    #[prost(bytes = "vec", repeated, tag = "22")]
    pub pool_declined: Vec<Vec<u8>>,
    /// Requested at, ms.
    #[prost(int64, tag = "23")]
    pub requested_at_ms: i64,
    /// Accepted at, ms.
    #[prost(int64, optional, tag = "24")]
    pub accepted_at_ms: Option<i64>,
    /// First answer at, ms.
    #[prost(int64, optional, tag = "25")]
    pub first_answer_at_ms: Option<i64>,
    /// Closed at, ms.
    #[prost(int64, optional, tag = "26")]
    pub closed_at_ms: Option<i64>,
}

const S: Keyspace = Keyspace::Consults;

fn corrupt(reason: impl Into<String>) -> StoreError {
    super::records::corrupt(S, reason)
}

fn id16(raw: &[u8]) -> Result<[u8; 16], StoreError> {
    super::records::id_bytes(S, raw)
}

fn ms(t: Option<SystemTime>) -> Option<i64> {
    t.map(to_millis)
}

fn time(t: Option<i64>) -> Option<SystemTime> {
    t.map(from_millis)
}

fn bad(e: crate::domain::InvalidInput) -> StoreError {
    corrupt(e.to_string())
}

fn encode_participant(p: &Participant) -> ParticipantRecord {
    let (standing, respond_by_ms, decline_reason) = match p.standing {
        Standing::Invited { respond_by } => (1, Some(to_millis(respond_by)), 0),
        Standing::Active => (2, None, 0),
        Standing::Declined(reason) => (3, None, decline_to_proto(reason) as i32),
        Standing::Left => (4, None, 0),
        Standing::Removed => (5, None, 0),
        Standing::HandedOver => (6, None, 0),
    };
    ParticipantRecord {
        professional: p.professional.as_bytes().to_vec(),
        organisation: p.organisation.as_str().to_owned(),
        expertise: match p.part {
            Part::Owner => None,
            Part::Specialist(e) => Some(e.to_proto()),
        },
        standing,
        respond_by_ms,
        decline_reason,
        invited_at_ms: ms(p.invited_at),
        joined_at_ms: ms(p.joined_at),
        ended_at_ms: ms(p.ended_at),
        decline_note: p.decline_note.clone(),
    }
}

fn decode_participant(r: &ParticipantRecord) -> Result<Participant, StoreError> {
    let standing = match r.standing {
        1 => Standing::Invited {
            respond_by: from_millis(
                r.respond_by_ms
                    .ok_or_else(|| corrupt("invitation without respond-by"))?,
            ),
        },
        2 => Standing::Active,
        3 => Standing::Declined(
            DeclineReason::parse("decline_reason", r.decline_reason).map_err(bad)?,
        ),
        4 => Standing::Left,
        5 => Standing::Removed,
        6 => Standing::HandedOver,
        other => return Err(corrupt(format!("unknown standing {other}"))),
    };
    Ok(Participant {
        professional: ProfessionalId::from_bytes(id16(&r.professional)?),
        organisation: Oin::parse("organisation", &r.organisation).map_err(bad)?,
        part: match &r.expertise {
            None => Part::Owner,
            Some(e) => Part::Specialist(Expertise::parse("expertise", e).map_err(bad)?),
        },
        standing,
        invited_at: time(r.invited_at_ms),
        joined_at: time(r.joined_at_ms),
        ended_at: time(r.ended_at_ms),
        decline_note: r.decline_note.clone(),
    })
}

/// The wire value of a decline reason.
pub fn decline_to_proto(reason: DeclineReason) -> v1::DeclineReason {
    match reason {
        DeclineReason::NoCapacity => v1::DeclineReason::NoCapacity,
        DeclineReason::OutsideExpertise => v1::DeclineReason::OutsideExpertise,
        DeclineReason::ConflictOfInterest => v1::DeclineReason::ConflictOfInterest,
        DeclineReason::Other => v1::DeclineReason::Other,
    }
}

/// The wire values of a state: (state, suspension reason, outcome).
pub fn state_to_proto(
    state: State,
) -> (v1::ConsultState, v1::SuspensionReason, v1::ConsultOutcome) {
    use v1::{ConsultOutcome as O, ConsultState as C, SuspensionReason as R};
    match state {
        State::Requested => (C::Requested, R::Unspecified, O::Unspecified),
        State::Accepted => (C::Accepted, R::Unspecified, O::Unspecified),
        State::Declined => (C::Declined, R::Unspecified, O::Unspecified),
        State::Expired => (C::Expired, R::Unspecified, O::Unspecified),
        State::Suspended { reason, .. } => (
            C::Suspended,
            match reason {
                SuspensionReason::ConsentRevoked => R::ConsentRevoked,
                SuspensionReason::ConsentExpired => R::ConsentExpired,
            },
            O::Unspecified,
        ),
        State::Closed(outcome) => (
            C::Closed,
            R::Unspecified,
            match outcome {
                Outcome::AdviceGiven => O::AdviceGiven,
                Outcome::JointApproach => O::JointApproach,
                Outcome::Referred => O::Referred,
                Outcome::Withdrawn => O::Withdrawn,
                Outcome::BasisEnded => O::BasisEnded,
            },
        ),
    }
}

fn decode_state(r: &ConsultRecord) -> Result<State, StoreError> {
    Ok(match v1::ConsultState::try_from(r.state) {
        Ok(v1::ConsultState::Requested) => State::Requested,
        Ok(v1::ConsultState::Accepted) => State::Accepted,
        Ok(v1::ConsultState::Declined) => State::Declined,
        Ok(v1::ConsultState::Expired) => State::Expired,
        Ok(v1::ConsultState::Suspended) => State::Suspended {
            reason: match v1::SuspensionReason::try_from(r.suspension_reason) {
                Ok(v1::SuspensionReason::ConsentRevoked) => SuspensionReason::ConsentRevoked,
                Ok(v1::SuspensionReason::ConsentExpired) => SuspensionReason::ConsentExpired,
                _ => return Err(corrupt("suspension without reason")),
            },
            resume_accepted: r.resume_accepted,
        },
        Ok(v1::ConsultState::Closed) => {
            State::Closed(Outcome::parse("outcome", r.outcome).map_err(bad)?)
        }
        _ => return Err(corrupt(format!("unknown state {}", r.state))),
    })
}

/// Encodes a consult.
pub fn encode_consult(c: &Consult) -> Vec<u8> {
    let (family, concerned, basis) = match &c.subject {
        Subject::Family {
            family,
            concerned,
            basis,
        } => (
            family.as_bytes().to_vec(),
            concerned.iter().map(|m| m.as_bytes().to_vec()).collect(),
            Some(basis),
        ),
        Subject::Anonymous => (Vec::new(), Vec::new(), None),
    };
    let (state, reason, outcome) = state_to_proto(c.state);
    ConsultRecord {
        version: SCHEMA_VERSION,
        id: c.id.as_bytes().to_vec(),
        family,
        concerned,
        ground: basis.map_or(0, |b| b.ground_to_proto() as i32),
        consent: basis
            .and_then(LegalBasis::consent)
            .map(|id| id.as_bytes().to_vec())
            .unwrap_or_default(),
        justification: basis.and_then(|b| b.justification.clone()),
        safety_sensitive: basis.is_some_and(|b| b.safety_sensitive),
        question: c.question.clone(),
        expertise: Some(c.expertise.to_proto()),
        urgency: c.urgency.to_proto() as i32,
        respond_by_ms: to_millis(c.respond_by),
        addressed: c
            .addressed
            .map(|p| p.as_bytes().to_vec())
            .unwrap_or_default(),
        owner: c.owner.as_bytes().to_vec(),
        owner_organisation: c.owner_organisation.as_str().to_owned(),
        state: state as i32,
        suspension_reason: reason as i32,
        resume_accepted: matches!(
            c.state,
            State::Suspended {
                resume_accepted: true,
                ..
            }
        ),
        outcome: outcome as i32,
        state_changed_at_ms: to_millis(c.state_changed_at),
        participants: c.participants.iter().map(encode_participant).collect(),
        pool_declined: c
            .pool_declined
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect(),
        requested_at_ms: to_millis(c.requested_at),
        accepted_at_ms: ms(c.accepted_at),
        first_answer_at_ms: ms(c.first_answer_at),
        closed_at_ms: ms(c.closed_at),
    }
    .encode_to_vec()
}

/// Decodes a consult.
///
/// # Errors
/// [`StoreError::Corrupt`] when the bytes are not a valid record.
pub fn decode_consult(bytes: &[u8]) -> Result<Consult, StoreError> {
    let r: ConsultRecord =
        super::records::decode_versioned(S, bytes, |r: &ConsultRecord| r.version)?;
    let subject = if r.family.is_empty() {
        Subject::Anonymous
    } else {
        let ground = match v1::LegalGround::try_from(r.ground) {
            Ok(v1::LegalGround::Consent) => {
                Ground::Consent(ConsentId::from_bytes(id16(&r.consent)?))
            }
            Ok(v1::LegalGround::VeiligThuisReport) => Ground::VeiligThuisReport,
            Ok(v1::LegalGround::ChildProtectionBoardRequest) => Ground::ChildProtectionBoardRequest,
            Ok(v1::LegalGround::SupervisionOrder) => Ground::SupervisionOrder,
            Ok(v1::LegalGround::ConflictOfDuties) => Ground::ConflictOfDuties,
            _ => return Err(corrupt("family consult without a ground")),
        };
        Subject::Family {
            family: FamilyId::from_bytes(id16(&r.family)?),
            concerned: r
                .concerned
                .iter()
                .map(|m| id16(m).map(MemberId::from_bytes))
                .collect::<Result<_, _>>()?,
            basis: LegalBasis {
                ground,
                justification: r.justification.clone(),
                safety_sensitive: r.safety_sensitive,
            },
        }
    };
    let expertise = r
        .expertise
        .as_ref()
        .ok_or_else(|| corrupt("no expertise"))?;
    Ok(Consult {
        id: ConsultId::from_bytes(id16(&r.id)?),
        subject,
        question: r.question.clone(),
        expertise: Expertise::parse("expertise", expertise).map_err(bad)?,
        urgency: Urgency::parse("urgency", r.urgency).map_err(bad)?,
        respond_by: from_millis(r.respond_by_ms),
        addressed: if r.addressed.is_empty() {
            None
        } else {
            Some(ProfessionalId::from_bytes(id16(&r.addressed)?))
        },
        owner: ProfessionalId::from_bytes(id16(&r.owner)?),
        owner_organisation: Oin::parse("owner_organisation", &r.owner_organisation).map_err(bad)?,
        state: decode_state(&r)?,
        state_changed_at: from_millis(r.state_changed_at_ms),
        participants: r
            .participants
            .iter()
            .map(decode_participant)
            .collect::<Result<_, _>>()?,
        pool_declined: r
            .pool_declined
            .iter()
            .map(|p| id16(p).map(ProfessionalId::from_bytes))
            .collect::<Result<_, _>>()?,
        requested_at: from_millis(r.requested_at_ms),
        accepted_at: time(r.accepted_at_ms),
        first_answer_at: time(r.first_answer_at_ms),
        closed_at: time(r.closed_at_ms),
    })
}

/// The index entries a consult has in its current form.
fn index_keys(c: &Consult) -> Vec<(Keyspace, Vec<u8>)> {
    let id = c.id.as_bytes();
    let mut keys = vec![(
        Keyspace::ConsultsByOwner,
        [c.owner.as_bytes().as_slice(), id].concat(),
    )];
    if let Subject::Family { family, basis, .. } = &c.subject {
        keys.push((
            Keyspace::ConsultsByFamily,
            [family.as_bytes().as_slice(), id].concat(),
        ));
        if let Some(consent) = basis.consent() {
            keys.push((
                Keyspace::ConsultsByConsent,
                [consent.as_bytes().as_slice(), id].concat(),
            ));
        }
    }
    let mut specialists: Vec<ProfessionalId> = c
        .participants
        .iter()
        .filter(|p| matches!(p.part, Part::Specialist(_)))
        .map(|p| p.professional)
        .chain(c.addressed)
        .collect();
    specialists.sort();
    specialists.dedup();
    for specialist in specialists {
        keys.push((
            Keyspace::ConsultsBySpecialist,
            [specialist.as_bytes().as_slice(), id].concat(),
        ));
    }
    if c.state == State::Requested {
        keys.push((
            Keyspace::ConsultDeadlines,
            super::records::deadline_key(c.respond_by, id),
        ));
    }
    if c.addressed.is_none() && c.state == State::Requested {
        keys.push((
            Keyspace::PoolRequests,
            [c.expertise.code().as_slice(), id].concat(),
        ));
    }
    // Handed-over owners keep their history entry.
    for p in &c.participants {
        if p.part == Part::Owner && p.professional != c.owner {
            keys.push((
                Keyspace::ConsultsByOwner,
                [p.professional.as_bytes().as_slice(), id].concat(),
            ));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Consult storage over any [`Store`].
#[derive(Clone)]
pub struct Consults {
    /// The backend.
    store: Arc<dyn Store>,
}

impl Consults {
    /// Consult storage on `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Consults { store }
    }

    /// Reads a consult (as stored; settle it before use).
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the record is corrupt.
    pub async fn consult(&self, id: ConsultId) -> Result<Option<Stored<Consult>>, StoreError> {
        self.store
            .get(Keyspace::Consults, id.as_bytes())
            .await?
            .map(|bytes| Stored::decode(bytes, decode_consult))
            .transpose()
    }

    /// Adds to `batch` the change of consult `old` (as read; `None` for a new
    /// one) to `new`, with its indexes.
    pub fn stage(&self, batch: &mut Batch, old: Option<&Stored<Consult>>, new: &Consult) {
        let key = new.id.as_bytes().to_vec();
        batch.expect(
            Keyspace::Consults,
            key.clone(),
            old.map(|old| old.raw().to_vec()),
        );
        batch.put(Keyspace::Consults, key, encode_consult(new));
        if old.is_none()
            && let Subject::Family { family, .. } = &new.subject
        {
            super::audit_index::stage_link(batch, new.id, *family);
        }
        let before = old.map(|old| index_keys(old)).unwrap_or_default();
        let after = index_keys(new);
        for (space, key) in &before {
            if !after.contains(&(*space, key.clone())) {
                batch.delete(*space, key.clone());
            }
        }
        for (space, key) in after {
            if !before.contains(&(space, key.clone())) {
                batch.put(space, key, Vec::new());
            }
        }
    }

    /// Adds to `batch` the removal of consult `read` (as read) and its
    /// indexes.
    pub fn stage_erase(&self, batch: &mut Batch, read: &Stored<Consult>) {
        let key = read.id.as_bytes().to_vec();
        batch.expect(Keyspace::Consults, key.clone(), Some(read.raw().to_vec()));
        batch.delete(Keyspace::Consults, key);
        for (space, key) in index_keys(read) {
            batch.delete(space, key);
        }
    }

    /// Every stored consult, in id (request time) order: the retention
    /// job's work list.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn all(&self) -> Result<Vec<Stored<Consult>>, StoreError> {
        super::scan_all(self.store.as_ref(), Keyspace::Consults, &[])
            .await?
            .into_iter()
            .map(|(_, raw)| Stored::decode(raw, decode_consult))
            .collect()
    }

    /// Adds to `batch` the precondition that consult `read` is still as
    /// read, for a change that depends on it without changing it.
    pub fn stage_unchanged(&self, batch: &mut Batch, read: &Stored<Consult>) {
        batch.expect(
            Keyspace::Consults,
            read.id.as_bytes().to_vec(),
            Some(read.raw().to_vec()),
        );
    }

    /// Commits a batch built with [`Consults::stage`].
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a consult changed since it was read.
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.store.commit(batch).await
    }

    /// The consults listed under `prefix` in an index, in id order.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn indexed(
        &self,
        space: Keyspace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Stored<Consult>>, StoreError> {
        let entries = self.store.scan(space, prefix, None, limit).await?;
        let mut consults = Vec::with_capacity(entries.len());
        for (key, _) in entries {
            let start = key.len().saturating_sub(16);
            let id = id16(&key[start..])?;
            if let Some(consult) = self.consult(ConsultId::from_bytes(id)).await? {
                consults.push(consult);
            }
        }
        Ok(consults)
    }

    /// Up to `limit` consults still REQUESTED whose respond-by time is at
    /// or before `now`, earliest first: the expiry sweep's work.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or an index key is corrupt.
    pub async fn due(&self, now: SystemTime, limit: usize) -> Result<Vec<ConsultId>, StoreError> {
        let entries = self
            .store
            .scan(Keyspace::ConsultDeadlines, &[], None, limit)
            .await?;
        Ok(
            super::records::due_ids(Keyspace::ConsultDeadlines, entries, now)?
                .into_iter()
                .map(|(_, id)| ConsultId::from_bytes(id))
                .collect(),
        )
    }

    /// The consult requests still waiting (REQUESTED), at most `limit`:
    /// each one's expertise, and whether its respond-by time is past at
    /// `now` (the sweep expires such requests at its next round).
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn waiting(
        &self,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(crate::domain::Expertise, bool)>, StoreError> {
        let entries = self
            .store
            .scan(Keyspace::ConsultDeadlines, &[], None, limit)
            .await?;
        let due: std::collections::HashSet<[u8; 16]> =
            super::records::due_ids(Keyspace::ConsultDeadlines, entries.clone(), now)?
                .into_iter()
                .map(|(_, id)| id)
                .collect();
        let mut waiting = Vec::with_capacity(entries.len());
        for (key, _) in entries {
            let id = super::records::id_bytes(
                Keyspace::ConsultDeadlines,
                key.get(8..).unwrap_or_default(),
            )?;
            if let Some(consult) = self.consult(ConsultId::from_bytes(id)).await? {
                waiting.push((consult.expertise, due.contains(&id)));
            }
        }
        Ok(waiting)
    }

    /// Consults requested in `[from, until)`, by request time, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn requested_between(
        &self,
        from: SystemTime,
        until: SystemTime,
        limit: usize,
    ) -> Result<Vec<Stored<Consult>>, StoreError> {
        let start = ConsultId::first_at(from);
        let end = ConsultId::first_at(until);
        let mut consults = Vec::new();
        // No real id equals `start` (its random bits are zero), so scanning
        // after it misses nothing.
        let mut cursor = Some(start.as_bytes().to_vec());
        loop {
            let entries = self
                .store
                .scan(Keyspace::Consults, &[], cursor.as_deref(), 256)
                .await?;
            let exhausted = entries.len() < 256;
            for (key, value) in entries {
                if key.as_slice() >= end.as_bytes().as_slice() || consults.len() >= limit {
                    return Ok(consults);
                }
                consults.push(Stored::decode(value, decode_consult)?);
                cursor = Some(key);
            }
            if exhausted {
                return Ok(consults);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        records::{put_raw, with_unknown_field},
        redb::RedbStore,
    };

    fn anonymous_consult(now: SystemTime) -> Consult {
        let owner = ProfessionalId::generate();
        let oin = Oin::parse("oin", "00000099000000000001").unwrap();
        Consult {
            id: ConsultId::generate(now),
            subject: Subject::Anonymous,
            question: "Is this a sign of neglect?".into(),
            expertise: Expertise::Child,
            urgency: Urgency::Normal,
            respond_by: now,
            addressed: None,
            owner,
            owner_organisation: oin.clone(),
            state: State::Requested,
            state_changed_at: now,
            participants: vec![Participant::owner(owner, oin, now)],
            pool_declined: Vec::new(),
            requested_at: now,
            accepted_at: None,
            first_answer_at: None,
            closed_at: None,
        }
    }

    /// A consult written with a field this server does not know (by a
    /// newer server) can still be changed: the precondition is the bytes
    /// read, not the record encoded again without that field.
    #[tokio::test]
    async fn a_record_with_a_field_unknown_here_can_be_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
        let consults = Consults::new(store.clone());
        let now = from_millis(to_millis(SystemTime::now()));
        let consult = anonymous_consult(now);
        let raw = with_unknown_field(encode_consult(&consult));
        put_raw(
            store.as_ref(),
            Keyspace::Consults,
            consult.id.as_bytes(),
            raw,
        )
        .await;

        let read = consults.consult(consult.id).await.unwrap().unwrap();
        assert_eq!(*read, consult);
        let mut batch = Batch::new();
        consults.stage_unchanged(&mut batch, &read);
        consults.commit(batch).await.unwrap();

        let mut closed = Consult::clone(&read);
        closed.close(Outcome::Withdrawn, now).unwrap();
        let mut batch = Batch::new();
        consults.stage(&mut batch, Some(&read), &closed);
        consults.commit(batch).await.unwrap();
        assert_eq!(
            *consults.consult(consult.id).await.unwrap().unwrap(),
            closed
        );

        // A change based on what was read before is refused.
        let mut batch = Batch::new();
        consults.stage(&mut batch, Some(&read), &consult);
        assert!(matches!(
            consults.commit(batch).await,
            Err(StoreError::Conflict)
        ));
    }
}
