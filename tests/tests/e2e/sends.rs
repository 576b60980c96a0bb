//! One device under load: many sends at once on one `Messenger`, to one
//! consult and to several, each stored exactly once at the sequence it
//! reported; and a device whose one-time key packages ran out, added to
//! more than a hundred consults with its last-resort one; and a send the
//! server could not take, delivered later from the outbox exactly once;
//! and one device reading a thread from many tasks at once, each message
//! decrypted once.

use std::{collections::BTreeMap, sync::Arc};

use samenop_client::{Client, Expertise, Role, ViolenceType, mls::Messenger};
use samenop_tests::{ORG_A, ORG_B, TestServer, accepted_anonymous_consult, within};
use uuid::Uuid;

const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);

/// An accepted anonymous consult of `owner` with `specialist`, its group
/// made by `owner_device` with every participant's device added.
async fn accepted_consult(owner: &Client, owner_device: &Messenger, specialist: &Client) -> Uuid {
    let consult = accepted_anonymous_consult(owner, specialist).await;
    owner_device.create_thread(consult).await.expect("create");
    owner_device.sync_members(consult).await.expect("sync");
    consult
}

/// Sanne (contact person, org A) and Eva (specialist, org B), each with a
/// device whose state lives in the returned directories.
async fn two_devices(
    server: &TestServer,
) -> (Client, Messenger, Client, Messenger, tempfile::TempDir) {
    let sanne = server
        .professional(ORG_A, "Sanne", &[Role::ContactPerson], &[])
        .await;
    let eva = server
        .professional(ORG_B, "Eva", &[Role::Specialist], &[ABUSE])
        .await;
    let dir = tempfile::tempdir().expect("state dir");
    let sanne_device = Messenger::open(&sanne, &dir.path().join("sanne"), "werkplek")
        .await
        .expect("device");
    let eva_device = Messenger::open(&eva, &dir.path().join("eva"), "laptop")
        .await
        .expect("device");
    (sanne, sanne_device, eva, eva_device, dir)
}

/// Sanne and Eva with their devices, in an accepted consult whose thread
/// both devices are in.
struct Joined {
    sanne_device: Messenger,
    eva: Client,
    eva_device: Messenger,
    consult: Uuid,
    _dirs: tempfile::TempDir,
}

async fn joined(server: &TestServer) -> Joined {
    let (sanne, sanne_device, eva, eva_device, dirs) = two_devices(server).await;
    let consult = accepted_consult(&sanne, &sanne_device, &eva).await;
    within("Eva's device joins", eva_device.catch_up(consult))
        .await
        .expect("join");
    Joined {
        sanne_device,
        eva,
        eva_device,
        consult,
        _dirs: dirs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_on_one_device_are_each_stored_once_where_they_say() {
    let server = TestServer::start().await;
    let (sanne, sanne_device, eva, eva_device, _dirs) = two_devices(&server).await;
    let mut consults = Vec::new();
    for _ in 0..3 {
        consults.push(accepted_consult(&sanne, &sanne_device, &eva).await);
    }
    for consult in &consults {
        eva_device.catch_up(*consult).await.expect("join");
    }
    let sanne_device = Arc::new(sanne_device);

    // 24 sends at once to the first consult, and 8 to each of the others.
    let mut sends = tokio::task::JoinSet::new();
    for (index, consult) in consults.iter().enumerate() {
        let count = if index == 0 { 24 } else { 8 };
        for n in 0..count {
            let device = sanne_device.clone();
            let consult = *consult;
            let text = format!("bericht {n} in consult {index}");
            sends.spawn(async move {
                let sent = device.send(consult, &text, None).await;
                (consult, text, sent)
            });
        }
    }
    let mut acknowledged: BTreeMap<Uuid, BTreeMap<u64, String>> = BTreeMap::new();
    within("every send to be answered", async {
        while let Some(joined) = sends.join_next().await {
            let (consult, text, sent) = joined.expect("the send task");
            let sequence = sent.unwrap_or_else(|err| panic!("{text}: {err}"));
            let earlier = acknowledged
                .entry(consult)
                .or_default()
                .insert(sequence, text.clone());
            assert!(earlier.is_none(), "two sends acknowledged at {sequence}");
        }
    })
    .await;

    // What the other device reads is exactly what was acknowledged, where it
    // was acknowledged: nothing lost, nothing twice.
    for consult in &consults {
        let read = within(
            "Eva's device reads the thread",
            eva_device.catch_up(*consult),
        )
        .await
        .expect("catch up");
        let stored: BTreeMap<u64, String> =
            read.into_iter().map(|m| (m.sequence, m.text)).collect();
        assert_eq!(&stored, &acknowledged[consult], "consult {consult}");
        // And the sender's own history holds each once, at its sequence.
        let own: BTreeMap<u64, String> = sanne_device
            .messages(*consult)
            .await
            .expect("history")
            .into_iter()
            .map(|m| (m.sequence, m.text))
            .collect();
        assert_eq!(&own, &acknowledged[consult], "own history of {consult}");
    }
}

#[tokio::test]
async fn a_device_without_one_time_key_packages_is_added_with_its_last_resort_one() {
    let server = TestServer::start().await;
    let (sanne, sanne_device, eva, eva_device, _dirs) = two_devices(&server).await;
    // Eva's device stays away while it is added to 101 consults: it holds
    // fewer one-time key packages than that on the server (it keeps 20
    // there and tops up only when it comes back), so every add after those
    // is made with its last-resort package.
    let mut consults = Vec::new();
    for _ in 0..101 {
        consults.push(accepted_consult(&sanne, &sanne_device, &eva).await);
    }
    let last = *consults.last().expect("a consult");
    sanne_device
        .send(last, "Welkom in het laatste consult", None)
        .await
        .expect("send");

    // Back, it joins every one of them and reads what waits.
    for consult in &consults {
        within("Eva's device joins", eva_device.catch_up(*consult))
            .await
            .expect("join with a key package it holds");
        eva_device.verify_members(*consult).await.expect("members");
    }
    let read = eva_device.messages(last).await.expect("history");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].text, "Welkom in het laatste consult");
}

#[tokio::test]
async fn a_send_the_server_could_not_take_waits_in_the_outbox_and_is_delivered_once() {
    let mut server = TestServer::start().await;
    let Joined {
        sanne_device,
        eva_device,
        consult,
        _dirs,
        ..
    } = joined(&server).await;
    assert!(!sanne_device.pending(consult).await.expect("pending"));
    assert_eq!(
        sanne_device
            .deliver_pending(consult)
            .await
            .expect("nothing"),
        None,
        "nothing waits, so nothing is posted"
    );

    server.stop().await;
    let err = within(
        "a send to a stopped server",
        sanne_device.send(consult, "Bel mij", None),
    )
    .await
    .expect_err("the server is down");
    assert!(
        matches!(err, samenop_client::ClientError::Unavailable(_)),
        "{err:?}"
    );
    assert!(sanne_device.pending(consult).await.expect("pending"));

    server.launch().await;
    let sequence = within("the waiting message goes", async {
        loop {
            match sanne_device.deliver_pending(consult).await {
                Err(samenop_client::ClientError::Unavailable(_)) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => break other,
            }
        }
    })
    .await
    .expect("delivered")
    .expect("it waited");
    assert!(!sanne_device.pending(consult).await.expect("pending"));
    assert_eq!(
        sanne_device.deliver_pending(consult).await.expect("again"),
        None,
        "delivered once, so nothing waits any more"
    );
    let next = sanne_device
        .send(consult, "Of mail", None)
        .await
        .expect("the next send");
    assert_eq!(next, sequence + 1);

    within("Eva reads", eva_device.catch_up(consult))
        .await
        .expect("catch up");
    let texts: Vec<(u64, String)> = eva_device
        .messages(consult)
        .await
        .expect("history")
        .into_iter()
        .map(|m| (m.sequence, m.text))
        .collect();
    assert_eq!(
        texts,
        vec![
            (sequence, "Bel mij".to_owned()),
            (next, "Of mail".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_reading_one_device_join_once_and_decrypt_each_message_once() {
    let server = TestServer::start().await;
    let (sanne, sanne_device, eva, eva_device, _dirs) = two_devices(&server).await;
    let consult = accepted_consult(&sanne, &sanne_device, &eva).await;
    let mut sent = Vec::new();
    for n in 0..6 {
        let text = format!("bericht {n}");
        let sequence = sanne_device.send(consult, &text, None).await.expect("send");
        sent.push((sequence, text));
    }
    // Eva's device joins and reads from eight tasks at once: the Welcome is
    // taken once and no message is decrypted twice (its keys are gone after
    // the first time).
    let eva_device = Arc::new(eva_device);
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let device = Arc::clone(&eva_device);
            tokio::spawn(async move { device.catch_up(consult).await })
        })
        .collect();
    let mut read_by_any = Vec::new();
    for reader in readers {
        let read = within("a reader", reader)
            .await
            .expect("task")
            .expect("every concurrent read succeeds");
        read_by_any.extend(read.into_iter().map(|m| m.sequence));
    }
    read_by_any.sort_unstable();
    assert_eq!(
        read_by_any,
        sent.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "each message is returned by exactly one read"
    );
    let stored: Vec<(u64, String)> = eva_device
        .messages(consult)
        .await
        .expect("history")
        .into_iter()
        .map(|m| (m.sequence, m.text))
        .collect();
    assert_eq!(stored, sent);
}

#[tokio::test]
async fn a_page_of_the_thread_ends_where_the_device_has_read_it() {
    let server = TestServer::start().await;
    let Joined {
        sanne_device,
        eva_device,
        consult,
        _dirs,
        ..
    } = joined(&server).await;
    let from_eva = eva_device
        .send(consult, "van Eva", None)
        .await
        .expect("send");
    // Sanne sends before she has read Eva's message: hers lands after it.
    let own = sanne_device
        .send(consult, "van Sanne", None)
        .await
        .expect("send");
    assert_eq!(own, from_eva + 1);
    let page = sanne_device
        .messages_after(consult, 0, 10)
        .await
        .expect("page");
    assert!(
        page.iter().all(|m| m.sequence < from_eva),
        "her own message waits until Eva's is read, so paging on skips nothing: {page:?}"
    );
    sanne_device.catch_up(consult).await.expect("catch up");
    let page: Vec<u64> = sanne_device
        .messages_after(consult, 0, 10)
        .await
        .expect("page")
        .iter()
        .map(|m| m.sequence)
        .collect();
    assert_eq!(page, [from_eva, own]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_device_syncing_from_many_tasks_keeps_its_thread() {
    let server = TestServer::start().await;
    let Joined {
        sanne_device,
        eva,
        eva_device,
        consult,
        _dirs,
        ..
    } = joined(&server).await;
    // A second device of Eva's arrives while Eva posts: the owner's device
    // adds it from several tasks at once, and writes on.
    let dir = tempfile::tempdir().expect("dir");
    let second = Messenger::open(&eva, dir.path(), "telefoon")
        .await
        .expect("second device");
    let sanne_device = Arc::new(sanne_device);
    let eva_device = Arc::new(eva_device);
    let mut tasks = Vec::new();
    for n in 0..4 {
        let owner = Arc::clone(&sanne_device);
        tasks.push(tokio::spawn(async move {
            owner.sync_members(consult).await.map(|_| ())
        }));
        let poster = Arc::clone(&eva_device);
        tasks.push(tokio::spawn(async move {
            poster
                .send(consult, &format!("Eva {n}"), None)
                .await
                .map(|_| ())
        }));
    }
    for task in tasks {
        within("a writer", task)
            .await
            .expect("task")
            .expect("every concurrent write succeeds");
    }
    let last = sanne_device
        .send(consult, "Sanne schrijft verder", None)
        .await
        .expect("the owner's thread still works");
    within("the second device joins", second.catch_up(consult))
        .await
        .expect("catch up");
    let read: Vec<u64> = second
        .messages(consult)
        .await
        .expect("history")
        .iter()
        .map(|m| m.sequence)
        .collect();
    assert!(read.contains(&last), "{read:?}");
}
