//! End-to-end encrypted threads: a three-party consult over real mTLS with
//! each device's MLS state on disk; removal; a server that alters, replays
//! or reorders stored ciphertexts; a client restarted mid-thread; two
//! members committing at once; live delivery resumed from a cursor; and no
//! plaintext anywhere under the server's data directory.

use samenop_client::{
    Client, ClientError, Expertise, Role, ViolenceType,
    consult::{LegalBasis, NewConsult, Urgency},
    mls::{EventKind, Messenger, NewAttachment},
};
use samenop_proto::v1;
use samenop_tests::{
    ORG_A, ORG_B, TestServer, acting, alter_attachment_chunk, alter_thread_entry,
    family_with_consent, files_containing, thread_entries, within,
};
use tempfile::TempDir;
use uuid::Uuid;

const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);
const ORG_C: &str = "jeugdbescherming-demoregio";

/// One professional's device: its client and its messenger, with the state
/// directory it keeps on disk.
struct Device {
    client: Client,
    messenger: Option<Messenger>,
    dir: TempDir,
}

impl Device {
    async fn new(client: Client, label: &str) -> Device {
        let dir = tempfile::tempdir().expect("state dir");
        let messenger = Messenger::open(&client, dir.path(), label)
            .await
            .expect("open the device");
        Device {
            client,
            messenger: Some(messenger),
            dir,
        }
    }

    fn messenger(&self) -> &Messenger {
        self.messenger.as_ref().expect("open")
    }

    /// Drops the messenger and opens it again from its state on disk, as
    /// after a restart of the registration system.
    async fn reopen(&mut self) {
        drop(self.messenger.take());
        let mut attempts = 0;
        // sled releases the directory once its background I/O is done.
        loop {
            match Messenger::open(&self.client, self.dir.path(), "ignored").await {
                Ok(messenger) => {
                    self.messenger = Some(messenger);
                    return;
                }
                Err(ClientError::LocalState(_)) if attempts < 250 => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(err) => panic!("cannot reopen the device: {err}"),
            }
        }
    }
}

/// A consult of Sanne (contact person, org A) with Eva (org B) and Ravi
/// (org C) as accepted specialists, and a device for each.
struct Consult {
    server: TestServer,
    id: Uuid,
    family: samenop_client::family::Family,
    consent: Uuid,
    sanne: Device,
    eva: Device,
    ravi: Device,
}

async fn three_party() -> Consult {
    let server = TestServer::start().await;
    let sanne = server
        .professional(ORG_A, "Sanne", &[Role::ContactPerson], &[])
        .await;
    let eva = server
        .professional(ORG_B, "Eva", &[Role::Specialist], &[ABUSE])
        .await;
    let ravi = server
        .professional(ORG_C, "Ravi", &[Role::Specialist], &[ABUSE])
        .await;
    let (family, consent) = family_with_consent(&server, &sanne).await;
    let consult = sanne
        .open_consult(&NewConsult {
            about: samenop_client::consult::About::Family {
                family: family.id,
                concerned: vec![family.members[1].id],
                basis: LegalBasis::consent(consent),
            },
            question: "Hoe wegen wij deze signalen?".into(),
            expertise: ABUSE,
            urgency: Urgency::Normal,
            respond_by: None,
            specialist: Some(eva.professional().expect("eva")),
        })
        .await
        .expect("open");
    eva.accept_consult(consult.id).await.expect("eva accepts");
    sanne
        .invite_specialist(consult.id, ravi.professional().expect("ravi"), ABUSE)
        .await
        .expect("invite ravi");
    ravi.accept_consult(consult.id).await.expect("ravi accepts");
    let c = Consult {
        id: consult.id,
        family: family.clone(),
        consent,
        sanne: Device::new(sanne, "werkplek sanne").await,
        eva: Device::new(eva, "laptop eva").await,
        ravi: Device::new(ravi, "laptop ravi").await,
        server,
    };
    c.sanne
        .messenger()
        .create_thread(c.id)
        .await
        .expect("create");
    let change = c.sanne.messenger().sync_members(c.id).await.expect("sync");
    assert_eq!(change.added.len(), 2, "both specialists' devices are added");
    for device in [&c.eva, &c.ravi] {
        device.messenger().catch_up(c.id).await.expect("join");
        assert_eq!(device.messenger().epoch(c.id).await.unwrap(), Some(1));
    }
    c
}

fn texts(messages: &[samenop_client::mls::ThreadMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.text.as_str()).collect()
}

/// `device` lost the thread: the server no longer serves it, and given the
/// ciphertexts anyway (as Eva's client fetches them) it cannot decrypt
/// them, so `unread` never shows in its history.
async fn locked_out(c: &Consult, device: &Device, unread: &str) {
    let refused = device.messenger().catch_up(c.id).await.unwrap_err();
    assert!(matches!(refused, ClientError::NotFound(_)), "{refused:?}");
    let entries = thread_entries(&c.eva.client, c.eva.messenger().device(), c.id).await;
    let err = device.messenger().apply(c.id, entries).await.unwrap_err();
    assert!(matches!(err, ClientError::FailedPrecondition(_)), "{err:?}");
    let history = device.messenger().messages(c.id).await.unwrap();
    assert!(history.iter().all(|m| m.text != unread));
}

#[tokio::test]
async fn three_parties_exchange_messages_and_no_plaintext_reaches_the_server() {
    let mut c = three_party().await;
    for device in [&c.sanne, &c.eva, &c.ravi] {
        device
            .messenger()
            .verify_members(c.id)
            .await
            .expect("members match the directory");
    }
    let canary = format!("canary-{}", Uuid::new_v4());
    let first = c
        .sanne
        .messenger()
        .send(c.id, &format!("Vraag aan jullie beiden ({canary})"), None)
        .await
        .unwrap();
    let eva_got = c.eva.messenger().catch_up(c.id).await.unwrap();
    assert_eq!(
        texts(&eva_got),
        [format!("Vraag aan jullie beiden ({canary})").as_str()]
    );
    assert_eq!(
        eva_got[0].sender_professional,
        c.sanne.client.professional().unwrap()
    );
    c.eva
        .messenger()
        .send(c.id, &format!("Mijn antwoord {canary}"), Some(first))
        .await
        .unwrap();
    c.ravi
        .messenger()
        .send(c.id, "Eens met Eva", None)
        .await
        .unwrap();

    let sanne_got = c.sanne.messenger().catch_up(c.id).await.unwrap();
    assert_eq!(
        texts(&sanne_got),
        [format!("Mijn antwoord {canary}").as_str(), "Eens met Eva"]
    );
    assert_eq!(sanne_got[0].reply_to, Some(first));
    let ravi_got = c.ravi.messenger().catch_up(c.id).await.unwrap();
    assert_eq!(
        texts(&ravi_got),
        [
            format!("Vraag aan jullie beiden ({canary})").as_str(),
            format!("Mijn antwoord {canary}").as_str()
        ]
    );
    // Everyone's history holds the same thread, own messages included.
    let history = c.sanne.messenger().messages(c.id).await.unwrap();
    assert_eq!(history.len(), 3);
    assert!(history[0].own);

    // The first specialist's answer is recorded for the network's figures.
    let consult = c.sanne.client.consult(c.id).await.unwrap();
    assert!(consult.first_answer_at.is_some(), "first answer recorded");

    // Not a byte of the content under the server's data directory.
    c.server.stop().await;
    assert!(
        !c.server.stores(canary.as_bytes()).await,
        "plaintext found in the server's store"
    );
    // The clients keep theirs, in files only their user can read.
    for device in [&c.sanne, &c.eva] {
        assert!(!files_containing(device.dir.path(), canary.as_bytes()).is_empty());
        assert_private(device.dir.path());
    }
}

#[cfg(unix)]
fn assert_private(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        if entry.path().is_dir() {
            assert_eq!(mode, 0o700, "{:?}", entry.path());
            assert_private(&entry.path());
        } else {
            assert_eq!(mode, 0o600, "{:?}", entry.path());
        }
    }
}

#[cfg(not(unix))]
fn assert_private(_dir: &std::path::Path) {}

#[tokio::test]
async fn a_removed_specialist_cannot_read_what_follows() {
    let c = three_party().await;
    let ravi_id = c.ravi.client.professional().unwrap();
    c.sanne
        .client
        .remove_participant(c.id, ravi_id)
        .await
        .expect("remove ravi");
    let change = c.sanne.messenger().sync_members(c.id).await.unwrap();
    assert_eq!(change.removed, vec![c.ravi.messenger().device()]);
    c.sanne
        .messenger()
        .send(c.id, "Alleen voor Eva", None)
        .await
        .unwrap();
    assert_eq!(
        texts(&c.eva.messenger().catch_up(c.id).await.unwrap()),
        ["Alleen voor Eva"]
    );

    locked_out(&c, &c.ravi, "Alleen voor Eva").await;
}

#[tokio::test]
async fn altered_replayed_and_reordered_ciphertexts_are_rejected() {
    let mut c = three_party().await;
    let first = c.sanne.messenger().send(c.id, "een", None).await.unwrap();
    let second = c.sanne.messenger().send(c.id, "twee", None).await.unwrap();
    let third = c.sanne.messenger().send(c.id, "drie", None).await.unwrap();

    let entries = thread_entries(&c.sanne.client, c.sanne.messenger().device(), c.id).await;
    let original = |seq: u64| entries.iter().find(|e| e.sequence == seq).unwrap().clone();
    let (one, two, three) = (original(first), original(second), original(third));

    // A flipped byte in a stored ciphertext.
    c.server.stop().await;
    alter_thread_entry(&c.server, c.id, first, |entry| {
        let last = entry.mls_message.len() - 1;
        entry.mls_message[last] ^= 0x01;
    })
    .await;
    c.server.launch().await;
    let err = c.eva.messenger().catch_up(c.id).await.unwrap_err();
    assert!(matches!(err, ClientError::Rejected(_)), "{err:?}");
    assert!(
        err.to_string().contains(&format!("message {first}")),
        "{err}"
    );
    // The thread stays at the bad message: nothing after it is shown.
    assert!(c.eva.messenger().messages(c.id).await.unwrap().is_empty());

    // Two messages swapped: each decrypts, but out of its sender's order.
    c.server.stop().await;
    alter_thread_entry(&c.server, c.id, first, |e| {
        e.mls_message = one.mls_message.clone()
    })
    .await;
    alter_thread_entry(&c.server, c.id, second, |e| {
        e.mls_message = three.mls_message.clone()
    })
    .await;
    alter_thread_entry(&c.server, c.id, third, |e| {
        e.mls_message = two.mls_message.clone()
    })
    .await;
    c.server.launch().await;
    let err = c.ravi.messenger().catch_up(c.id).await.unwrap_err();
    assert!(matches!(err, ClientError::Rejected(_)), "{err:?}");
    assert!(err.to_string().contains("order"), "{err}");
    assert_eq!(
        texts(&c.ravi.messenger().messages(c.id).await.unwrap()),
        ["een"]
    );

    // A message replayed in place of the next one.
    c.server.stop().await;
    alter_thread_entry(&c.server, c.id, second, |e| {
        e.mls_message = one.mls_message.clone()
    })
    .await;
    c.server.launch().await;
    c.eva.reopen().await;
    let err = c.eva.messenger().catch_up(c.id).await.unwrap_err();
    assert!(matches!(err, ClientError::Rejected(_)), "{err:?}");
}

#[tokio::test]
async fn a_client_restarted_mid_thread_reads_and_sends_in_the_same_group() {
    let mut c = three_party().await;
    c.sanne
        .messenger()
        .send(c.id, "voor de herstart", None)
        .await
        .unwrap();
    assert_eq!(c.eva.messenger().catch_up(c.id).await.unwrap().len(), 1);
    let device = c.eva.messenger().device();
    c.eva.reopen().await;
    assert_eq!(
        c.eva.messenger().device(),
        device,
        "the same registered device"
    );
    c.sanne
        .messenger()
        .send(c.id, "na de herstart", None)
        .await
        .unwrap();
    assert_eq!(
        texts(&c.eva.messenger().catch_up(c.id).await.unwrap()),
        ["na de herstart"]
    );
    c.eva
        .messenger()
        .send(c.id, "ik ben er nog", None)
        .await
        .unwrap();
    assert_eq!(
        texts(&c.sanne.messenger().catch_up(c.id).await.unwrap()),
        ["ik ben er nog"]
    );
    assert_eq!(
        texts(&c.eva.messenger().messages(c.id).await.unwrap()),
        ["voor de herstart", "na de herstart", "ik ben er nog"]
    );
}

#[tokio::test]
async fn two_members_committing_at_once_both_land_in_turn() {
    let c = three_party().await;
    let (eva, ravi) = tokio::join!(
        c.eva.messenger().update_keys(c.id),
        c.ravi.messenger().update_keys(c.id)
    );
    let (eva, ravi) = (
        eva.expect("eva's commit lands"),
        ravi.expect("ravi's commit lands"),
    );
    assert_eq!(eva.max(ravi), 3, "two commits on top of epoch 1");
    c.sanne.messenger().catch_up(c.id).await.unwrap();
    c.eva.messenger().catch_up(c.id).await.unwrap();
    c.ravi.messenger().catch_up(c.id).await.unwrap();
    for device in [&c.sanne, &c.eva, &c.ravi] {
        assert_eq!(device.messenger().epoch(c.id).await.unwrap(), Some(3));
    }
    c.sanne
        .messenger()
        .send(c.id, "na beide updates", None)
        .await
        .unwrap();
    assert_eq!(
        texts(&c.eva.messenger().catch_up(c.id).await.unwrap()),
        ["na beide updates"]
    );
    assert_eq!(
        texts(&c.ravi.messenger().catch_up(c.id).await.unwrap()),
        ["na beide updates"]
    );

    // On the wire: a commit for a past epoch is ABORTED and stores nothing.
    let entries = thread_entries(&c.sanne.client, c.sanne.messenger().device(), c.id).await;
    let stale = entries
        .iter()
        .find(|e| e.kind == v1::ThreadEntryKind::Commit as i32)
        .unwrap();
    let mut threads = v1::thread_service_client::ThreadServiceClient::new(c.eva.client.channel());
    let mut request = tonic::Request::new(v1::PostCommitRequest {
        consult_id: c.id.to_string(),
        device_id: c.eva.messenger().device().to_string(),
        epoch: stale.epoch,
        commit: stale.mls_message.clone(),
        welcomes: Vec::new(),
        request_id: Uuid::new_v4().to_string(),
    });
    request.metadata_mut().insert(
        samenop_proto::PROFESSIONAL_METADATA_KEY,
        c.eva
            .client
            .professional()
            .unwrap()
            .to_string()
            .parse()
            .unwrap(),
    );
    let status = threads.post_commit(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    let after = thread_entries(&c.sanne.client, c.sanne.messenger().device(), c.id).await;
    assert_eq!(after.len(), entries.len());
}

#[tokio::test]
async fn live_events_resume_from_a_cursor_across_a_server_restart() {
    let mut c = three_party().await;
    let mut events = c.eva.messenger().subscribe(None).await.unwrap();
    // Eva's log so far: her Welcome and the commit that added her.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = within("Eva's Welcome and the commit that added her", events.next())
            .await
            .unwrap()
            .expect("an event");
        seen.push(event.kind);
    }
    assert!(
        matches!(seen[0], EventKind::Welcome { consult, commit_sequence: 1 } if consult == c.id)
    );
    assert!(matches!(&seen[1], EventKind::ThreadEntry(e) if e.sequence == 1));

    c.sanne.messenger().send(c.id, "live", None).await.unwrap();
    let event = within("the live message", events.next())
        .await
        .unwrap()
        .expect("live event");
    let EventKind::ThreadEntry(entry) = event.kind else {
        panic!("a thread entry");
    };
    assert_eq!(entry.sequence, 2);
    let got = c.eva.messenger().apply(c.id, vec![entry]).await.unwrap();
    assert_eq!(texts(&got), ["live"]);
    let cursor = event.cursor;

    // While the server is down, nothing is lost: after the restart the
    // subscription resumes after the cursor, without repeats.
    c.server.stop().await;
    assert!(
        !matches!(
            within("the stream to end with the server", events.next()).await,
            Ok(Some(_))
        ),
        "the stream ends with the server"
    );
    c.server.launch().await;
    c.sanne
        .messenger()
        .send(c.id, "na de herstart", None)
        .await
        .unwrap();
    let mut resumed = c.eva.messenger().subscribe(Some(&cursor)).await.unwrap();
    let event = within("the event missed while the server was down", resumed.next())
        .await
        .unwrap()
        .expect("the missed event");
    let EventKind::ThreadEntry(entry) = event.kind else {
        panic!("a thread entry");
    };
    assert_eq!(
        entry.sequence, 3,
        "the next one after the cursor, no repeat"
    );
    // A cursor of another device is refused.
    let err = c.ravi.messenger().subscribe(Some(&cursor)).await;
    let err = match err {
        Err(err) => err,
        Ok(mut stream) => within("the refusal of another device's cursor", stream.next())
            .await
            .unwrap_err(),
    };
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err:?}");
}

#[tokio::test]
async fn only_participants_read_and_post_and_ended_consults_refuse_posts() {
    let c = three_party().await;
    let olga = c
        .server
        .professional(ORG_B, "Olga", &[Role::Specialist], &[ABUSE])
        .await;
    let olga = Device::new(olga, "laptop olga").await;

    // Someone who is not a participant: the consult does not exist for her.
    let err = olga.messenger().catch_up(c.id).await.unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");
    // Her key packages cannot be claimed for it, and no Welcome may go to
    // her device.
    let mut directory =
        v1::directory_service_client::DirectoryServiceClient::new(c.sanne.client.channel());
    let status = directory
        .claim_key_packages(acting(
            &c.sanne.client,
            v1::ClaimKeyPackagesRequest {
                consult_id: c.id.to_string(),
                professional_id: olga.client.professional().unwrap().to_string(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let entries = thread_entries(&c.sanne.client, c.sanne.messenger().device(), c.id).await;
    let mut eva_threads =
        v1::thread_service_client::ThreadServiceClient::new(c.eva.client.channel());
    let welcome = eva_threads
        .fetch_thread(acting(
            &c.eva.client,
            v1::FetchThreadRequest {
                consult_id: c.id.to_string(),
                device_id: c.eva.messenger().device().to_string(),
                from_sequence: 1,
                page_size: 1,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .welcomes
        .remove(0)
        .welcome;
    let mut threads = v1::thread_service_client::ThreadServiceClient::new(c.sanne.client.channel());
    let status = threads
        .post_commit(acting(
            &c.sanne.client,
            v1::PostCommitRequest {
                consult_id: c.id.to_string(),
                device_id: c.sanne.messenger().device().to_string(),
                epoch: 0,
                commit: entries[0].mls_message.clone(),
                welcomes: vec![v1::WelcomeDelivery {
                    welcome,
                    device_ids: vec![olga.messenger().device().to_string()],
                }],
                request_id: Uuid::new_v4().to_string(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // A participant posting from another professional's device is refused.
    let status = eva_threads
        .post_message(acting(
            &c.eva.client,
            v1::PostMessageRequest {
                consult_id: c.id.to_string(),
                device_id: c.sanne.messenger().device().to_string(),
                mls_message: entries[0].mls_message.clone(),
                request_id: Uuid::new_v4().to_string(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    // A handshake message posted as an application message is refused.
    let status = eva_threads
        .post_message(acting(
            &c.eva.client,
            v1::PostMessageRequest {
                consult_id: c.id.to_string(),
                device_id: c.eva.messenger().device().to_string(),
                mls_message: entries[0].mls_message.clone(),
                request_id: Uuid::new_v4().to_string(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // Once closed, the thread refuses posts and says why; it stays readable.
    c.sanne
        .client
        .close_consult(c.id, samenop_client::consult::Outcome::AdviceGiven)
        .await
        .unwrap();
    let err = c
        .eva
        .messenger()
        .send(c.id, "te laat", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::FailedPrecondition(text) if text.contains("closed")),
        "{err:?}"
    );
    c.eva
        .messenger()
        .catch_up(c.id)
        .await
        .expect("still readable");
}

/// A canary-marked content of `size` bytes.
fn document(canary: &str, size: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = canary.bytes().cycle().take(size).collect();
    bytes[size / 2] = b'!';
    bytes
}

#[tokio::test]
async fn attachments_travel_encrypted_in_chunks_and_are_checked_on_arrival() {
    let mut c = three_party().await;
    let canary = format!("attachment-canary-{}", Uuid::new_v4());
    // Larger than one chunk each way (256 KiB), so chunking is exercised.
    let report = document(&canary, 700 * 1024);
    let sent = c
        .sanne
        .messenger()
        .send_with(
            c.id,
            "Het verslag, zie bijlage",
            None,
            &[NewAttachment {
                name: "verslag.pdf",
                media_type: "application/pdf",
                bytes: &report,
            }],
        )
        .await
        .unwrap();

    for device in [&c.eva, &c.ravi] {
        let got = device.messenger().catch_up(c.id).await.unwrap();
        let message = got
            .iter()
            .find(|m| m.sequence == sent)
            .expect("the message");
        let [attachment] = message.attachments.as_slice() else {
            panic!("one attachment");
        };
        assert_eq!(
            (attachment.name.as_str(), attachment.size),
            ("verslag.pdf", report.len() as u64)
        );
        let opened = device
            .messenger()
            .open_attachment(c.id, attachment)
            .await
            .unwrap();
        assert!(opened == report, "the content arrives whole");
    }
    // Only ciphertext reached the server.
    assert!(
        !c.server.stores(canary.as_bytes()).await,
        "the attachment's plaintext reached the server's store"
    );

    // An outsider's device learns nothing of it.
    let attachment = c.eva.messenger().messages(c.id).await.unwrap()[0].attachments[0].clone();
    let olga = Device::new(
        c.server
            .professional(ORG_B, "Olga", &[Role::Specialist], &[ABUSE])
            .await,
        "laptop olga",
    )
    .await;
    let err = olga
        .messenger()
        .open_attachment(c.id, &attachment)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");

    // Bytes changed on the server's disk are refused, not shown.
    c.server.stop().await;
    alter_attachment_chunk(&c.server, attachment.id, 1, |chunk| {
        chunk[10] ^= 0x01;
    })
    .await;
    c.server.launch().await;
    let err = c
        .ravi
        .messenger()
        .open_attachment(c.id, &attachment)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Rejected(_)), "{err:?}");
}

#[tokio::test]
async fn uploads_over_the_limit_or_not_as_announced_are_refused() {
    use v1::upload_attachment_request::Part;
    let c = three_party().await;
    let device = c.sanne.messenger().device();
    let upload = |header: v1::AttachmentHeader, chunks: Vec<Vec<u8>>| {
        let parts: Vec<_> = std::iter::once(Part::Header(header))
            .chain(chunks.into_iter().map(Part::Chunk))
            .map(|part| v1::UploadAttachmentRequest { part: Some(part) })
            .collect();
        let client = c.sanne.client.clone();
        async move {
            let mut threads = v1::thread_service_client::ThreadServiceClient::new(client.channel());
            threads
                .upload_attachment(acting(&client, tokio_stream::iter(parts)))
                .await
                .map(|r| r.into_inner())
        }
    };
    let header = |size: u64, bytes: &[u8]| v1::AttachmentHeader {
        consult_id: c.id.to_string(),
        device_id: device.to_string(),
        size_bytes: size,
        sha256: ring::digest::digest(&ring::digest::SHA256, bytes)
            .as_ref()
            .to_vec(),
    };
    let bytes = vec![7u8; 5000];

    // Declared over the configured limit (16 MiB): refused at the header.
    let err = upload(header(16 * 1024 * 1024 + 1, &bytes), Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("limit"), "{}", err.message());
    // A chunk over 1 MiB.
    let big = vec![1u8; 1024 * 1024 + 1];
    let err = upload(header(big.len() as u64, &big), vec![big.clone()])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    // Fewer bytes than announced, more, or other bytes.
    for (size, chunks, field) in [
        (5001, vec![bytes.clone()], "size_bytes"),
        (4000, vec![bytes.clone()], "size_bytes"),
        (5000, vec![vec![8u8; 5000]], "sha256"),
    ] {
        let err = upload(header(size, &bytes), chunks).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(field), "{}", err.message());
    }
    // As announced: stored.
    let stored = upload(
        header(5000, &bytes),
        vec![bytes[..3000].to_vec(), bytes[3000..].to_vec()],
    )
    .await
    .unwrap();
    assert_eq!(stored.size_bytes, 5000);

    // A closed consult takes no more attachments.
    c.sanne
        .client
        .close_consult(c.id, samenop_client::consult::Outcome::AdviceGiven)
        .await
        .unwrap();
    let err = upload(header(5000, &bytes), vec![bytes.clone()])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
}

/// The next consult event of `events` with `change`, skipping the rest.
async fn next_change(
    events: &mut samenop_client::mls::Events,
    change: samenop_client::consult::ConsultChange,
) -> samenop_client::consult::ConsultEvent {
    loop {
        let event = within(&format!("a {change:?} event"), events.next())
            .await
            .unwrap()
            .expect("the stream goes on");
        if let EventKind::Consult(event) = event.kind
            && event.change == change
        {
            return event;
        }
    }
}

#[tokio::test]
async fn after_a_handover_the_group_follows_the_new_contact_person() {
    use samenop_client::consult::ConsultChange;
    let c = three_party().await;
    let mila = Device::new(
        c.server
            .professional(ORG_A, "Mila", &[Role::ContactPerson], &[])
            .await,
        "werkplek mila",
    )
    .await;
    let mut eva_events = c.eva.messenger().subscribe(None).await.unwrap();
    let mut ravi_events = c.ravi.messenger().subscribe(None).await.unwrap();
    c.sanne
        .client
        .hand_over_family(c.family.id, mila.client.professional().unwrap())
        .await
        .unwrap();

    // The specialists' devices act on the event: the first one to commit
    // moves the group, the other finds nothing left to do.
    let event = next_change(&mut eva_events, ConsultChange::OwnerChanged).await;
    let change = c
        .eva
        .messenger()
        .follow(&event)
        .await
        .unwrap()
        .expect("eva acts");
    assert_eq!(change.removed, vec![c.sanne.messenger().device()]);
    assert_eq!(change.added, vec![mila.messenger().device()]);
    let event = next_change(&mut ravi_events, ConsultChange::OwnerChanged).await;
    c.ravi.messenger().catch_up(c.id).await.unwrap();
    let nothing = c
        .ravi
        .messenger()
        .follow(&event)
        .await
        .unwrap()
        .expect("ravi checks");
    assert_eq!(nothing, Default::default());

    // Mila joins, finds exactly the participants' devices, and is read.
    mila.messenger().catch_up(c.id).await.unwrap();
    mila.messenger().verify_members(c.id).await.unwrap();
    mila.messenger()
        .send(c.id, "Ik neem het over", None)
        .await
        .unwrap();
    for device in [&c.eva, &c.ravi] {
        assert_eq!(
            texts(&device.messenger().catch_up(c.id).await.unwrap()),
            ["Ik neem het over"]
        );
    }

    locked_out(&c, &c.sanne, "Ik neem het over").await;
}

#[tokio::test]
async fn a_specialist_who_returns_reads_from_their_return_and_late_joiners_read_on() {
    let c = three_party().await;
    let eva_id = c.eva.client.professional().unwrap();
    for text in ["een", "twee"] {
        c.eva.messenger().send(c.id, text, None).await.unwrap();
    }
    c.sanne.messenger().catch_up(c.id).await.unwrap();
    c.ravi.messenger().catch_up(c.id).await.unwrap();

    // Eva leaves; the owner's device removes hers; the thread goes on.
    c.eva.client.leave_consult(c.id).await.unwrap();
    let change = c.sanne.messenger().sync_members(c.id).await.unwrap();
    assert_eq!(change.removed, vec![c.eva.messenger().device()]);
    c.sanne
        .messenger()
        .send(c.id, "terwijl Eva weg is", None)
        .await
        .unwrap();

    // She is invited again and accepts: until her device is added again,
    // there is nothing for it to read, and nothing of the time away.
    c.sanne
        .client
        .invite_specialist(c.id, eva_id, ABUSE)
        .await
        .unwrap();
    c.eva.client.accept_consult(c.id).await.unwrap();
    assert!(c.eva.messenger().catch_up(c.id).await.unwrap().is_empty());

    let change = c.sanne.messenger().sync_members(c.id).await.unwrap();
    assert_eq!(change.added, vec![c.eva.messenger().device()]);
    // Her device joins again, and her own count goes on where it was.
    assert!(c.eva.messenger().catch_up(c.id).await.unwrap().is_empty());
    c.sanne
        .messenger()
        .send(c.id, "welkom terug", None)
        .await
        .unwrap();
    c.eva.messenger().send(c.id, "drie", None).await.unwrap();
    assert_eq!(
        texts(&c.eva.messenger().catch_up(c.id).await.unwrap()),
        ["welkom terug"]
    );
    assert!(
        texts(&c.eva.messenger().messages(c.id).await.unwrap())
            .iter()
            .all(|t| *t != "terwijl Eva weg is"),
        "what was said while she was away stays unread"
    );
    assert_eq!(
        texts(&c.ravi.messenger().catch_up(c.id).await.unwrap()),
        ["terwijl Eva weg is", "welkom terug", "drie"]
    );

    // A specialist who joins now reads on from there, although everyone
    // sent before.
    let olga = Device::new(
        c.server
            .professional(ORG_B, "Olga", &[Role::Specialist], &[ABUSE])
            .await,
        "laptop olga",
    )
    .await;
    let olga_id = olga.client.professional().unwrap();
    c.sanne
        .client
        .invite_specialist(c.id, olga_id, ABUSE)
        .await
        .unwrap();
    olga.client.accept_consult(c.id).await.unwrap();
    c.sanne.messenger().sync_members(c.id).await.unwrap();
    olga.messenger().catch_up(c.id).await.unwrap();
    c.eva.messenger().send(c.id, "vier", None).await.unwrap();
    c.ravi.messenger().send(c.id, "vijf", None).await.unwrap();
    assert_eq!(
        texts(&olga.messenger().catch_up(c.id).await.unwrap()),
        ["vier", "vijf"]
    );
}

#[tokio::test]
async fn a_message_whose_post_failed_goes_first_once_the_server_is_back() {
    let mut c = three_party().await;
    c.server.stop().await;
    let err = c
        .eva
        .messenger()
        .send(c.id, "eerst", None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unavailable(_)), "{err:?}");
    c.server.launch().await;
    c.eva.messenger().send(c.id, "daarna", None).await.unwrap();
    // Both arrive, once each, in the order written.
    assert_eq!(
        texts(&c.sanne.messenger().catch_up(c.id).await.unwrap()),
        ["eerst", "daarna"]
    );
    assert_eq!(
        texts(&c.eva.messenger().messages(c.id).await.unwrap()),
        ["eerst", "daarna"]
    );
}

#[tokio::test]
async fn specialists_whose_basis_ends_are_taken_out_and_come_back_with_a_new_one() {
    use samenop_client::{
        consult::{ConsultChange, Outcome},
        family::RevocationReason,
    };
    let c = three_party().await;
    let mut events = c.sanne.messenger().subscribe(None).await.unwrap();

    // The consent is revoked: the consult is suspended, and Sanne's device
    // takes both specialists' devices out of the group.
    c.sanne
        .client
        .revoke_consent(c.consent, RevocationReason::Withdrawn, None)
        .await
        .unwrap();
    let suspended = next_change(&mut events, ConsultChange::Suspended).await;
    let change = c
        .sanne
        .messenger()
        .follow(&suspended)
        .await
        .unwrap()
        .expect("acts");
    let mut removed = change.removed.clone();
    removed.sort();
    let mut specialists = vec![c.eva.messenger().device(), c.ravi.messenger().device()];
    specialists.sort();
    assert_eq!(removed, specialists);
    c.sanne.messenger().verify_members(c.id).await.unwrap();
    // Eva's device applies its removal; nothing is readable for it now.
    assert!(c.eva.messenger().catch_up(c.id).await.unwrap().is_empty());
    let err = c
        .eva
        .messenger()
        .send(c.id, "nog iets", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::LocalState(_) | ClientError::FailedPrecondition(_)
        ),
        "{err:?}"
    );

    // A new consent resumes the consult; the specialists are added again
    // and read what is said from then on.
    let renewed = c
        .sanne
        .client
        .record_consent(
            c.family.id,
            &samenop_tests::abuse_consent(
                &c.family,
                &c.server,
                Vec::new(),
                std::time::Duration::from_secs(30 * 24 * 3600),
            ),
        )
        .await
        .unwrap();
    c.sanne
        .client
        .change_legal_basis(c.id, &LegalBasis::consent(renewed.id))
        .await
        .unwrap();
    let resumed = next_change(&mut events, ConsultChange::LegalBasisChanged).await;
    let change = c
        .sanne
        .messenger()
        .follow(&resumed)
        .await
        .unwrap()
        .expect("acts");
    assert_eq!(change.added.len(), 2);
    c.sanne
        .messenger()
        .send(c.id, "verder", None)
        .await
        .unwrap();
    for device in [&c.eva, &c.ravi] {
        assert_eq!(
            texts(&device.messenger().catch_up(c.id).await.unwrap()),
            ["verder"]
        );
    }

    // Closed: the specialists are taken out for good.
    c.sanne
        .client
        .close_consult(c.id, Outcome::AdviceGiven)
        .await
        .unwrap();
    let closed = next_change(&mut events, ConsultChange::Closed).await;
    let change = c
        .sanne
        .messenger()
        .follow(&closed)
        .await
        .unwrap()
        .expect("acts");
    assert_eq!(change.removed.len(), 2);
    // Content stays refused, for everyone.
    let err = c
        .sanne
        .messenger()
        .send(c.id, "na afloop", None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::FailedPrecondition(_)), "{err:?}");
}

#[tokio::test]
async fn a_message_the_server_attributes_to_another_professional_is_rejected() {
    let mut c = three_party().await;
    let sent = c.eva.messenger().send(c.id, "van Eva", None).await.unwrap();
    let ravi = c.ravi.client.professional().unwrap();
    c.server.stop().await;
    alter_thread_entry(&c.server, c.id, sent, |entry| {
        entry.sender_professional_id = ravi.to_string();
    })
    .await;
    c.server.launch().await;
    let err = c.sanne.messenger().catch_up(c.id).await.unwrap_err();
    assert!(matches!(err, ClientError::Rejected(_)), "{err:?}");
    assert!(err.to_string().contains("another professional"), "{err}");
}
