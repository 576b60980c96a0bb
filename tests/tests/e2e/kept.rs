//! What is kept is what is needed: a device's event log is trimmed up to
//! where its subscription resumes and of what is older than the thread
//! retention, and the chunks of an upload cut off by a crash are purged.

use std::time::Duration;

use samenop_client::{ClientError, audit::AuditFilter};
use samenop_server::store::Keyspace;
use samenop_tests::{ThreadedConsult, leave_upload_behind, stored_under, threaded_consult, within};
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Subscribes `t`'s specialist's device from `cursor` until the server
/// refuses it as no longer kept (the trim runs beside the call).
async fn until_no_longer_kept(t: &ThreadedConsult, cursor: &str) {
    within("the log to be trimmed past the cursor", async {
        loop {
            match t.eva_device.subscribe(Some(cursor)).await {
                Err(ClientError::OutOfRange(_)) => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(other) => panic!("{other}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_device_log_is_trimmed_to_what_its_subscription_has_not_passed() {
    let mut t = threaded_consult().await;
    t.eva_device.catch_up(t.consult).await.unwrap();
    for n in 0..4 {
        t.sanne_device
            .send(t.consult, &format!("bericht {n}"), None)
            .await
            .unwrap();
    }
    // Eva's device reads its events, then resumes after the third.
    let mut events = t.eva_device.subscribe(None).await.unwrap();
    let mut cursors = Vec::new();
    while cursors.len() < 5 {
        let event = within("an event", events.next()).await.unwrap().unwrap();
        cursors.push(event.cursor);
    }
    drop(events);
    t.eva_device.subscribe(Some(&cursors[2])).await.unwrap();
    // What it has passed is gone: an older cursor would resume with a gap.
    until_no_longer_kept(&t, &cursors[1]).await;
    // Where it resumed still holds, and without a cursor it starts there.
    t.eva_device.subscribe(Some(&cursors[2])).await.unwrap();
    let mut fresh = t.eva_device.subscribe(None).await.unwrap();
    let first = within("the oldest kept", fresh.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.cursor, cursors[3]);
    drop(fresh);
    let device = t.eva_device.device();
    t.server.stop().await;
    let kept = stored_under(&t.server, Keyspace::Events, device.as_bytes()).await;
    t.server.launch().await;
    let resumed = t.eva_device.subscribe(Some(&cursors[4])).await;
    assert!(resumed.is_ok(), "{:?}", resumed.err());

    // Once the thread retention has passed, time trims the rest.
    t.server.clock.advance(181 * DAY);
    until_no_longer_kept(&t, &cursors[4]).await;
    t.server.stop().await;
    let left = stored_under(&t.server, Keyspace::Events, device.as_bytes()).await;
    assert!(left < kept, "{left} events left of {kept}");
}

#[tokio::test]
async fn the_chunks_of_an_upload_cut_off_by_a_crash_are_purged() {
    let mut t = threaded_consult().await;
    t.server.stop().await;
    let attachment = Uuid::now_v7();
    let begun = t.server.clock_now() - Duration::from_secs(3600);
    leave_upload_behind(&t.server, t.consult, attachment, begun, 3).await;
    t.server.launch().await;
    // Not within the day an upload may take.
    t.server.clock.advance(DAY);
    let purged = within("the purge of the abandoned upload", async {
        loop {
            let trail = t
                .officer
                .query_audit(&AuditFilter {
                    consult: Some(t.consult),
                    ..AuditFilter::default()
                })
                .await
                .unwrap();
            if let Some(event) = trail.into_iter().find(|e| {
                e.action == "server/retention-purge" && e.detail.contains("never finished")
            }) {
                return event;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(purged.detail.starts_with("3 chunks"), "{}", purged.detail);
    t.server.stop().await;
    for (space, prefix) in [
        (Keyspace::AttachmentChunks, attachment.as_bytes().to_vec()),
        (Keyspace::Uploads, Vec::new()),
    ] {
        assert_eq!(
            stored_under(&t.server, space, &prefix).await,
            0,
            "{space:?}"
        );
    }
}
