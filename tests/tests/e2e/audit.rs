//! The audit trail: one event for every call, allowed or denied, with who,
//! from where, on what and on which legal basis; each reader's share; and a
//! tampered event found exactly.

use std::time::Duration;

use samenop_client::{
    Client, ClientError, Expertise, Role, ViolenceType,
    audit::{AuditEvent, AuditFilter, ObjectKind, Outcome},
    consult::{About, LegalBasis, LegalGround, NewConsult, Urgency},
    family::Family,
};
use samenop_proto::v1;
use samenop_tests::{
    ORG_A, ORG_B, TestServer, family_with_consent, tamper_with_audit_event, truncate_audit,
};
use tonic::{Code, Request};
use uuid::Uuid;

const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);
const JUSTIFICATION: &str =
    "Signs of serious harm; the parents refuse contact and the child is at risk.";

/// A network with a family in org A: its contact person Sanne, org A's
/// privacy officer, a child-abuse specialist Eva in org B, and a contact
/// person Bob in org B who has nothing to do with the family.
struct Network {
    server: TestServer,
    sanne: Client,
    officer: Client,
    eva: Client,
    bob: Client,
    family: Family,
    consent: Uuid,
}

async fn network() -> Network {
    let server = TestServer::start().await;
    let sanne = server
        .professional(ORG_A, "Sanne", &[Role::ContactPerson], &[])
        .await;
    let officer = server
        .professional(ORG_A, "Pim", &[Role::PrivacyOfficer], &[])
        .await;
    let eva = server
        .professional(ORG_B, "Eva", &[Role::Specialist], &[ABUSE])
        .await;
    let bob = server
        .professional(ORG_B, "Bob", &[Role::ContactPerson], &[])
        .await;
    let (family, consent) = family_with_consent(&server, &sanne).await;
    Network {
        server,
        sanne,
        officer,
        eva,
        bob,
        family,
        consent,
    }
}

fn consult_about(n: &Network, expertise: Expertise) -> NewConsult {
    NewConsult {
        about: About::Family {
            family: n.family.id,
            concerned: vec![n.family.members[1].id],
            basis: LegalBasis::consent(n.consent),
        },
        question: "Hoe wegen wij deze signalen?".into(),
        expertise,
        urgency: Urgency::Normal,
        respond_by: None,
        specialist: None,
    }
}

/// A raw request acting as `professional` (or as no one).
fn acting<T>(message: T, professional: Option<Uuid>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(id) = professional {
        request
            .metadata_mut()
            .insert("samenop-professional", id.to_string().parse().unwrap());
    }
    request
}

/// What the test expects of one event.
fn summary(e: &AuditEvent) -> (&str, Outcome, &str) {
    (
        e.action.trim_start_matches("samenop.v1."),
        e.outcome,
        e.status_code.as_str(),
    )
}

#[tokio::test]
async fn every_call_leaves_one_event_allowed_or_denied_with_its_basis() {
    let n = network().await;
    n.server.clock.advance(Duration::from_secs(1));
    let from = n.server.clock_now();
    let sanne_id = n.sanne.professional().unwrap();
    let eva_id = n.eva.professional().unwrap();

    // 1. Another organisation's professional asks for the family: denied.
    let err = n.bob.family(n.family.id).await.unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");
    // 2. The contact person opens a pool consult on the consent: allowed.
    let opened = n
        .sanne
        .open_consult(&consult_about(&n, ABUSE))
        .await
        .unwrap();
    // 2b. ... and one on a ground without consent, with its justification.
    let mut reported = consult_about(&n, ABUSE);
    reported.about = About::Family {
        family: n.family.id,
        concerned: vec![n.family.members[1].id],
        basis: LegalBasis {
            ground: LegalGround::VeiligThuisReport,
            justification: JUSTIFICATION.into(),
            safety_sensitive: false,
        },
    };
    n.sanne.open_consult(&reported).await.unwrap();
    // 3. ... and one the consent does not cover: denied for want of a basis.
    let err = n
        .sanne
        .open_consult(&consult_about(&n, Expertise::Adult))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::FailedPrecondition(_)), "{err:?}");
    // 4. The specialist accepts: allowed, as specialist, on the consent.
    n.eva.accept_consult(opened.id).await.unwrap();
    // 5. A call naming no professional: denied before anyone is known.
    let connection = n.server.connect(ORG_A).await;
    let mut families = v1::family_service_client::FamilyServiceClient::new(connection.channel());
    let status = families
        .get_family(acting(
            v1::GetFamilyRequest {
                family_id: n.family.id.to_string(),
            },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // 6. A malformed close: allowed to try, failed.
    let mut consults = v1::consult_service_client::ConsultServiceClient::new(connection.channel());
    let status = consults
        .close_consult(acting(
            v1::CloseConsultRequest {
                consult_id: opened.id.to_string(),
                outcome: 0,
            },
            Some(sanne_id),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    // 7. A read: allowed, and accounted for too.
    n.sanne.consult(opened.id).await.unwrap();

    let events = n
        .officer
        .query_audit(&AuditFilter {
            start: Some(from),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let got: Vec<_> = events.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            ("FamilyService/GetFamily", Outcome::Denied, "NOT_FOUND"),
            ("ConsultService/OpenConsult", Outcome::Allowed, "OK"),
            ("ConsultService/OpenConsult", Outcome::Allowed, "OK"),
            (
                "ConsultService/OpenConsult",
                Outcome::Denied,
                "FAILED_PRECONDITION"
            ),
            ("ConsultService/AcceptConsult", Outcome::Allowed, "OK"),
            (
                "FamilyService/GetFamily",
                Outcome::Denied,
                "UNAUTHENTICATED"
            ),
            (
                "ConsultService/CloseConsult",
                Outcome::Failed,
                "INVALID_ARGUMENT"
            ),
            ("ConsultService/GetConsult", Outcome::Allowed, "OK"),
        ],
        "exactly one event per call, in order"
    );
    let [
        bob_get,
        open,
        reported,
        refused,
        accept,
        anonymous,
        close,
        read,
    ] = &events[..]
    else {
        unreachable!()
    };

    // Who, from where, with which certificate.
    assert_eq!(bob_get.actor.professional, n.bob.professional());
    assert_eq!(bob_get.actor.organisation_oin, TestServer::oin(ORG_B));
    assert!(bob_get.concerns(ObjectKind::Family, n.family.id));
    assert_eq!(bob_get.ground, None, "a denied read rests on nothing");
    for e in &events {
        assert_eq!(e.actor.certificate_fingerprint.len(), 64, "{e:?}");
        assert!(e.actor.network_address.starts_with("127.0.0.1:"), "{e:?}");
        assert!(!e.request_id.is_empty());
        // Stored to the millisecond.
        assert!(
            e.occurred_at
                .is_some_and(|t| t + Duration::from_millis(1) > from)
        );
    }
    assert_ne!(
        bob_get.actor.certificate_fingerprint, open.actor.certificate_fingerprint,
        "each organisation's certificate"
    );

    // What, on which basis, in which role.
    assert_eq!(open.actor.professional, Some(sanne_id));
    assert_eq!(open.actor.role, Some(Role::ContactPerson));
    assert_eq!(open.ground, Some(LegalGround::Consent(n.consent)));
    assert_eq!(open.purpose, "PURPOSE_CONSULTATION");
    assert!(open.concerns(ObjectKind::Family, n.family.id));
    assert!(open.concerns(ObjectKind::Consult, opened.id));
    assert_eq!(refused.ground, Some(LegalGround::Consent(n.consent)));
    assert!(
        refused.outcome_reason.contains("consent"),
        "{}",
        refused.outcome_reason
    );
    assert_eq!(accept.actor.professional, Some(eva_id));
    assert_eq!(accept.actor.role, Some(Role::Specialist));
    assert_eq!(accept.actor.organisation_oin, TestServer::oin(ORG_B));
    assert_eq!(accept.ground, Some(LegalGround::Consent(n.consent)));
    assert!(accept.concerns(ObjectKind::Consult, opened.id));
    assert!(accept.concerns(ObjectKind::Family, n.family.id));
    assert_eq!(anonymous.actor.professional, None);
    assert_eq!(anonymous.actor.organisation_oin, TestServer::oin(ORG_A));
    assert_eq!(reported.ground, Some(LegalGround::VeiligThuisReport));
    assert!(reported.flagged_for_review);
    assert!(close.concerns(ObjectKind::Consult, opened.id));
    assert_eq!(close.outcome_reason, "outcome has no valid value (got 0)");
    assert_eq!(read.actor.role, Some(Role::ContactPerson));

    // The events as the server sends them: nothing of the question or the
    // justification is in them, and each one checks on its own, as the
    // proto documents: SHA-256 over the previous hash and the event's
    // encoding with its hash left empty.
    let mut audit = v1::audit_service_client::AuditServiceClient::new(connection.channel());
    let raw = audit
        .query_audit(acting(
            v1::QueryAuditRequest {
                filter: Some(v1::AuditFilter {
                    family_id: n.family.id.to_string(),
                    ..Default::default()
                }),
                page_size: 500,
                page_token: String::new(),
            },
            n.officer.professional(),
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(raw.len() >= events.len());
    for event in &raw {
        let text = format!("{event:?}");
        assert!(!text.contains("signalen"), "{text}");
        assert!(!text.contains("parents refuse"), "{text}");
        let mut bare = event.clone();
        bare.hash.clear();
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        digest.update(&event.previous_hash);
        digest.update(&prost::Message::encode_to_vec(&bare));
        assert_eq!(digest.finish().as_ref(), event.hash.as_slice(), "{event:?}");
    }
    for pair in raw.windows(2) {
        if pair[1].sequence == pair[0].sequence + 1 {
            assert_eq!(pair[1].previous_hash, pair[0].hash);
        }
    }

    // The chain holds, and every event is one of it.
    let verified = n.officer.verify_audit().await.unwrap();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.events_checked, verified.last_sequence);
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn each_reader_sees_exactly_their_share() {
    let n = network().await;
    let opened = n
        .sanne
        .open_consult(&consult_about(&n, ABUSE))
        .await
        .unwrap();
    n.eva.accept_consult(opened.id).await.unwrap();
    let officer_b = n
        .server
        .professional(ORG_B, "Britt", &[Role::PrivacyOfficer], &[])
        .await;

    // Org A's privacy officer: org A's own calls, and everything on org A's
    // family, the org B specialist's accept included.
    let a = n
        .officer
        .query_audit(&AuditFilter::default())
        .await
        .unwrap();
    assert!(a.iter().all(|e| {
        e.actor.organisation_oin == TestServer::oin(ORG_A)
            || e.concerns(ObjectKind::Family, n.family.id)
    }));
    assert!(a.iter().any(|e| e.action.ends_with("/AcceptConsult")));
    assert!(a.iter().any(|e| e.action.ends_with("/RegisterFamily")));

    // Org B's privacy officer: only org B's calls (the accept, and org B's
    // own registrations); nothing org A did.
    let b = officer_b
        .query_audit(&AuditFilter::default())
        .await
        .unwrap();
    assert!(!b.is_empty());
    assert!(
        b.iter()
            .all(|e| e.actor.organisation_oin == TestServer::oin(ORG_B)),
        "{b:?}"
    );
    assert!(b.iter().any(|e| e.action.ends_with("/AcceptConsult")));
    // ... and org A's family is not theirs to filter on.
    let err = officer_b
        .query_audit(&AuditFilter {
            family: Some(n.family.id),
            ..AuditFilter::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");

    // The contact person: the events on their family only.
    let mine = n
        .sanne
        .query_audit(&AuditFilter {
            family: Some(n.family.id),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let all_mine = n.sanne.query_audit(&AuditFilter::default()).await.unwrap();
    // The same, and the record of the query just made (it names the family).
    assert_eq!(all_mine[..mine.len()], mine[..]);
    assert_eq!(all_mine.len(), mine.len() + 1);
    assert!(all_mine[mine.len()].action.ends_with("/QueryAudit"));
    assert!(
        mine.iter()
            .all(|e| e.concerns(ObjectKind::Family, n.family.id))
    );
    assert!(mine.iter().any(|e| e.action.ends_with("/AcceptConsult")));

    // Bob leads no family: he reads nothing. Eva has no reading role.
    assert!(
        n.bob
            .query_audit(&AuditFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let err = n
        .eva
        .query_audit(&AuditFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::PermissionDenied(_)), "{err:?}");
    let err = n.eva.verify_audit().await.unwrap_err();
    assert!(matches!(err, ClientError::PermissionDenied(_)), "{err:?}");

    // Bob now leads a family of his own, with a pool request that lands in
    // Eva's inbox beside Sanne's. Eva's listing names both consults, but
    // Sanne's readers learn nothing of Bob's family from it.
    let (bobs, bobs_consent) = family_with_consent(&n.server, &n.bob).await;
    let mut bobs_consult = consult_about(&n, ABUSE);
    bobs_consult.about = About::Family {
        family: bobs.id,
        concerned: vec![bobs.members[1].id],
        basis: LegalBasis::consent(bobs_consent),
    };
    n.bob.open_consult(&bobs_consult).await.unwrap();
    n.sanne
        .open_consult(&consult_about(&n, ABUSE))
        .await
        .unwrap();
    let inbox = n
        .eva
        .list_consults(samenop_client::consult::ListScope::Inbox)
        .await
        .unwrap();
    assert_eq!(inbox.len(), 2, "a pool request of each");
    for reader in [&n.sanne, &n.officer] {
        let seen = reader.query_audit(&AuditFilter::default()).await.unwrap();
        assert!(seen.iter().any(|e| e.action.ends_with("/ListConsults")));
        let text = format!("{seen:?}");
        assert!(!text.contains(&bobs.id.to_string()), "{text}");
    }
    let bob_sees = n.bob.query_audit(&AuditFilter::default()).await.unwrap();
    assert!(bob_sees.iter().any(|e| e.action.ends_with("/ListConsults")));
    assert!(
        !format!("{bob_sees:?}").contains(&n.family.id.to_string()),
        "Bob's readers learn nothing of Sanne's family"
    );

    // Each refusal is itself in the trail, as a denial.
    let denials = officer_b
        .query_audit(&AuditFilter {
            professional: n.eva.professional(),
            outcome: Some(Outcome::Denied),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = denials.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "samenop.v1.AuditService/QueryAudit",
            "samenop.v1.AuditService/VerifyAudit"
        ]
    );
}

/// The privacy officer's verification, on a new connection to the
/// restarted server.
async fn verify_after_restart(n: &Network) -> samenop_client::audit::Verification {
    n.server
        .connect(ORG_A)
        .await
        .acting_as(n.officer.professional().unwrap())
        .verify_audit()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_flipped_byte_in_a_stored_event_is_reported_at_exactly_that_event() {
    let mut n = network().await;
    let before = n.officer.verify_audit().await.unwrap();
    assert!(before.ok, "{before:?}");
    let target = before.last_sequence / 2;
    assert!(target > 1);

    n.server.stop().await;
    tamper_with_audit_event(&n.server, target).await;
    n.server.launch().await;

    let after = verify_after_restart(&n).await;
    assert!(!after.ok);
    assert_eq!(after.first_broken, Some(target), "{after:?}");
    assert_eq!(after.fault, "AUDIT_CHAIN_FAULT_HASH_MISMATCH");
    assert_eq!(after.events_checked, target - 1);
    assert!(
        after.detail.contains(&format!("event {target}")),
        "{after:?}"
    );
}

#[tokio::test]
async fn removing_the_last_events_is_caught_by_the_signed_checkpoint() {
    let mut n = network().await;
    let before = n.officer.verify_audit().await.unwrap();
    assert!(before.ok, "{before:?}");
    // A graceful stop signs a checkpoint of the chain's end.
    n.server.stop().await;
    let last = n.server.audit_head().await;
    assert!(last > 5);
    truncate_audit(&n.server, last - 3).await;
    n.server.launch().await;

    let after = verify_after_restart(&n).await;
    assert!(!after.ok, "{after:?}");
    assert_eq!(after.fault, "AUDIT_CHAIN_FAULT_TRUNCATED");
    assert_eq!(after.first_broken, Some(last - 2), "{after:?}");
    assert!(after.checkpoints_checked >= 1);
}

#[tokio::test]
async fn the_export_is_the_query_as_json_lines_with_a_checkpoint() {
    let n = network().await;
    n.sanne
        .open_consult(&consult_about(&n, ABUSE))
        .await
        .unwrap();
    let filter = AuditFilter {
        family: Some(n.family.id),
        ..AuditFilter::default()
    };
    let events = n.sanne.query_audit(&filter).await.unwrap();
    let export = n.sanne.export_audit_json(&filter).await.unwrap();
    let lines: Vec<serde_json::Value> = export
        .json_lines
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    // The same events as the query, then the query and the export
    // themselves (each audited before its answer leaves).
    assert_eq!(lines.len(), events.len() + 2);
    assert_eq!(
        [
            &lines[events.len()]["action"],
            &lines[events.len() + 1]["action"]
        ],
        [
            "samenop.v1.AuditService/QueryAudit",
            "samenop.v1.AuditService/ExportAudit"
        ]
    );
    for (line, event) in lines.iter().zip(&events) {
        assert_eq!(line["sequence"], event.sequence);
        assert_eq!(line["action"], event.action.as_str());
        let hex: String = event.hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(line["hash"], hex.as_str());
        assert!(line["occurred_at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(
        lines.last().unwrap()["outcome"],
        "AUDIT_OUTCOME_ALLOWED",
        "{:?}",
        lines.last()
    );
    let (_, key) = export
        .checkpoint
        .expect("the newest checkpoint comes along");
    let verified = n.officer.verify_audit().await.unwrap();
    assert_eq!(verified.latest_checkpoint.map(|(_, k)| k), Some(key));

    // Someone else's family is not in Bob's share.
    let err = n.bob.export_audit_json(&filter).await.unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn the_transparency_view_withholds_safety_sensitive_sharing_and_records_it() {
    let n = network().await;
    let eva_id = n.eva.professional().unwrap();
    let on_consent = n
        .sanne
        .open_consult(&NewConsult {
            specialist: Some(eva_id),
            ..consult_about(&n, ABUSE)
        })
        .await
        .unwrap();
    n.eva.accept_consult(on_consent.id).await.unwrap();
    let sensitive = n
        .sanne
        .open_consult(&NewConsult {
            about: About::Family {
                family: n.family.id,
                concerned: vec![n.family.members[1].id],
                basis: LegalBasis {
                    ground: LegalGround::VeiligThuisReport,
                    justification: JUSTIFICATION.into(),
                    safety_sensitive: true,
                },
            },
            specialist: Some(eva_id),
            ..consult_about(&n, ABUSE)
        })
        .await
        .unwrap();
    n.eva.accept_consult(sensitive.id).await.unwrap();

    let view = n.sanne.family_transparency(n.family.id).await.unwrap();
    assert_eq!(view.withheld, 1);
    let [entry] = view.entries.as_slice() else {
        panic!("one consultation shown: {view:?}");
    };
    assert_eq!(entry.organisation_oin, TestServer::oin(ORG_B));
    assert_eq!(entry.expertise, ABUSE);
    assert_eq!(entry.ground, LegalGround::Consent(n.consent));
    assert_eq!(entry.ended_at, None);

    // Only the family's contact person gets the view.
    for other in [&n.officer, &n.bob, &n.eva] {
        let err = other.family_transparency(n.family.id).await.unwrap_err();
        assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");
    }
    // The withholding is on record, naming what was withheld.
    let trail = n
        .sanne
        .query_audit(&AuditFilter {
            consult: Some(sensitive.id),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let recorded = trail
        .iter()
        .find(|e| e.action.ends_with("/GetFamilyTransparency") && e.outcome == Outcome::Allowed)
        .expect("the view's event names the withheld consult");
    assert!(recorded.detail.contains("withheld 1"), "{recorded:?}");
}

#[tokio::test]
async fn thread_calls_are_audited_allowed_and_denied() {
    let t = samenop_tests::threaded_consult().await;
    // Eva reads the thread and its attachment, and subscribes.
    let read = t.eva_device.catch_up(t.consult).await.unwrap();
    t.eva_device
        .open_attachment(t.consult, &read[0].attachments[0])
        .await
        .unwrap();
    let mut events = t.eva_device.subscribe(None).await.unwrap();
    samenop_tests::within("Eva's first event", events.next())
        .await
        .unwrap();
    // An outsider's device is refused the thread.
    let olga = t
        .server
        .professional(ORG_B, "Olga", &[Role::Specialist], &[ABUSE])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let olga_device = samenop_client::mls::Messenger::open(&olga, dir.path(), "laptop")
        .await
        .unwrap();
    let err = olga_device.catch_up(t.consult).await.unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");

    let trail = t
        .sanne
        .query_audit(&AuditFilter {
            consult: Some(t.consult),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let seen = |action: &str, outcome: Outcome| {
        trail.iter().any(|e| {
            e.action == format!("samenop.v1.{action}")
                && e.outcome == outcome
                && e.concerns(ObjectKind::Consult, t.consult)
        })
    };
    for action in [
        "DirectoryService/ClaimKeyPackages",
        "ThreadService/PostCommit",
        "ThreadService/PostMessage",
        "ThreadService/UploadAttachment",
        "ThreadService/FetchThread",
        "ThreadService/DownloadAttachment",
    ] {
        assert!(
            seen(action, Outcome::Allowed),
            "{action} allowed is missing"
        );
    }
    assert!(
        seen("ThreadService/FetchThread", Outcome::Denied),
        "the outsider's refused read is on record"
    );
    // Device registration, key packages and subscriptions concern a device.
    let officer_b = t
        .server
        .professional(ORG_B, "Pia", &[Role::PrivacyOfficer], &[])
        .await;
    let b_trail = officer_b
        .query_audit(&AuditFilter {
            professional: t.eva.professional(),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    for action in [
        "DirectoryService/RegisterDevice",
        "DirectoryService/UploadKeyPackages",
        "ThreadService/Subscribe",
    ] {
        assert!(
            b_trail.iter().any(
                |e| e.action == format!("samenop.v1.{action}") && e.outcome == Outcome::Allowed
            ),
            "{action} is missing"
        );
    }
}
