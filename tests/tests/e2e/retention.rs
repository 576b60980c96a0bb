//! Retention, driven by the manual clock: thread content and attachments go
//! first, then the consult's record, then the consent, and the oldest audit
//! events last, each purge audited, and the trail verifiable throughout.

use std::time::Duration;

use samenop_client::{
    Client, ClientError,
    audit::{AuditEvent, AuditFilter},
    consult::{ConsultState, Outcome},
};
use samenop_proto::v1;
use samenop_server::store::Keyspace;
use samenop_tests::{ThreadedConsult, stored_under, threaded_consult};
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Waits until the privacy officer's share of the trail holds an event
/// that `wanted` picks; the purge runs on its own every 50 ms. A bound on a
/// hang, not a performance claim.
async fn until_recorded(officer: &Client, wanted: impl Fn(&AuditEvent) -> bool) -> AuditEvent {
    for _ in 0..500 {
        let trail = officer.query_audit(&AuditFilter::default()).await.unwrap();
        if let Some(event) = trail.into_iter().find(|e| wanted(e)) {
            return event;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the purge never recorded what was expected");
}

fn purge_of(id: uuid::Uuid, what: &'static str) -> impl Fn(&AuditEvent) -> bool {
    move |e: &AuditEvent| {
        e.action == "server/retention-purge"
            && e.detail.contains(what)
            && e.objects.iter().any(|(_, o)| *o == id.to_string())
    }
}

#[tokio::test]
async fn thread_content_consults_consents_and_old_audit_events_are_purged_in_turn() {
    let ThreadedConsult {
        server,
        sanne,
        officer,
        eva,
        family,
        consent,
        consult,
        eva_device,
        state_dirs: _state_dirs,
        ..
    } = threaded_consult().await;
    let read = eva_device.catch_up(consult).await.unwrap();
    let attachment = read[0].attachments[0].clone();
    sanne
        .close_consult(consult, Outcome::AdviceGiven)
        .await
        .unwrap();

    // 180 days after the close the thread's content and attachments go.
    server.clock.advance(179 * DAY);
    assert!(
        eva_device
            .open_attachment(consult, &attachment)
            .await
            .is_ok()
    );
    server.clock.advance(2 * DAY);
    until_recorded(&officer, purge_of(consult, "thread content")).await;
    let mut threads = v1::thread_service_client::ThreadServiceClient::new(eva.channel());
    let mut fetch = tonic::Request::new(v1::FetchThreadRequest {
        consult_id: consult.to_string(),
        device_id: eva_device.device().to_string(),
        from_sequence: 1,
        page_size: 0,
    });
    fetch.metadata_mut().insert(
        samenop_proto::PROFESSIONAL_METADATA_KEY,
        eva.professional().unwrap().to_string().parse().unwrap(),
    );
    let page = threads.fetch_thread(fetch).await.unwrap().into_inner();
    assert!(
        page.entries.is_empty() && page.latest_sequence == 0,
        "{page:?}"
    );
    let err = eva_device
        .open_attachment(consult, &attachment)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");
    // The consult's record stays, for the report and the family's view.
    assert!(matches!(
        sanne.consult(consult).await.unwrap().state,
        ConsultState::Closed(Outcome::AdviceGiven)
    ));
    assert!(officer.verify_audit().await.unwrap().ok);

    // Two years after the close the consult's record goes.
    server.clock.advance(550 * DAY);
    until_recorded(&officer, purge_of(consult, "consult record")).await;
    assert!(matches!(
        sanne.consult(consult).await,
        Err(ClientError::NotFound(_))
    ));
    // The consent ran out 90 days after it was given; two years after that
    // it goes too.
    assert_eq!(sanne.list_consents(family.id, true).await.unwrap().len(), 1);
    server.clock.advance(100 * DAY);
    until_recorded(&officer, purge_of(consent, "consent removed")).await;
    assert!(
        sanne
            .list_consents(family.id, true)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(officer.verify_audit().await.unwrap().ok);

    // Seven years on, the oldest audit events go, up to a signed
    // checkpoint, and what is left still verifies from there.
    // Everything so far is signed before the clock moves on: the purge
    // can only cut the chain at a signed checkpoint.
    let last = officer.query_audit(&AuditFilter::default()).await.unwrap();
    let last = last.last().unwrap().sequence;
    let mut signed = 0;
    for _ in 0..500 {
        let verified = officer.verify_audit().await.unwrap();
        signed = verified
            .latest_checkpoint
            .map_or(0, |(sequence, _)| sequence);
        if signed >= last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(signed >= last, "a checkpoint covers event {last}");
    server.clock.advance(7 * 365 * DAY + DAY);
    let purge = until_recorded(&officer, |e| {
        e.action == "server/retention-purge" && e.detail.starts_with("audit events 1 to")
    })
    .await;
    assert!(purge.actor.by_server);
    let verified = officer.verify_audit().await.unwrap();
    assert!(verified.ok, "{verified:?}");
    let left = officer.query_audit(&AuditFilter::default()).await.unwrap();
    assert!(
        left.first().unwrap().sequence > 1,
        "the oldest events are gone"
    );
    // Once every event before the last seven years is gone, no event names
    // the consult any more, and neither does the link that said whose it
    // was.
    until_recorded(&officer, |e| {
        e.action == "server/retention-purge"
            && e.detail
                .split(' ')
                .nth(4)
                .and_then(|to| to.parse::<u64>().ok())
                .is_some_and(|to| to >= last)
    })
    .await;
    let mut server = server;
    server.stop().await;
    for (space, key) in [
        (Keyspace::AuditConsultFamily, consult.as_bytes().to_vec()),
        (Keyspace::AuditFamilyConsults, family.id.as_bytes().to_vec()),
    ] {
        assert_eq!(stored_under(&server, space, &key).await, 0, "{space:?}");
    }
}
