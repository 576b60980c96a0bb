//! What the delivery service refuses on the wire, with real MLS messages
//! and no client library in between: a post by someone outside the consult,
//! and an application message of an epoch the thread has left.

use samenop_client::{Client, Expertise, Role, ViolenceType, mls::Messenger};
use samenop_proto::v1::{self, thread_service_client::ThreadServiceClient};
use samenop_tests::{ORG_B, ThreadedConsult, acting, threaded_consult, within};
use tonic::Code;
use uuid::Uuid;

const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);

/// The consult's thread as Sanne's device fetches it.
async fn thread(t: &ThreadedConsult) -> v1::FetchThreadResponse {
    ThreadServiceClient::new(t.sanne.channel())
        .fetch_thread(acting(
            &t.sanne,
            v1::FetchThreadRequest {
                consult_id: t.consult.to_string(),
                device_id: t.sanne_device.device().to_string(),
                from_sequence: 1,
                page_size: 500,
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Posts `mls_message` as `client`'s `device`.
async fn post(
    client: &Client,
    consult: Uuid,
    device: Uuid,
    mls_message: Vec<u8>,
) -> Result<v1::PostMessageResponse, tonic::Status> {
    ThreadServiceClient::new(client.channel())
        .post_message(acting(
            client,
            v1::PostMessageRequest {
                consult_id: consult.to_string(),
                device_id: device.to_string(),
                mls_message,
                request_id: Uuid::new_v4().to_string(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn someone_outside_the_consult_cannot_post_in_its_thread() {
    let t = threaded_consult().await;
    let olga = t
        .server
        .professional(ORG_B, "Olga", &[Role::Specialist], &[ABUSE])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let olga_device = Messenger::open(&olga, dir.path(), "laptop").await.unwrap();
    let before = thread(&t).await;
    let message = before
        .entries
        .iter()
        .rev()
        .find(|e| e.kind == v1::ThreadEntryKind::Application as i32)
        .unwrap()
        .mls_message
        .clone();
    // A real message of the current epoch, from her own registered device:
    // the consult does not exist for her.
    let refused = post(&olga, t.consult, olga_device.device(), message.clone())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    assert_eq!(refused.message(), format!("no consult {}", t.consult));
    // What she sends is not even looked at: bytes that are no MLS message
    // get the same answer.
    let refused = post(&olga, t.consult, olga_device.device(), b"geen MLS".to_vec())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    // Nor may she post a commit, with or without a Welcome.
    let commit = before
        .entries
        .iter()
        .find(|e| e.kind == v1::ThreadEntryKind::Commit as i32)
        .unwrap();
    let refused = ThreadServiceClient::new(olga.channel())
        .post_commit(acting(
            &olga,
            v1::PostCommitRequest {
                consult_id: t.consult.to_string(),
                device_id: olga_device.device().to_string(),
                epoch: commit.epoch,
                commit: commit.mls_message.clone(),
                welcomes: Vec::new(),
                request_id: Uuid::new_v4().to_string(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    // Nothing was stored.
    assert_eq!(thread(&t).await.latest_sequence, before.latest_sequence);
}

#[tokio::test]
async fn an_application_message_of_a_past_epoch_is_refused_and_stored_nowhere() {
    let t = threaded_consult().await;
    t.eva_device.catch_up(t.consult).await.unwrap();
    let sent = t
        .eva_device
        .send(t.consult, "Een vraag terug", None)
        .await
        .unwrap();
    let before = thread(&t).await;
    let old = before
        .entries
        .iter()
        .find(|e| e.sequence == sent)
        .unwrap()
        .clone();
    // The thread moves to a newer epoch.
    t.sanne_device.catch_up(t.consult).await.unwrap();
    let epoch = t.sanne_device.update_keys(t.consult).await.unwrap();
    assert!(epoch > old.epoch);
    let moved = thread(&t).await;
    // Eva's device posts the old epoch's ciphertext again, under a new
    // request id: ABORTED, naming where to catch up from.
    let refused = post(&t.eva, t.consult, t.eva_device.device(), old.mls_message)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains(&format!("made for epoch {}", old.epoch)),
        "{refused:?}"
    );
    assert_eq!(thread(&t).await.latest_sequence, moved.latest_sequence);
}

/// Reads `stream` up to the thread entry of `sequence`, answering it and
/// the event before it.
async fn up_to_entry(
    stream: &mut tonic::Streaming<v1::SubscribeResponse>,
    sequence: u64,
) -> (Option<v1::SubscribeResponse>, v1::SubscribeResponse) {
    let mut before = None;
    loop {
        let event = within("the entry's delivery", stream.message())
            .await
            .unwrap()
            .expect("the stream goes on");
        if let Some(v1::subscribe_response::Event::ThreadEntry(entry)) = &event.event
            && entry.sequence == sequence
        {
            return (before, event);
        }
        before = Some(event);
    }
}

#[tokio::test]
async fn a_message_delivered_live_is_the_event_a_resumed_subscription_reads() {
    let t = threaded_consult().await;
    let subscribe = |cursor: String| {
        let mut threads = ThreadServiceClient::new(t.eva.channel());
        let request = acting(
            &t.eva,
            v1::SubscribeRequest {
                device_id: t.eva_device.device().to_string(),
                cursor,
            },
        );
        async move { threads.subscribe(request).await }
    };
    let mut live = subscribe(String::new()).await.unwrap().into_inner();
    // Once the subscription has caught up, each message comes as its post
    // handed it over (decision 54)...
    let first = t
        .sanne_device
        .send(t.consult, "eerste", None)
        .await
        .unwrap();
    let (_, first) = up_to_entry(&mut live, first).await;
    let handed = || async {
        let (_, text) = crate::metrics::get(&t.server, "/metrics").await;
        crate::metrics::sample(&text, "samenop_deliveries_total{source=\"handed\"}").unwrap_or(0.0)
    };
    let handed_before = handed().await;
    let second = t
        .sanne_device
        .send(t.consult, "tweede", None)
        .await
        .unwrap();
    let (between, delivered) = up_to_entry(&mut live, second).await;
    let before = between.unwrap_or(first);
    // It came as it was handed over (unless this machine took more than
    // 500 ms to deliver it).
    assert!(handed().await > handed_before, "delivered as handed over");
    // ... and is the very event a subscription resuming before it reads
    // from the store.
    let mut resumed = subscribe(before.cursor).await.unwrap().into_inner();
    let (_, read) = up_to_entry(&mut resumed, second).await;
    assert_eq!(delivered, read);
    let Some(v1::subscribe_response::Event::ThreadEntry(entry)) = &read.event else {
        unreachable!("a thread entry")
    };
    assert!(!entry.mls_message.is_empty(), "{entry:?}");
    assert_eq!(
        thread(&t).await.entries.last(),
        Some(entry),
        "as the thread has it"
    );
}
