//! A family's audit: asked "who touched this family", the trail gives every
//! event about the family or one of its consults (a stranger's probe, the
//! pool's look at a request, the participants' posts), exactly the events
//! of the family in the reader's share, from the audit index; a store
//! written before the index is indexed at start.

use std::collections::BTreeSet;

use samenop_client::{
    ClientError, Expertise, Role, ViolenceType,
    audit::{AuditEvent, AuditFilter, ObjectKind},
    consult::{About, LegalBasis, ListScope, NewConsult, Urgency},
};
use samenop_tests::{ORG_B, ThreadedConsult, forget_audit_indexes, threaded_consult};
use uuid::Uuid;

const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);
const ORG_C: &str = "jeugdbescherming-demoregio";

/// The ids of `events`.
fn ids(events: &[AuditEvent]) -> BTreeSet<Uuid> {
    events.iter().map(|e| e.id).collect()
}

/// Whether `event` names the family of `t` or one of `consults`.
fn about_the_family(t: &ThreadedConsult, consults: &[Uuid], event: &AuditEvent) -> bool {
    event.concerns(ObjectKind::Family, t.family.id)
        || consults
            .iter()
            .any(|c| event.concerns(ObjectKind::Consult, c))
}

#[tokio::test]
async fn a_family_query_holds_every_event_about_the_family_and_its_consults() {
    let mut t = threaded_consult().await;
    // A pool request of the same family, seen by a pool specialist.
    let pool = t
        .sanne
        .open_consult(&NewConsult {
            about: About::Family {
                family: t.family.id,
                concerned: vec![t.family.members[1].id],
                basis: LegalBasis::consent(t.consent),
            },
            question: "Wie kijkt mee?".into(),
            expertise: ABUSE,
            urgency: Urgency::Normal,
            respond_by: None,
            specialist: None,
        })
        .await
        .unwrap()
        .id;
    let lina = t
        .server
        .professional(ORG_C, "Lina", &[Role::Specialist], &[ABUSE])
        .await;
    let inbox = lina.list_consults(ListScope::Inbox).await.unwrap();
    assert!(inbox.iter().any(|c| c.id == pool));
    lina.consult(pool).await.unwrap();
    // A stranger probes the first consult and is refused.
    let bob = t
        .server
        .professional(ORG_B, "Bob", &[Role::ContactPerson], &[])
        .await;
    let probe = bob.consult(t.consult).await.unwrap_err();
    assert!(matches!(probe, ClientError::NotFound(_)), "{probe:?}");
    // The specialist answers in the thread.
    t.eva_device.catch_up(t.consult).await.unwrap();
    t.eva_device
        .send(t.consult, "Mijn antwoord", None)
        .await
        .unwrap();

    let consults = [t.consult, pool];
    let family = AuditFilter {
        family: Some(t.family.id),
        ..AuditFilter::default()
    };
    let check = |trail: &[AuditEvent], reader: &str| {
        let has = |action: &str, actor: Option<Uuid>| {
            trail.iter().any(|e| {
                e.action == format!("samenop.v1.{action}")
                    && actor.is_none_or(|a| e.actor.professional == Some(a))
            })
        };
        assert!(
            has("ConsultService/GetConsult", bob.professional()),
            "{reader}: the stranger's probe"
        );
        assert!(
            has("ConsultService/ListConsults", lina.professional()),
            "{reader}: the pool specialist's inbox"
        );
        assert!(
            has("ConsultService/GetConsult", lina.professional()),
            "{reader}: the pool specialist's look"
        );
        assert!(
            has("ThreadService/PostMessage", t.eva.professional()),
            "{reader}: the participant's post"
        );
        assert!(has("FamilyService/RecordConsent", t.sanne.professional()));
    };
    for (reader, client) in [
        ("privacy officer", &t.officer),
        ("contact person", &t.sanne),
    ] {
        // Exactly the family's events of the reader's share: the unfiltered
        // share, narrowed to what names the family or one of its consults.
        // (Read first: its own event names nothing.)
        let share = client.query_audit(&AuditFilter::default()).await.unwrap();
        let trail = client.query_audit(&family).await.unwrap();
        check(&trail, reader);
        let expected: Vec<AuditEvent> = share
            .into_iter()
            .filter(|e| about_the_family(&t, &consults, e))
            .collect();
        assert_eq!(ids(&trail), ids(&expected), "{reader}");
        // The export with the same filter holds the same events.
        let export = client.export_audit_json(&family).await.unwrap();
        let exported: BTreeSet<Uuid> = export
            .json_lines
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                value["event_id"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        let queried = ids(&trail);
        assert!(
            queried.is_subset(&exported),
            "{reader}: the export holds every event the query gave"
        );
    }

    // A store written before the audit index: indexed at start, with the
    // same answer.
    let before = ids(&t.officer.query_audit(&family).await.unwrap());
    t.server.stop().await;
    forget_audit_indexes(&t.server).await;
    t.server.launch().await;
    let after = t.officer.query_audit(&family).await.unwrap();
    assert!(
        before.is_subset(&ids(&after)),
        "the upgrade indexed the trail"
    );
    check(&after, "after the upgrade");
}
