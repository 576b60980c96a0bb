//! How a consult looks on the wire to one viewer, and the response-time
//! report. Owner-only fields stay empty for everyone else; the
//! justification of a ground without consent is shown only to the owner and
//! active participants.

use std::{collections::BTreeMap, time::Duration};

use samenop_proto::v1;

use super::timestamp;
use crate::{
    domain::{
        Expertise, ProfessionalId,
        consult::{Consult, Part, Standing, Subject, Urgency},
    },
    store::consults::{decline_to_proto, state_to_proto},
};

/// The consult as `viewer` may see it.
pub(super) fn consult_to_proto(c: &Consult, viewer: ProfessionalId) -> v1::Consult {
    let owner = viewer == c.owner;
    let insider = c.is_active_participant(viewer);
    let (state, suspension, outcome) = state_to_proto(c.state);
    let (kind, family_id, concerned, basis) = match &c.subject {
        Subject::Family {
            family,
            concerned,
            basis,
        } => (
            v1::ConsultKind::Family,
            if owner {
                family.to_string()
            } else {
                String::new()
            },
            if owner {
                concerned.iter().map(ToString::to_string).collect()
            } else {
                Vec::new()
            },
            Some(basis.to_proto(insider)),
        ),
        Subject::Anonymous => (v1::ConsultKind::Anonymous, String::new(), Vec::new(), None),
    };
    v1::Consult {
        consult_id: c.id.to_string(),
        kind: kind as i32,
        family_id,
        concerned_member_ids: concerned,
        question_summary: c.question.clone(),
        expertise: Some(c.expertise.to_proto()),
        urgency: c.urgency.to_proto() as i32,
        respond_by: Some(timestamp(c.respond_by)),
        addressed_specialist_id: c.addressed.map(|p| p.to_string()).unwrap_or_default(),
        owner_professional_id: c.owner.to_string(),
        owner_organisation_oin: c.owner_organisation.to_string(),
        state: state as i32,
        suspension_reason: suspension as i32,
        outcome: outcome as i32,
        legal_basis: basis,
        participants: c.participants.iter().map(participant_to_proto).collect(),
        milestones: Some(v1::ConsultMilestones {
            requested_at: Some(timestamp(c.requested_at)),
            accepted_at: c.accepted_at.map(timestamp),
            first_answer_at: c.first_answer_at.map(timestamp),
            closed_at: c.closed_at.map(timestamp),
        }),
        state_changed_at: Some(timestamp(c.state_changed_at)),
    }
}

fn participant_to_proto(p: &crate::domain::consult::Participant) -> v1::Participant {
    use v1::ParticipantStatus as S;
    let (status, reason) = match p.standing {
        Standing::Invited { .. } => (S::Invited, v1::DeclineReason::Unspecified),
        Standing::Active => (S::Active, v1::DeclineReason::Unspecified),
        Standing::Declined(reason) => (S::Declined, decline_to_proto(reason)),
        Standing::Left => (S::Left, v1::DeclineReason::Unspecified),
        Standing::Removed => (S::Removed, v1::DeclineReason::Unspecified),
        Standing::HandedOver => (S::HandedOver, v1::DeclineReason::Unspecified),
    };
    let (role, expertise) = match p.part {
        Part::Owner => (v1::ParticipantRole::Owner, None),
        Part::Specialist(e) => (v1::ParticipantRole::Specialist, Some(e.to_proto())),
    };
    v1::Participant {
        professional_id: p.professional.to_string(),
        organisation_oin: p.organisation.to_string(),
        role: role as i32,
        expertise,
        status: status as i32,
        invited_at: p.invited_at.map(timestamp),
        joined_at: p.joined_at.map(timestamp),
        ended_at: p.ended_at.map(timestamp),
        decline_reason: reason as i32,
        decline_note: p.decline_note.clone().unwrap_or_default(),
    }
}

/// The consults of one expertise and urgency.
type Group<'a> = (Expertise, Vec<&'a Consult>);

/// Builds the report rows: one per expertise and urgency, ordered by
/// expertise (domain, violence type) and urgency.
pub(super) fn report(consults: &[Consult]) -> Vec<v1::ConsultReportRow> {
    let mut groups: BTreeMap<([u8; 2], Urgency), Group<'_>> = BTreeMap::new();
    for c in consults {
        groups
            .entry((c.expertise.code(), c.urgency))
            .or_insert_with(|| (c.expertise, Vec::new()))
            .1
            .push(c);
    }
    groups
        .into_iter()
        .map(|((_, urgency), (expertise, group))| {
            let to_accept: Vec<Duration> = group
                .iter()
                .filter_map(|c| {
                    c.accepted_at
                        .and_then(|t| t.duration_since(c.requested_at).ok())
                })
                .collect();
            let to_answer: Vec<Duration> = group
                .iter()
                .filter_map(|c| {
                    c.first_answer_at
                        .and_then(|t| t.duration_since(c.requested_at).ok())
                })
                .collect();
            let in_time = group
                .iter()
                .filter(|c| c.accepted_at.is_some_and(|t| t <= c.respond_by))
                .count();
            let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            let total = group.len();
            v1::ConsultReportRow {
                expertise: Some(expertise.to_proto()),
                urgency: urgency.to_proto() as i32,
                consults: count(total),
                accepted: count(to_accept.len()),
                accepted_in_time: count(in_time),
                accepted_in_time_share: if total == 0 {
                    0.0
                } else {
                    in_time as f64 / total as f64
                },
                median_time_to_accept: percentile(&to_accept, 50),
                p90_time_to_accept: percentile(&to_accept, 90),
                answered: count(to_answer.len()),
                median_time_to_first_answer: percentile(&to_answer, 50),
                p90_time_to_first_answer: percentile(&to_answer, 90),
                expired: count(
                    group
                        .iter()
                        .filter(|c| c.state == crate::domain::consult::State::Expired)
                        .count(),
                ),
            }
        })
        .collect()
}

/// The nearest-rank percentile `p` of `values`; `None` when there are none.
fn percentile(values: &[Duration], p: usize) -> Option<prost_types::Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    let value = sorted[rank.min(sorted.len()) - 1];
    prost_types::Duration::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let secs = |v: &[u64]| {
            v.iter()
                .map(|s| Duration::from_secs(*s))
                .collect::<Vec<_>>()
        };
        let median = |v: &[u64]| percentile(&secs(v), 50).map(|d| d.seconds);
        let p90 = |v: &[u64]| percentile(&secs(v), 90).map(|d| d.seconds);
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7]), Some(7));
        assert_eq!(median(&[5, 1, 3]), Some(3));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
        assert_eq!(p90(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), Some(9));
        assert_eq!(p90(&[10, 1]), Some(10));
    }
}
