//! The `--json` shape of each domain type, in one place: field names are
//! part of the command line's interface (documented in `--help`) and do not
//! change once published.

use std::time::SystemTime;

use samenop_client::{
    Professional,
    consult::{Consult, ConsultEvent, ConsultState, LegalGround},
    family::{Consent, ConsentStatus, Family},
    mls::ThreadMessage,
};
use serde_json::{Value, json};

use crate::{text, time};

fn at(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(time::rfc3339(t)))
}

pub(crate) fn professional(p: &Professional) -> Value {
    json!({
        "id": p.id.to_string(),
        "name": p.display_name,
        "organisation_oin": p.organisation_oin,
        "organisation_name": p.organisation_name,
        "roles": p.roles.iter().map(|r| text::role(*r).replace(' ', "_")).collect::<Vec<_>>(),
        "expertise": p.expertise.iter().map(|e| text::expertise(*e)).collect::<Vec<_>>(),
        "availability": p.availability.map(text::availability),
        "active": p.active,
    })
}

pub(crate) fn ground(g: Option<LegalGround>) -> Value {
    match g {
        None => Value::Null,
        Some(LegalGround::Consent(consent)) => {
            json!({"ground": "consent", "consent_id": consent.to_string()})
        }
        Some(other) => {
            json!({"ground": text::ground_name(other)})
        }
    }
}

pub(crate) fn consult(c: &Consult) -> Value {
    json!({
        "id": c.id.to_string(),
        "state": text::state_name(c.state),
        "state_text": text::state(c.state),
        "suspension": match c.state {
            ConsultState::Suspended(r) => Some(text::suspension_name(r)),
            _ => None,
        },
        "outcome": match c.state {
            ConsultState::Closed(o) => Some(text::outcome_name(o)),
            _ => None,
        },
        "question": c.question,
        "expertise": text::expertise(c.expertise),
        "urgency": text::urgency(c.urgency),
        "family_id": c.family.map(|f| f.to_string()),
        "concerned_member_ids": c.concerned.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "owner_id": c.owner.to_string(),
        "addressed_specialist_id": c.addressed.map(|a| a.to_string()),
        "legal_basis": ground(c.ground),
        "justification": (!c.justification.is_empty()).then_some(&c.justification),
        "flagged_for_review": c.flagged_for_review,
        "respond_by": at(c.respond_by),
        "accepted_at": at(c.accepted_at),
        "first_answer_at": at(c.first_answer_at),
        "closed_at": at(c.closed_at),
        "participants": c.participants.iter().map(|p| json!({
            "professional_id": p.professional.to_string(),
            "organisation_oin": p.organisation_oin,
            "owner": p.owner,
            "status": text::status_name(p.status),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn family(f: &Family) -> Value {
    json!({
        "id": f.id.to_string(),
        "members": f.members.iter().enumerate().map(|(i, m)| json!({
            "number": i + 1,
            "id": m.id.to_string(),
            "role": text::member_role(m.role).replace(' ', "_"),
            "age_band": text::age_band(m.age_band).replace(' ', "_"),
        })).collect::<Vec<_>>(),
        "contact_person_id": f.contact_person.professional.to_string(),
        "contact_person_oin": f.contact_person.organisation_oin,
    })
}

pub(crate) fn consent(c: &Consent) -> Value {
    json!({
        "id": c.id.to_string(),
        "family_id": c.family.to_string(),
        "status": consent_status(c.status),
        "concerned_member_ids": c.concerned.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "given_by_member_ids": c.given_by.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "expertise": c.expertise.iter().map(|e| text::expertise(*e)).collect::<Vec<_>>(),
        "organisation_oins": c.organisations,
        "valid_from": at(c.valid_from),
        "valid_until": at(c.valid_until),
    })
}

pub(crate) fn consent_status(s: ConsentStatus) -> &'static str {
    match s {
        ConsentStatus::NotYetValid => "not_yet_valid",
        ConsentStatus::Active => "active",
        ConsentStatus::Expired => "expired",
        ConsentStatus::Revoked => "revoked",
    }
}

pub(crate) fn message(m: &ThreadMessage) -> Value {
    json!({
        "consult_id": m.consult.to_string(),
        "sequence": m.sequence,
        "sender_professional_id": m.sender_professional.to_string(),
        "sender_device_id": m.sender_device.to_string(),
        "own": m.own,
        "posted_at": at(m.posted_at),
        "reply_to": m.reply_to,
        "text": m.text,
        "attachments": m.attachments.iter().map(|a| json!({
            "id": a.id.to_string(),
            "name": a.name,
            "media_type": a.media_type,
            "size": a.size,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn consult_event(e: &ConsultEvent) -> Value {
    json!({
        "consult_id": e.consult.to_string(),
        "change": format!("{:?}", e.change).to_ascii_lowercase(),
        "state": text::state_name(e.state),
        "actor_id": e.actor.map(|a| a.to_string()),
        "consult": e.view.as_ref().map(consult),
    })
}
