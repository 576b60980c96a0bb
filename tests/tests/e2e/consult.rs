//! Consults end to end: the whole flow, every legal ground, routing (pool,
//! named, invitations), two concurrent accepts, expiry by the clock,
//! suspension on consent revocation and expiry, handover, the report, and
//! an authorisation matrix of wrong actors.

use std::time::Duration;

use samenop_client::{
    Client, ClientError, Expertise, Role, ViolenceType,
    consult::{
        About, ConsultState, DeclineReason, LegalBasis, LegalGround, ListScope, NewConsult,
        Outcome, ParticipantStatus, SuspensionReason, Urgency,
    },
    family::{AgeBand, Family, MemberAge, MemberRole, NewMember, RevocationReason},
};
use samenop_tests::{ORG_A, ORG_B, TestServer, abuse_consent, family_with_consent};
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 3600);
const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);
const ORG_C: &str = "jeugdbescherming-demoregio";
const JUSTIFICATION: &str =
    "Signs of serious harm; the parents refuse contact and the child is at risk.";

/// A contact person in org A with a family (a parent and a young child)
/// and a consent covering child abuse expertise for the child.
struct Setup {
    server: TestServer,
    sanne: Client,
    family: Family,
    consent: Uuid,
}

async fn setup() -> Setup {
    let server = TestServer::start().await;
    let sanne = server
        .professional(ORG_A, "Sanne", &[Role::ContactPerson], &[])
        .await;
    let (family, consent) = family_with_consent(&server, &sanne).await;
    Setup {
        server,
        sanne,
        family,
        consent,
    }
}

fn about(s: &Setup, basis: LegalBasis) -> About {
    About::Family {
        family: s.family.id,
        concerned: vec![s.family.members[1].id],
        basis,
    }
}

fn new_consult(about: About, specialist: Option<Uuid>) -> NewConsult {
    NewConsult {
        about,
        question: "Hoe wegen wij deze signalen?".into(),
        expertise: ABUSE,
        urgency: Urgency::Normal,
        respond_by: None,
        specialist,
    }
}

async fn specialist(server: &TestServer, slug: &str, name: &str, expertise: Expertise) -> Client {
    server
        .professional(slug, name, &[Role::Specialist], &[expertise])
        .await
}

/// A new consent of the family, valid for one day: its id.
async fn one_day_consent(s: &Setup) -> Uuid {
    s.sanne
        .record_consent(
            s.family.id,
            &abuse_consent(&s.family, &s.server, Vec::new(), DAY),
        )
        .await
        .unwrap()
        .id
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ClientError {
    result.expect_err("the call must be refused")
}

#[tokio::test]
async fn the_whole_flow_from_family_to_closed_consult() {
    let s = setup().await;
    let eva = specialist(&s.server, ORG_B, "Eva", ABUSE).await;
    let opened = s
        .sanne
        .open_consult(&new_consult(
            about(&s, LegalBasis::consent(s.consent)),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(opened.state, ConsultState::Requested);
    assert_eq!(
        opened.family,
        Some(s.family.id),
        "the owner sees the family link"
    );

    // The pool request is in Eva's inbox, without the family link.
    let inbox = eva.list_consults(ListScope::Inbox).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].id, opened.id);
    assert_eq!(inbox[0].family, None);
    assert!(inbox[0].concerned.is_empty());

    let accepted = eva.accept_consult(opened.id).await.unwrap();
    assert_eq!(accepted.state, ConsultState::Accepted);
    assert!(accepted.accepted_at.is_some());
    assert!(
        eva.list_consults(ListScope::Inbox)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        eva.list_consults(ListScope::Participating).await.unwrap()[0].id,
        opened.id
    );
    assert_eq!(
        s.sanne.list_consults(ListScope::Owned).await.unwrap()[0].state,
        ConsultState::Accepted
    );

    s.server.clock.advance(Duration::from_secs(3600));
    let closed = s
        .sanne
        .close_consult(opened.id, Outcome::AdviceGiven)
        .await
        .unwrap();
    assert_eq!(closed.state, ConsultState::Closed(Outcome::AdviceGiven));
    assert!(closed.closed_at.is_some());
    let again = code(s.sanne.close_consult(opened.id, Outcome::Withdrawn).await);
    assert!(
        matches!(again, ClientError::FailedPrecondition(_)),
        "{again:?}"
    );

    // The report counts it, with no family data in it.
    let report = s
        .sanne
        .consult_report(s.server.clock_now() - DAY, s.server.clock_now() + DAY)
        .await
        .unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(
        (
            report[0].consults,
            report[0].accepted,
            report[0].accepted_in_time,
            report[0].expired
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(report[0].accepted_in_time_share, 1.0);
    assert_eq!(report[0].median_time_to_accept, Some(Duration::ZERO));
}

#[tokio::test]
async fn every_legal_ground_and_what_it_needs() {
    let s = setup().await;
    // The four grounds without consent: open with a justification, flagged.
    for ground in [
        LegalGround::VeiligThuisReport,
        LegalGround::ChildProtectionBoardRequest,
        LegalGround::SupervisionOrder,
        LegalGround::ConflictOfDuties,
    ] {
        let basis = LegalBasis {
            ground,
            justification: JUSTIFICATION.into(),
            safety_sensitive: true,
        };
        let opened = s
            .sanne
            .open_consult(&new_consult(about(&s, basis), None))
            .await
            .unwrap();
        assert_eq!(opened.ground, Some(ground));
        assert!(opened.flagged_for_review);
        assert_eq!(opened.justification, JUSTIFICATION);
        // Without a justification: refused, saying what is missing.
        let bare = LegalBasis {
            ground,
            justification: String::new(),
            safety_sensitive: false,
        };
        match code(
            s.sanne
                .open_consult(&new_consult(about(&s, bare), None))
                .await,
        ) {
            ClientError::InvalidArgument(m) => assert!(m.contains("justification"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // A justification holding a BSN-like number is refused.
    let bsn = LegalBasis {
        ground: LegalGround::VeiligThuisReport,
        justification: "Kind met nummer 111222333 is in gevaar, zie dossier.".into(),
        safety_sensitive: false,
    };
    assert!(matches!(
        code(
            s.sanne
                .open_consult(&new_consult(about(&s, bsn), None))
                .await
        ),
        ClientError::InvalidArgument(_)
    ));

    // Consent: it must cover the expertise, the members, and (when it names
    // organisations) the specialist's organisation.
    let mut other_expertise = new_consult(about(&s, LegalBasis::consent(s.consent)), None);
    other_expertise.expertise = Expertise::Adult;
    match code(s.sanne.open_consult(&other_expertise).await) {
        ClientError::FailedPrecondition(m) => {
            assert!(m.contains("does not cover the expertise"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let parent_too = About::Family {
        family: s.family.id,
        concerned: vec![s.family.members[0].id],
        basis: LegalBasis::consent(s.consent),
    };
    match code(s.sanne.open_consult(&new_consult(parent_too, None)).await) {
        ClientError::FailedPrecondition(m) => assert!(m.contains("does not concern member"), "{m}"),
        other => panic!("{other:?}"),
    }
    let only_c = s
        .sanne
        .record_consent(
            s.family.id,
            &abuse_consent(
                &s.family,
                &s.server,
                vec![TestServer::oin(ORG_C).into()],
                30 * DAY,
            ),
        )
        .await
        .unwrap();
    let eva_b = specialist(&s.server, ORG_B, "Eva", ABUSE).await;
    let mila_c = specialist(&s.server, ORG_C, "Mila", ABUSE).await;
    let to_b = new_consult(
        about(&s, LegalBasis::consent(only_c.id)),
        eva_b.professional(),
    );
    match code(s.sanne.open_consult(&to_b).await) {
        ClientError::FailedPrecondition(m) => {
            assert!(m.contains("does not cover organisation"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let to_c = new_consult(
        about(&s, LegalBasis::consent(only_c.id)),
        mila_c.professional(),
    );
    assert_eq!(
        s.sanne.open_consult(&to_c).await.unwrap().addressed,
        mila_c.professional()
    );
    // A pool request on that consent reaches only org C's specialists.
    let pool = s
        .sanne
        .open_consult(&new_consult(
            about(&s, LegalBasis::consent(only_c.id)),
            None,
        ))
        .await
        .unwrap();
    assert!(
        eva_b
            .list_consults(ListScope::Inbox)
            .await
            .unwrap()
            .iter()
            .all(|c| c.id != pool.id)
    );
    assert!(matches!(
        code(eva_b.accept_consult(pool.id).await),
        ClientError::NotFound(_)
    ));
    assert!(
        mila_c
            .list_consults(ListScope::Inbox)
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == pool.id)
    );

    // A revoked consent is no basis.
    s.sanne
        .revoke_consent(only_c.id, RevocationReason::Withdrawn, None)
        .await
        .unwrap();
    match code(s.sanne.open_consult(&to_c).await) {
        ClientError::FailedPrecondition(m) => assert!(m.contains("was revoked"), "{m}"),
        other => panic!("{other:?}"),
    }
    // An anonymous consult needs no family and no basis.
    let anonymous = s
        .sanne
        .open_consult(&new_consult(About::Anonymous, None))
        .await
        .unwrap();
    assert_eq!((anonymous.family, anonymous.ground), (None, None));
}

// A multi-threaded runtime, so the server handles the two accepts truly in
// parallel (on one thread they could not interleave and the test could not fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_concurrent_accepts_exactly_one_wins() {
    let s = setup().await;
    let eva = specialist(&s.server, ORG_B, "Eva", ABUSE).await;
    let jan = specialist(&s.server, ORG_C, "Jan", ABUSE).await;
    for round in 0..40 {
        let opened = s
            .sanne
            .open_consult(&new_consult(
                about(&s, LegalBasis::consent(s.consent)),
                None,
            ))
            .await
            .unwrap();
        let (a, b) = tokio::join!(eva.accept_consult(opened.id), jan.accept_consult(opened.id));
        let outcomes = [a.is_ok(), b.is_ok()];
        assert_eq!(
            outcomes.iter().filter(|ok| **ok).count(),
            1,
            "round {round}: {outcomes:?}"
        );
        let loser = if a.is_ok() { b } else { a };
        match loser {
            Err(ClientError::AlreadyExists(m)) => assert!(m.contains("already accepted"), "{m}"),
            other => panic!("round {round}: the loser must be told it was taken, got {other:?}"),
        }
        let stored = s.sanne.consult(opened.id).await.unwrap();
        let active = stored
            .participants
            .iter()
            .filter(|p| !p.owner && p.status == ParticipantStatus::Active)
            .count();
        assert_eq!(active, 1);
    }
}

#[tokio::test]
async fn a_request_expires_at_its_respond_by_time() {
    let s = setup().await;
    let eva = specialist(&s.server, ORG_B, "Eva", ABUSE).await;
    let mut acute = new_consult(about(&s, LegalBasis::consent(s.consent)), None);
    acute.urgency = Urgency::Acute;
    let opened = s.sanne.open_consult(&acute).await.unwrap();
    s.server.clock.advance(Duration::from_secs(5 * 3600)); // acute: 4 hours
    let expired = s.sanne.consult(opened.id).await.unwrap();
    assert_eq!(
        expired.state,
        ConsultState::Expired,
        "the contact person sees it expired"
    );
    assert!(
        eva.list_consults(ListScope::Inbox)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        code(eva.accept_consult(opened.id).await),
        ClientError::FailedPrecondition(_) | ClientError::NotFound(_)
    ));
    let report = s
        .sanne
        .consult_report(s.server.clock_now() - DAY, s.server.clock_now() + DAY)
        .await
        .unwrap();
    assert_eq!(
        (report[0].consults, report[0].accepted, report[0].expired),
        (1, 0, 1)
    );
}

#[tokio::test]
async fn revocation_and_expiry_of_consent_suspend_consults_until_a_new_basis() {
    let s = setup().await;
    let eva = specialist(&s.server, ORG_B, "Eva", ABUSE).await;
    let opened = s
        .sanne
        .open_consult(&new_consult(
            about(&s, LegalBasis::consent(s.consent)),
            None,
        ))
        .await
        .unwrap();
    eva.accept_consult(opened.id).await.unwrap();

    let (_, suspended) = s
        .sanne
        .revoke_consent(s.consent, RevocationReason::Withdrawn, None)
        .await
        .unwrap();
    assert_eq!(suspended, vec![opened.id]);
    let seen = eva.consult(opened.id).await.unwrap();
    assert_eq!(
        seen.state,
        ConsultState::Suspended(SuspensionReason::ConsentRevoked),
        "visible to participants"
    );

    // A new consent, valid for one day, restores it.
    let short = one_day_consent(&s).await;
    let resumed = s
        .sanne
        .change_legal_basis(opened.id, &LegalBasis::consent(short))
        .await
        .unwrap();
    assert_eq!(resumed.state, ConsultState::Accepted);

    // It expires by itself a day later.
    s.server.clock.advance(2 * DAY);
    assert_eq!(
        s.sanne.consult(opened.id).await.unwrap().state,
        ConsultState::Suspended(SuspensionReason::ConsentExpired)
    );
    // A ground without consent restores it too, and is flagged.
    let ground = LegalBasis {
        ground: LegalGround::ConflictOfDuties,
        justification: JUSTIFICATION.into(),
        safety_sensitive: false,
    };
    let again = s
        .sanne
        .change_legal_basis(opened.id, &ground)
        .await
        .unwrap();
    assert_eq!(again.state, ConsultState::Accepted);
    assert!(again.flagged_for_review);
}

/// A listing reads each consent once for all its consults (ARCHITECTURE
/// decision 43): consults on two consents, one of which expired, are each
/// settled by their own.
#[tokio::test]
async fn a_listing_settles_each_consult_by_its_own_consent() {
    let s = setup().await;
    let eva = specialist(&s.server, ORG_B, "Eva", ABUSE).await;
    let short = one_day_consent(&s).await;
    let mut on_short = Vec::new();
    for basis in [short, s.consent, short] {
        let opened = s
            .sanne
            .open_consult(&new_consult(about(&s, LegalBasis::consent(basis)), None))
            .await
            .unwrap();
        eva.accept_consult(opened.id).await.unwrap();
        if basis == short {
            on_short.push(opened.id);
        }
    }
    s.server.clock.advance(2 * DAY);
    let owned = s.sanne.list_consults(ListScope::Owned).await.unwrap();
    let participating = eva.list_consults(ListScope::Participating).await.unwrap();
    for listing in [owned, participating] {
        assert_eq!(listing.len(), 3);
        for c in listing {
            let expected = if on_short.contains(&c.id) {
                ConsultState::Suspended(SuspensionReason::ConsentExpired)
            } else {
                ConsultState::Accepted
            };
            assert_eq!(c.state, expected, "consult {}", c.id);
        }
    }
}

#[tokio::test]
async fn named_requests_invitations_removal_and_leaving() {
    let s = setup().await;
    let eva = specialist(&s.server, ORG_B, "Eva", ABUSE).await;
    let jan = specialist(&s.server, ORG_C, "Jan", ABUSE).await;
    let named = s
        .sanne
        .open_consult(&new_consult(
            about(&s, LegalBasis::consent(s.consent)),
            eva.professional(),
        ))
        .await
        .unwrap();
    assert!(
        jan.list_consults(ListScope::Inbox)
            .await
            .unwrap()
            .is_empty(),
        "a named request is not in the pool"
    );
    assert!(matches!(
        code(jan.consult(named.id).await),
        ClientError::NotFound(_)
    ));
    let note = code(
        eva.decline_consult(named.id, DeclineReason::Other, "")
            .await,
    );
    assert!(
        matches!(note, ClientError::InvalidArgument(_)),
        "OTHER needs a note"
    );
    let declined = eva
        .decline_consult(named.id, DeclineReason::NoCapacity, "")
        .await
        .unwrap();
    assert_eq!(
        declined, None,
        "a declined request leaves the specialist's view"
    );
    assert_eq!(
        s.sanne.consult(named.id).await.unwrap().state,
        ConsultState::Declined
    );

    // A pool decline leaves only that specialist's inbox.
    let pool = s
        .sanne
        .open_consult(&new_consult(
            about(&s, LegalBasis::consent(s.consent)),
            None,
        ))
        .await
        .unwrap();
    eva.decline_consult(pool.id, DeclineReason::ConflictOfInterest, "")
        .await
        .unwrap();
    assert!(
        eva.list_consults(ListScope::Inbox)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        jan.list_consults(ListScope::Inbox).await.unwrap()[0].id,
        pool.id
    );
    jan.accept_consult(pool.id).await.unwrap();

    // Invite Eva after all; she accepts, then leaves; Jan is removed.
    s.sanne
        .invite_specialist(pool.id, eva.professional().unwrap(), ABUSE)
        .await
        .unwrap();
    let twice = code(
        s.sanne
            .invite_specialist(pool.id, eva.professional().unwrap(), ABUSE)
            .await,
    );
    assert!(matches!(twice, ClientError::AlreadyExists(_)), "{twice:?}");
    assert_eq!(
        eva.list_consults(ListScope::Inbox).await.unwrap()[0].id,
        pool.id
    );
    eva.accept_consult(pool.id).await.unwrap();
    eva.leave_consult(pool.id).await.unwrap();
    assert!(
        matches!(code(eva.consult(pool.id).await), ClientError::NotFound(_)),
        "left: no access"
    );
    let removed = s
        .sanne
        .remove_participant(pool.id, jan.professional().unwrap())
        .await
        .unwrap();
    assert!(
        removed
            .participants
            .iter()
            .any(|p| p.professional == jan.professional().unwrap()
                && p.status == ParticipantStatus::Removed)
    );
    assert!(
        matches!(code(jan.consult(pool.id).await), ClientError::NotFound(_)),
        "removed: no access"
    );
    assert!(matches!(
        code(
            s.sanne
                .remove_participant(pool.id, s.sanne.professional().unwrap())
                .await
        ),
        ClientError::FailedPrecondition(_)
    ));
}

#[tokio::test]
async fn a_handover_moves_every_consult_of_the_family_ended_ones_too() {
    let s = setup().await;
    let eva = specialist(&s.server, ORG_B, "Eva", ABUSE).await;
    let open = s
        .sanne
        .open_consult(&new_consult(
            about(&s, LegalBasis::consent(s.consent)),
            None,
        ))
        .await
        .unwrap();
    eva.accept_consult(open.id).await.unwrap();
    // Ended before the handover: one closed on a safety-sensitive ground,
    // one declined.
    let safety = LegalBasis {
        ground: LegalGround::VeiligThuisReport,
        justification: JUSTIFICATION.into(),
        safety_sensitive: true,
    };
    let closed = s
        .sanne
        .open_consult(&new_consult(about(&s, safety), None))
        .await
        .unwrap();
    s.sanne
        .close_consult(closed.id, Outcome::Withdrawn)
        .await
        .unwrap();
    let declined = s
        .sanne
        .open_consult(&new_consult(
            about(&s, LegalBasis::consent(s.consent)),
            eva.professional(),
        ))
        .await
        .unwrap();
    eva.decline_consult(declined.id, DeclineReason::NoCapacity, "")
        .await
        .unwrap();

    // Handed over within the organisation.
    let daan = s
        .server
        .professional(ORG_A, "Daan", &[Role::ContactPerson], &[])
        .await;
    let (_, mut moved) = s
        .sanne
        .hand_over_family(s.family.id, daan.professional().unwrap())
        .await
        .unwrap();
    moved.sort();
    let mut all = vec![open.id, closed.id, declined.id];
    all.sort();
    assert_eq!(moved, all, "every consult of the family moves");

    // The new contact person owns each of them, whatever its state, and
    // sees it as its owner does.
    for id in &all {
        let owned = daan.consult(*id).await.unwrap();
        assert_eq!(owned.owner, daan.professional().unwrap());
        assert_eq!(owned.family, Some(s.family.id));
        assert!(
            owned
                .participants
                .iter()
                .any(|p| p.owner && p.status == ParticipantStatus::HandedOver)
        );
    }
    assert_eq!(
        daan.consult(closed.id).await.unwrap().justification,
        JUSTIFICATION
    );
    let mut listed: Vec<Uuid> = daan
        .list_consults(ListScope::Owned)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    listed.sort();
    assert_eq!(listed, all);

    // The previous one sees none of them: exactly as a stranger would.
    let unknown = Uuid::now_v7();
    let stranger_text = match code(s.sanne.consult(unknown).await) {
        ClientError::NotFound(m) => m.replace(&unknown.to_string(), "ID"),
        other => panic!("{other:?}"),
    };
    for id in &all {
        match code(s.sanne.consult(*id).await) {
            ClientError::NotFound(m) => {
                assert_eq!(m.replace(&id.to_string(), "ID"), stranger_text);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        code(s.sanne.close_consult(open.id, Outcome::Withdrawn).await),
        ClientError::NotFound(_)
    ));
    assert!(
        s.sanne
            .list_consults(ListScope::Owned)
            .await
            .unwrap()
            .is_empty()
    );
    // The specialist stays; the family is never handed to them.
    assert_eq!(eva.consult(open.id).await.unwrap().family, None);
    assert!(matches!(
        code(eva.family(s.family.id).await),
        ClientError::NotFound(_)
    ));
}

#[tokio::test]
async fn wrong_actors_get_not_found_or_permission_denied_and_learn_nothing() {
    let s = setup().await;
    let eva = specialist(&s.server, ORG_B, "Eva", ABUSE).await;
    let consult = s
        .sanne
        .open_consult(&new_consult(
            about(&s, LegalBasis::consent(s.consent)),
            None,
        ))
        .await
        .unwrap();
    eva.accept_consult(consult.id).await.unwrap();
    let id = consult.id;

    let other_org_contact = s
        .server
        .professional(ORG_B, "Noor", &[Role::ContactPerson], &[])
        .await;
    let other_expertise = specialist(&s.server, ORG_B, "Layla", Expertise::Adult).await;
    let not_in_consult = specialist(&s.server, ORG_C, "Mila", ABUSE).await;
    let other_family_contact = s
        .server
        .professional(ORG_A, "Daan", &[Role::ContactPerson], &[])
        .await;
    other_family_contact
        .register_family(&[NewMember {
            role: MemberRole::ParentOrCarer,
            age: MemberAge::Band(AgeBand::From16),
        }])
        .await
        .unwrap();
    let previous_contact = s
        .server
        .professional(ORG_A, "Anouk", &[Role::ContactPerson], &[])
        .await;
    // Anouk led the family once and handed it back.
    let (_, _) = s
        .sanne
        .hand_over_family(s.family.id, previous_contact.professional().unwrap())
        .await
        .unwrap();
    previous_contact
        .hand_over_family(s.family.id, s.sanne.professional().unwrap())
        .await
        .unwrap();

    let before = s.sanne.consult(id).await.unwrap();
    let unknown = Uuid::now_v7();
    let unknown_text = match code(s.sanne.consult(unknown).await) {
        ClientError::NotFound(m) => m.replace(&unknown.to_string(), "ID"),
        other => panic!("{other:?}"),
    };
    let basis = LegalBasis::consent(s.consent);
    let actors = [
        ("another organisation's contact person", &other_org_contact),
        ("a specialist of another expertise", &other_expertise),
        ("a specialist not in the consult", &not_in_consult),
        (
            "the contact person of another family",
            &other_family_contact,
        ),
        ("a previous contact person", &previous_contact),
    ];
    for (who, actor) in actors {
        let calls: Vec<(&str, Result<(), ClientError>)> = vec![
            ("GetConsult", actor.consult(id).await.map(|_| ())),
            ("AcceptConsult", actor.accept_consult(id).await.map(|_| ())),
            (
                "DeclineConsult",
                actor
                    .decline_consult(id, DeclineReason::NoCapacity, "")
                    .await
                    .map(|_| ()),
            ),
            (
                "InviteSpecialist",
                actor
                    .invite_specialist(id, not_in_consult.professional().unwrap(), ABUSE)
                    .await
                    .map(|_| ()),
            ),
            (
                "RemoveParticipant",
                actor
                    .remove_participant(id, eva.professional().unwrap())
                    .await
                    .map(|_| ()),
            ),
            ("LeaveConsult", actor.leave_consult(id).await),
            (
                "ChangeLegalBasis",
                actor.change_legal_basis(id, &basis).await.map(|_| ()),
            ),
            (
                "CloseConsult",
                actor
                    .close_consult(id, Outcome::Withdrawn)
                    .await
                    .map(|_| ()),
            ),
            ("GetFamily", actor.family(s.family.id).await.map(|_| ())),
            (
                "ListConsents",
                actor.list_consents(s.family.id, true).await.map(|_| ()),
            ),
            (
                "RecordConsent",
                actor
                    .record_consent(
                        s.family.id,
                        &abuse_consent(&s.family, &s.server, vec![], DAY),
                    )
                    .await
                    .map(|_| ()),
            ),
            (
                "RevokeConsent",
                actor
                    .revoke_consent(s.consent, RevocationReason::Withdrawn, None)
                    .await
                    .map(|_| ()),
            ),
            (
                "OpenConsult",
                actor
                    .open_consult(&new_consult(about(&s, basis.clone()), None))
                    .await
                    .map(|_| ()),
            ),
        ];
        for (call, result) in calls {
            match result {
                Err(ClientError::NotFound(m)) => {
                    let generic = m.replace(&id.to_string(), "ID");
                    assert!(
                        !m.contains(&s.family.members[1].id.to_string()),
                        "{who} {call}: {m}"
                    );
                    if call.ends_with("Consult") && call != "OpenConsult" {
                        assert_eq!(
                            generic, unknown_text,
                            "{who} {call}: same text as an unknown id"
                        );
                    }
                }
                Err(ClientError::PermissionDenied(m)) => {
                    assert!(!m.contains(&s.family.id.to_string()), "{who} {call}: {m}");
                }
                // A specialist of the pool's expertise saw the request in
                // their inbox: they are told it was taken, nothing more.
                Err(ClientError::AlreadyExists(m))
                    if who == "a specialist not in the consult" && call == "AcceptConsult" =>
                {
                    assert!(m.contains("already accepted"), "{m}");
                    assert!(!m.contains(&s.family.id.to_string()), "{m}");
                }
                other => {
                    panic!("{who} {call}: expected NOT_FOUND or PERMISSION_DENIED, got {other:?}")
                }
            }
        }
    }
    // A participant who is not the owner may read but not lead.
    let by_participant = code(eva.close_consult(id, Outcome::Withdrawn).await);
    assert!(
        matches!(by_participant, ClientError::PermissionDenied(_)),
        "{by_participant:?}"
    );
    // Nothing changed.
    let after = s.sanne.consult(id).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(after.state, ConsultState::Accepted);
}
