//! Live consult events: requests and changes reach the devices of everyone
//! concerned, and only them; what the clock makes due (a request expiring,
//! a consent running out) is swept by the server and told, with an audit
//! event of its own.

use std::time::Duration;

use samenop_client::{
    Client, Expertise, Role, ViolenceType,
    audit::{AuditFilter, Outcome as AuditOutcome},
    consult::{
        About, ConsultChange, ConsultEvent, ConsultState, LegalBasis, NewConsult, Outcome,
        SuspensionReason, Urgency,
    },
    family::RevocationReason,
    mls::{EventKind, Events, Messenger},
};
use samenop_tests::{ORG_A, ORG_B, TestServer, abuse_consent, family_with_consent, within};
use tempfile::TempDir;
use uuid::Uuid;

const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);
const ORG_C: &str = "jeugdbescherming-demoregio";
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A professional with one registered device, subscribed to its events.
struct Live {
    client: Client,
    events: Events,
    _messenger: Messenger,
    _dir: TempDir,
}

impl Live {
    async fn new(client: Client) -> Live {
        let dir = tempfile::tempdir().expect("state dir");
        let messenger = Messenger::open(&client, dir.path(), "werkplek")
            .await
            .expect("open the device");
        let events = messenger.subscribe(None).await.expect("subscribe");
        Live {
            client,
            events,
            _messenger: messenger,
            _dir: dir,
        }
    }

    fn id(&self) -> Uuid {
        self.client.professional().expect("acting")
    }

    /// The next consult event of this device (thread events skipped).
    async fn next(&mut self) -> ConsultEvent {
        loop {
            let event = within("a consult event", self.events.next())
                .await
                .expect("the stream holds")
                .expect("the stream goes on");
            if let EventKind::Consult(event) = event.kind {
                return event;
            }
        }
    }
}

fn pool_request(family: Uuid, member: Uuid, consent: Uuid) -> NewConsult {
    NewConsult {
        about: About::Family {
            family,
            concerned: vec![member],
            basis: LegalBasis::consent(consent),
        },
        question: "Hoe wegen wij deze signalen?".into(),
        expertise: ABUSE,
        urgency: Urgency::Normal,
        respond_by: None,
        specialist: None,
    }
}

/// A request of Sanne (contact person, org A) named to Eva (org B), both
/// subscribed before it was opened.
struct Named {
    server: TestServer,
    family: samenop_client::family::Family,
    consent: Uuid,
    sanne: Live,
    eva: Live,
    opened: Uuid,
}

async fn named() -> Named {
    let server = TestServer::start().await;
    let sanne = server
        .professional(ORG_A, "Sanne", &[Role::ContactPerson], &[])
        .await;
    let (family, consent) = family_with_consent(&server, &sanne).await;
    let sanne = Live::new(sanne).await;
    let eva = Live::new(
        server
            .professional(ORG_B, "Eva", &[Role::Specialist], &[ABUSE])
            .await,
    )
    .await;
    let opened = sanne
        .client
        .open_consult(&NewConsult {
            specialist: Some(eva.id()),
            ..pool_request(family.id, family.members[1].id, consent)
        })
        .await
        .unwrap()
        .id;
    Named {
        server,
        family,
        consent,
        sanne,
        eva,
        opened,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_changes_reach_exactly_the_devices_concerned() {
    let server = TestServer::start().await;
    let sanne = server
        .professional(ORG_A, "Sanne", &[Role::ContactPerson], &[])
        .await;
    let (family, consent) = family_with_consent(&server, &sanne).await;
    let mut sanne = Live::new(sanne).await;
    let mut eva = Live::new(
        server
            .professional(ORG_B, "Eva", &[Role::Specialist], &[ABUSE])
            .await,
    )
    .await;
    let mut ravi = Live::new(
        server
            .professional(ORG_C, "Ravi", &[Role::Specialist], &[ABUSE])
            .await,
    )
    .await;
    // A specialist of another expertise: the pool request is none of hers.
    let mut olga = Live::new(
        server
            .professional(ORG_B, "Olga", &[Role::Specialist], &[Expertise::Adult])
            .await,
    )
    .await;

    let opened = sanne
        .client
        .open_consult(&pool_request(family.id, family.members[1].id, consent))
        .await
        .unwrap()
        .id;
    for specialist in [&mut eva, &mut ravi] {
        let event = specialist.next().await;
        assert_eq!(event.change, ConsultChange::Requested);
        assert_eq!(event.consult, opened);
        assert_eq!(event.actor, Some(sanne.id()));
        let view = event.view.expect("the request is in their inbox");
        assert_eq!(view.question, "Hoe wegen wij deze signalen?");
        assert_eq!(view.family, None, "the family stays the owner's");
    }
    assert_eq!(sanne.next().await.change, ConsultChange::Requested);

    eva.client.accept_consult(opened).await.unwrap();
    let taken = ravi.next().await;
    assert_eq!(taken.change, ConsultChange::Taken);
    assert_eq!(taken.state, ConsultState::Accepted);
    assert_eq!(
        taken.view, None,
        "nothing of it is left for the one not taking it"
    );
    let accepted = sanne.next().await;
    assert_eq!(accepted.change, ConsultChange::Accepted);
    assert_eq!(accepted.actor, Some(eva.id()));
    assert_eq!(
        accepted.view.expect("the owner sees it").family,
        Some(family.id)
    );
    assert_eq!(eva.next().await.change, ConsultChange::Accepted);

    sanne
        .client
        .close_consult(opened, Outcome::AdviceGiven)
        .await
        .unwrap();
    let closed = eva.next().await;
    assert_eq!(closed.change, ConsultChange::Closed);
    assert_eq!(closed.state, ConsultState::Closed(Outcome::AdviceGiven));

    // Neither Olga (another expertise) nor Ravi (after it was taken) heard
    // more of it: the next event of each is a request of their own.
    for (who, expertise) in [(&mut olga, Expertise::Adult), (&mut ravi, ABUSE)] {
        let own = sanne
            .client
            .open_consult(&NewConsult {
                about: About::Anonymous,
                expertise,
                specialist: Some(who.id()),
                ..pool_request(family.id, family.members[0].id, consent)
            })
            .await
            .unwrap();
        let first = who.next().await;
        assert_eq!(
            (first.consult, first.change),
            (own.id, ConsultChange::Requested)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unaccepted_request_expires_by_the_clock_and_both_sides_are_told() {
    let Named {
        server,
        mut sanne,
        mut eva,
        opened,
        ..
    } = named().await;
    assert_eq!(sanne.next().await.change, ConsultChange::Requested);
    assert_eq!(eva.next().await.change, ConsultChange::Requested);

    // Normal urgency: ten days to accept. The clock passes it; no call
    // reads the consult, the sweep finds it.
    server.clock.advance(11 * DAY);
    for side in [&mut sanne, &mut eva] {
        let expired = side.next().await;
        assert_eq!(expired.change, ConsultChange::Expired);
        assert_eq!(expired.consult, opened);
        assert_eq!(expired.state, ConsultState::Expired);
        assert_eq!(expired.actor, None, "the server expired it");
    }
    let trail = sanne
        .client
        .query_audit(&AuditFilter {
            consult: Some(opened),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let swept: Vec<_> = trail
        .iter()
        .filter(|e| e.action == "server/consult-expired")
        .collect();
    assert_eq!(swept.len(), 1, "one audit event of the server's own");
    assert!(swept[0].actor.by_server);
    assert_eq!(swept[0].outcome, AuditOutcome::Allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_running_out_suspends_its_consults_and_everyone_is_told() {
    let Named {
        server,
        family,
        consent,
        mut sanne,
        mut eva,
        opened,
    } = named().await;
    eva.client.accept_consult(opened).await.unwrap();
    for change in [ConsultChange::Requested, ConsultChange::Accepted] {
        assert_eq!(sanne.next().await.change, change);
        assert_eq!(eva.next().await.change, change);
    }

    // Revoked by the contact person: suspended at once, told with her as
    // the actor.
    let sanne_id = sanne.id();
    sanne
        .client
        .revoke_consent(consent, RevocationReason::Withdrawn, None)
        .await
        .unwrap();
    for side in [&mut sanne, &mut eva] {
        let suspended = side.next().await;
        assert_eq!(suspended.change, ConsultChange::Suspended);
        assert_eq!(
            suspended.state,
            ConsultState::Suspended(SuspensionReason::ConsentRevoked)
        );
        assert_eq!(suspended.actor, Some(sanne_id));
    }

    // A new consent for 30 days resumes it.
    let renewed = sanne
        .client
        .record_consent(
            family.id,
            &abuse_consent(&family, &server, Vec::new(), 30 * DAY),
        )
        .await
        .unwrap();
    sanne
        .client
        .change_legal_basis(opened, &LegalBasis::consent(renewed.id))
        .await
        .unwrap();
    for side in [&mut sanne, &mut eva] {
        let resumed = side.next().await;
        assert_eq!(resumed.change, ConsultChange::LegalBasisChanged);
        assert_eq!(resumed.state, ConsultState::Accepted);
    }

    // It runs out: no call reads the consult, the sweep finds it.
    server.clock.advance(31 * DAY);
    for side in [&mut sanne, &mut eva] {
        let suspended = side.next().await;
        assert_eq!(suspended.change, ConsultChange::Suspended);
        assert_eq!(
            suspended.state,
            ConsultState::Suspended(SuspensionReason::ConsentExpired)
        );
        assert_eq!(suspended.actor, None, "the server suspended it");
    }
}
