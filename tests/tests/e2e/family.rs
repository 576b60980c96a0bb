//! Families and consent end to end: registration, who may see a family, age
//! bands that move with the clock, consent by age band, revocation, expiry,
//! and handover to another contact person.

use std::time::{Duration, SystemTime};

use samenop_client::{
    Client, ClientError, Expertise, Role, ViolenceType,
    family::{
        AgeBand, ConsentRequest, ConsentStatus, Family, MemberAge, MemberRole, NewMember,
        RevocationReason,
    },
};
use samenop_tests::{ORG_A, ORG_B, TestServer};
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn member(role: MemberRole, band: AgeBand) -> NewMember {
    NewMember {
        role,
        age: MemberAge::Band(band),
    }
}

/// A parent (16+), a young child (under 12), a child of 12 to 15 and a
/// young person of 16+, in that order.
fn household() -> Vec<NewMember> {
    vec![
        member(MemberRole::ParentOrCarer, AgeBand::From16),
        member(MemberRole::Child, AgeBand::Under12),
        member(MemberRole::Child, AgeBand::From12To15),
        member(MemberRole::Child, AgeBand::From16),
    ]
}

fn consent(
    family: &Family,
    concerned: &[usize],
    given_by: &[usize],
    clock_now: SystemTime,
) -> ConsentRequest {
    ConsentRequest {
        concerned: concerned.iter().map(|&i| family.members[i].id).collect(),
        given_by: given_by.iter().map(|&i| family.members[i].id).collect(),
        expertise: vec![
            Expertise::Child,
            Expertise::Violence(ViolenceType::ChildAbuse),
        ],
        organisations: Vec::new(),
        valid_from: None,
        valid_until: clock_now + 90 * DAY,
        evidence_reference: "DOSSIER-2026-0042".into(),
    }
}

fn not_found<T: std::fmt::Debug>(result: Result<T, ClientError>) -> String {
    match result {
        Err(ClientError::NotFound(message)) => message,
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
}

fn failed_precondition<T: std::fmt::Debug>(result: Result<T, ClientError>) -> String {
    match result {
        Err(ClientError::FailedPrecondition(message)) => message,
        other => panic!("expected FAILED_PRECONDITION, got {other:?}"),
    }
}

async fn contact_person(server: &TestServer, slug: &str, name: &str) -> Client {
    server
        .professional(slug, name, &[Role::ContactPerson], &[])
        .await
}

#[tokio::test]
async fn only_the_contact_person_and_their_privacy_officer_see_a_family() {
    let server = TestServer::start().await;
    let sanne = contact_person(&server, ORG_A, "Sanne").await;
    let family = sanne.register_family(&household()).await.unwrap();
    assert_eq!(family.members.len(), 4);
    assert_eq!(
        family.contact_person.professional,
        sanne.professional().unwrap()
    );
    assert_eq!(
        family.contact_person.organisation_oin,
        TestServer::oin(ORG_A)
    );
    assert_eq!(sanne.family(family.id).await.unwrap(), family);

    let privacy = server
        .professional(ORG_A, "Ilse", &[Role::PrivacyOfficer], &[])
        .await;
    assert_eq!(privacy.family(family.id).await.unwrap().id, family.id);
    assert_eq!(
        privacy.list_consents(family.id, true).await.unwrap(),
        vec![]
    );
    let change = privacy
        .record_consent(family.id, &consent(&family, &[0], &[0], server.clock_now()))
        .await;
    assert!(
        matches!(change, Err(ClientError::PermissionDenied(_))),
        "{change:?}"
    );

    let unknown_text = not_found(sanne.family(Uuid::new_v4()).await).len();
    let outsiders = [
        contact_person(&server, ORG_A, "Daan").await,
        contact_person(&server, ORG_B, "Noor").await,
        server
            .professional(ORG_B, "Lotte", &[Role::PrivacyOfficer], &[])
            .await,
        server
            .professional(ORG_A, "Eva", &[Role::Specialist], &[Expertise::Child])
            .await,
        server.admin(ORG_A).await,
    ];
    for outsider in &outsiders {
        let message = not_found(outsider.family(family.id).await);
        assert_eq!(
            message.len(),
            unknown_text,
            "same refusal as for an unknown id: {message}"
        );
        not_found(outsider.list_consents(family.id, true).await);
        not_found(
            outsider
                .record_consent(family.id, &consent(&family, &[0], &[0], server.clock_now()))
                .await,
        );
    }
}

#[tokio::test]
async fn a_childs_age_band_moves_with_the_clock() {
    let server = TestServer::start().await;
    let sanne = contact_person(&server, ORG_A, "Sanne").await;
    let today = time::OffsetDateTime::from(server.clock_now());
    // Born in this month twelve years ago: 11 until the month is over.
    let born = MemberAge::Born {
        year: u32::try_from(today.year() - 12).unwrap(),
        month: u32::from(u8::from(today.month())),
    };
    let family = sanne
        .register_family(&[
            member(MemberRole::ParentOrCarer, AgeBand::From16),
            NewMember {
                role: MemberRole::Child,
                age: born,
            },
        ])
        .await
        .unwrap();
    assert_eq!(family.members[1].age_band, AgeBand::Under12);

    server.clock.advance(40 * DAY);
    let later = sanne.family(family.id).await.unwrap();
    assert_eq!(later.members[1].age_band, AgeBand::From12To15);
    // The consent rule follows: now the child must consent too.
    let parent_only = sanne
        .record_consent(family.id, &consent(&later, &[1], &[0], server.clock_now()))
        .await;
    assert!(failed_precondition(parent_only).contains("12 to 15"));
    sanne
        .record_consent(
            family.id,
            &consent(&later, &[1], &[0, 1], server.clock_now()),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn consent_follows_each_members_age_band() {
    let server = TestServer::start().await;
    let sanne = contact_person(&server, ORG_A, "Sanne").await;
    let family = sanne.register_family(&household()).await.unwrap();
    let now = server.clock_now();
    let (parent, young, teen, adult) = (0, 1, 2, 3);
    let who = |i: usize| family.members[i].id.to_string();

    // Right.
    for (concerned, given_by) in [
        (vec![young], vec![parent]),
        (vec![teen], vec![teen, parent]),
        (vec![adult], vec![adult]),
        (vec![parent], vec![parent]),
        (vec![young, teen], vec![parent, teen]),
    ] {
        let recorded = sanne
            .record_consent(family.id, &consent(&family, &concerned, &given_by, now))
            .await
            .unwrap();
        assert_eq!(recorded.status, ConsentStatus::Active);
    }
    // Wrong: the message says who must consent.
    let cases = [
        (
            vec![young],
            vec![young],
            format!("member {} is under 12 and cannot give consent", who(young)),
        ),
        (
            vec![young],
            vec![adult],
            format!("member {} is under 12: a parent or carer", who(young)),
        ),
        (
            vec![teen],
            vec![parent],
            format!(
                "member {} is 12 to 15: they must consent themself, together with a parent or carer",
                who(teen)
            ),
        ),
        (
            vec![teen],
            vec![teen],
            format!("member {} is 12 to 15", who(teen)),
        ),
        (
            vec![adult],
            vec![parent],
            format!(
                "member {} is 16 or older: they must consent themself",
                who(adult)
            ),
        ),
    ];
    for (concerned, given_by, expected) in cases {
        let refused = sanne
            .record_consent(family.id, &consent(&family, &concerned, &given_by, now))
            .await;
        let message = failed_precondition(refused);
        assert!(
            message.contains(&expected),
            "{message:?} lacks {expected:?}"
        );
    }
    assert_eq!(sanne.list_consents(family.id, true).await.unwrap().len(), 5);
}

#[tokio::test]
async fn malformed_consents_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let sanne = contact_person(&server, ORG_A, "Sanne").await;
    let family = sanne.register_family(&household()).await.unwrap();
    let other = sanne.register_family(&household()).await.unwrap();
    let now = server.clock_now();
    let base = consent(&family, &[0], &[0], now);
    let mut cases: Vec<(ConsentRequest, &str)> = Vec::new();
    let mut c = base.clone();
    c.concerned = vec![];
    cases.push((c, "concerned_member_ids is required"));
    let mut c = base.clone();
    c.given_by = vec![other.members[0].id];
    cases.push((c, "not a member of this family"));
    let mut c = base.clone();
    c.concerned = vec![family.members[0].id, family.members[0].id];
    cases.push((c, "repeated"));
    let mut c = base.clone();
    c.expertise = vec![];
    cases.push((c, "scope.expertise is required"));
    let mut c = base.clone();
    c.organisations = vec!["123".into()];
    cases.push((c, "an OIN is exactly 20 digits"));
    let mut c = base.clone();
    c.valid_until = now - DAY;
    cases.push((c, "valid_until must lie after valid_from and in the future"));
    let mut c = base.clone();
    c.valid_from = Some(now - 3 * DAY);
    cases.push((c, "more than 24 hours in the past"));
    let mut c = base.clone();
    c.valid_until = now + 800 * DAY;
    cases.push((c, "at most two years"));
    let mut c = base.clone();
    c.evidence_reference = String::new();
    cases.push((c, "evidence_reference is required"));
    let mut c = base.clone();
    c.evidence_reference = "x".repeat(101);
    cases.push((c, "evidence_reference is too long"));
    for (request, needle) in cases {
        match sanne.record_consent(family.id, &request).await {
            Err(ClientError::InvalidArgument(message)) => {
                assert!(message.contains(needle), "{message:?} lacks {needle:?}")
            }
            other => panic!("{needle}: expected INVALID_ARGUMENT, got {other:?}"),
        }
    }
    assert!(
        sanne
            .list_consents(family.id, true)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn revoked_and_expired_consents_stop_being_active() {
    let server = TestServer::start().await;
    let sanne = contact_person(&server, ORG_A, "Sanne").await;
    let family = sanne.register_family(&household()).await.unwrap();
    let now = server.clock_now();
    let long = sanne
        .record_consent(family.id, &consent(&family, &[0], &[0], now))
        .await
        .unwrap();
    let mut short_request = consent(&family, &[3], &[3], now);
    short_request.valid_until = now + DAY;
    let short = sanne
        .record_consent(family.id, &short_request)
        .await
        .unwrap();
    let ids = |list: Vec<samenop_client::family::Consent>| {
        list.into_iter().map(|c| c.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(sanne.list_consents(family.id, false).await.unwrap()),
        [short.id, long.id]
    );

    let (revoked, suspended) = sanne
        .revoke_consent(long.id, RevocationReason::Withdrawn, Some("BRIEF-7"))
        .await
        .unwrap();
    assert_eq!(revoked.status, ConsentStatus::Revoked);
    assert!(revoked.revoked_at.is_some());
    assert!(suspended.is_empty());
    let again = sanne
        .revoke_consent(long.id, RevocationReason::Withdrawn, None)
        .await;
    assert!(failed_precondition(again).contains("already revoked"));

    server.clock.advance(2 * DAY);
    assert!(
        sanne
            .list_consents(family.id, false)
            .await
            .unwrap()
            .is_empty()
    );
    let all = sanne.list_consents(family.id, true).await.unwrap();
    let statuses: Vec<_> = all.iter().map(|c| (c.id, c.status)).collect();
    assert_eq!(
        statuses,
        [
            (short.id, ConsentStatus::Expired),
            (long.id, ConsentStatus::Revoked)
        ]
    );

    // Another family's contact person cannot revoke it, nor learn it exists.
    let noor = contact_person(&server, ORG_B, "Noor").await;
    not_found(
        noor.revoke_consent(short.id, RevocationReason::Withdrawn, None)
            .await,
    );
}

#[tokio::test]
async fn a_handover_keeps_the_family_and_takes_access_from_the_previous_contact_person() {
    let server = TestServer::start().await;
    let sanne = contact_person(&server, ORG_A, "Sanne").await;
    let noor = contact_person(&server, ORG_B, "Noor").await;
    let family = sanne.register_family(&household()).await.unwrap();
    let now = server.clock_now();
    let recorded = sanne
        .record_consent(family.id, &consent(&family, &[0], &[0], now))
        .await
        .unwrap();

    // Not to a specialist, not to themself.
    let eva = server
        .professional(ORG_B, "Eva", &[Role::Specialist], &[Expertise::Child])
        .await;
    let to_specialist = sanne
        .hand_over_family(family.id, eva.professional().unwrap())
        .await;
    assert!(failed_precondition(to_specialist).contains("ROLE_CONTACT_PERSON"));
    let to_self = sanne
        .hand_over_family(family.id, sanne.professional().unwrap())
        .await;
    assert!(failed_precondition(to_self).contains("already is"));
    // Nobody else may hand it over: not another contact person, not another
    // organisation's admin.
    not_found(
        noor.hand_over_family(family.id, noor.professional().unwrap())
            .await,
    );
    let admin_b = server.admin(ORG_B).await;
    not_found(
        admin_b
            .hand_over_family(family.id, noor.professional().unwrap())
            .await,
    );

    let (handed, moved) = sanne
        .hand_over_family(family.id, noor.professional().unwrap())
        .await
        .unwrap();
    assert!(moved.is_empty());
    assert_eq!(
        handed.contact_person.professional,
        noor.professional().unwrap()
    );
    assert_eq!(
        handed.contact_person.organisation_oin,
        TestServer::oin(ORG_B)
    );
    assert_eq!(handed.previous_contact_persons.len(), 1);
    assert_eq!(
        handed.previous_contact_persons[0].professional,
        sanne.professional().unwrap()
    );
    assert!(handed.previous_contact_persons[0].until.is_some());

    // The previous contact person lost access at once; the new one has it all.
    not_found(sanne.family(family.id).await);
    not_found(sanne.list_consents(family.id, true).await);
    not_found(
        sanne
            .revoke_consent(recorded.id, RevocationReason::Withdrawn, None)
            .await,
    );
    assert_eq!(
        noor.family(family.id).await.unwrap().members,
        family.members
    );
    assert_eq!(
        noor.list_consents(family.id, true).await.unwrap()[0].id,
        recorded.id
    );
    // The new organisation's privacy officer now sees it; the old one no longer does.
    let ilse = server
        .professional(ORG_A, "Ilse", &[Role::PrivacyOfficer], &[])
        .await;
    not_found(ilse.family(family.id).await);
    let lotte = server
        .professional(ORG_B, "Lotte", &[Role::PrivacyOfficer], &[])
        .await;
    assert!(lotte.family(family.id).await.is_ok());

    // An admin of the contact person's organisation may hand over (e.g. when
    // the contact person left).
    let daan = contact_person(&server, ORG_B, "Daan").await;
    let (again, _) = admin_b
        .hand_over_family(family.id, daan.professional().unwrap())
        .await
        .unwrap();
    assert_eq!(
        again.contact_person.professional,
        daan.professional().unwrap()
    );
    assert_eq!(again.previous_contact_persons.len(), 2);
}
