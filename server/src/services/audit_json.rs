//! The JSON-lines form of audit events, for a privacy officer's export:
//! field names as in `samenop.v1.AuditEvent` (snake_case), enums by value
//! name, times in RFC 3339 (UTC), bytes in lower-case hex.

use samenop_proto::v1;
use serde_json::{Value, json};

fn hex(bytes: &[u8]) -> String {
    crate::audit_key::hex(bytes)
}

fn time(t: Option<&prost_types::Timestamp>) -> Value {
    // prost's Timestamp displays as RFC 3339 in UTC.
    t.map_or(Value::Null, |t| Value::String(t.to_string()))
}

fn name<E: TryFrom<i32>>(value: i32, as_str: impl Fn(&E) -> &'static str) -> String {
    E::try_from(value).map_or_else(|_| value.to_string(), |e| as_str(&e).to_owned())
}

/// One event as one JSON line, ending in a newline.
pub(super) fn json_line(event: &v1::AuditEvent) -> String {
    let actor = event.actor.clone().unwrap_or_default();
    let basis = event.legal_basis.as_ref().map_or(Value::Null, |b| {
        json!({
            "ground": name(b.ground, v1::LegalGround::as_str_name),
            "consent_id": b.consent_id,
            "safety_sensitive": b.safety_sensitive,
            "flagged_for_review": b.flagged_for_review,
        })
    });
    let objects: Vec<Value> = event
        .objects
        .iter()
        .map(|o| {
            json!({
                "object_type": name(o.object_type, v1::AuditObjectType::as_str_name),
                "object_id": o.object_id,
            })
        })
        .collect();
    let line = json!({
        "event_id": event.event_id,
        "sequence": event.sequence,
        "action": event.action,
        "occurred_at": time(event.occurred_at.as_ref()),
        "outcome": name(event.outcome, v1::AuditOutcome::as_str_name),
        "status_code": event.status_code,
        "outcome_reason": event.outcome_reason,
        "actor": {
            "by_server": actor.by_server,
            "professional_id": actor.professional_id,
            "organisation_oin": actor.organisation_oin,
            "role": name(actor.role, v1::Role::as_str_name),
            "on_behalf_of_professional_id": actor.on_behalf_of_professional_id,
            "certificate_fingerprint": actor.certificate_fingerprint,
            "network_address": actor.network_address,
        },
        "objects": objects,
        "legal_basis": basis,
        "purpose": name(event.purpose, v1::Purpose::as_str_name),
        "detail": event.detail,
        "request_id": event.request_id,
        "previous_hash": hex(&event.previous_hash),
        "hash": hex(&event.hash),
    });
    format!("{line}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_enums_formats_times_and_hexes_bytes() {
        let event = v1::AuditEvent {
            sequence: 3,
            action: "samenop.v1.FamilyService/GetFamily".into(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            outcome: v1::AuditOutcome::Denied as i32,
            previous_hash: vec![0xab; 2],
            objects: vec![v1::AuditObject {
                object_type: v1::AuditObjectType::Family as i32,
                object_id: "f".into(),
            }],
            ..Default::default()
        };
        let line = json_line(&event);
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let parsed: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(parsed["outcome"], "AUDIT_OUTCOME_DENIED");
        assert_eq!(parsed["occurred_at"], "2023-11-14T22:13:20Z");
        assert_eq!(parsed["previous_hash"], "abab");
        assert_eq!(
            parsed["objects"][0]["object_type"],
            "AUDIT_OBJECT_TYPE_FAMILY"
        );
        assert_eq!(parsed["legal_basis"], Value::Null);
    }
}
