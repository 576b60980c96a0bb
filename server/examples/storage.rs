//! What the embedded store costs on disk, and how long it takes to open.
//!
//! Writes `THREADS` consult threads of `PER_THREAD` messages each through
//! the server's own store layer, each message as the server stores a post:
//! the thread entry (a ciphertext of a 256-byte payload), the thread head,
//! the answer kept under the post's request id, a reference in the event log
//! of each of the consult's two devices, and the call's audit event with its
//! index entries; one batch per post, 64 posts in flight (group commit).
//! Then it removes the threads of half the consults, as retention does, and
//! reopens the store: cleanly, and after a crash (from a copy of the file
//! taken while it was open, which redb must repair).
//!
//! ```sh
//! cargo run --release -p samenop-server --example storage            # 1 000 000 messages
//! cargo run --release -p samenop-server --example storage -- 100000  # fewer
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use samenop_proto::v1;
use samenop_server::{
    domain::{DeviceId, consult::ConsultId},
    store::{Batch, Store, redb::RedbStore, threads::Threads},
};

/// The payload of each message.
const PAYLOAD: usize = 256;
/// What MLS adds to a payload of that size in a PrivateMessage: group id,
/// epoch, content type, encrypted sender data, the Ed25519 signature, the
/// AEAD tag and framing (measured with OpenMLS 0.9: 160 to 190 bytes).
const MLS_OVERHEAD: usize = 180;
/// Posts in flight at once.
const IN_FLIGHT: usize = 64;

fn du(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn audit_event(consult: ConsultId, family: uuid::Uuid, device: DeviceId) -> v1::AuditEvent {
    use v1::{AuditObject, AuditObjectType as Object};
    v1::AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        action: "samenop.v1.ThreadService/PostMessage".into(),
        occurred_at: Some(prost_types::Timestamp::from(SystemTime::now())),
        outcome: v1::AuditOutcome::Allowed as i32,
        status_code: "OK".into(),
        actor: Some(v1::AuditActor {
            professional_id: uuid::Uuid::now_v7().to_string(),
            organisation_oin: "00000099000000000002".into(),
            role: v1::Role::Specialist as i32,
            certificate_fingerprint: "ab".repeat(32),
            network_address: "192.0.2.10:53122".into(),
            ..Default::default()
        }),
        objects: vec![
            AuditObject {
                object_type: Object::Consult as i32,
                object_id: consult.to_string(),
            },
            AuditObject {
                object_type: Object::Family as i32,
                object_id: family.to_string(),
            },
            AuditObject {
                object_type: Object::Device as i32,
                object_id: device.to_string(),
            },
        ],
        legal_basis: Some(v1::LegalBasis {
            ground: v1::LegalGround::Consent as i32,
            consent_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        }),
        purpose: v1::Purpose::Consultation as i32,
        request_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    }
}

/// One post, stored as the server stores it; retried when a concurrent
/// post to the same device logs moved a head.
async fn post(threads: &Threads, consult: ConsultId, devices: [DeviceId; 2], family: uuid::Uuid) {
    let ciphertext: Vec<u8> = (0..PAYLOAD + MLS_OVERHEAD).map(|_| rand_byte()).collect();
    loop {
        let read = threads.head(consult).await.unwrap();
        let entry = v1::ThreadEntry {
            consult_id: consult.to_string(),
            sequence: read.head.last_sequence + 1,
            kind: v1::ThreadEntryKind::Application as i32,
            epoch: read.head.epoch,
            sender_device_id: devices[0].to_string(),
            sender_professional_id: uuid::Uuid::now_v7().to_string(),
            mls_message: ciphertext.clone(),
            posted_at: Some(prost_types::Timestamp::from(SystemTime::now())),
        };
        let mut batch = Batch::new();
        threads.stage_append(
            &mut batch,
            &read,
            &entry,
            read.head.epoch,
            &uuid::Uuid::new_v4(),
        );
        let reference = v1::SubscribeResponse {
            occurred_at: entry.posted_at,
            event: Some(v1::subscribe_response::Event::ThreadEntry(
                v1::ThreadEntry {
                    consult_id: entry.consult_id.clone(),
                    sequence: entry.sequence,
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        for device in devices {
            threads.stage_events(&mut batch, device, std::slice::from_ref(&reference));
        }
        batch.audit(audit_event(consult, family, devices[0]));
        match threads.commit(batch).await {
            Ok(()) => return,
            Err(samenop_server::store::StoreError::Conflict) => continue,
            Err(other) => panic!("{other}"),
        }
    }
}

/// Bytes that do not compress, as ciphertext does not.
fn rand_byte() -> u8 {
    let mut byte = [0u8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte).unwrap();
    byte[0]
}

#[tokio::main]
async fn main() {
    let messages: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let threads_count = (messages / 100).max(1);
    let per_thread = messages / threads_count;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
    let threads = Threads::new(store.clone());
    let consults: Vec<(ConsultId, [DeviceId; 2], uuid::Uuid)> = (0..threads_count)
        .map(|_| {
            (
                ConsultId::generate(SystemTime::now()),
                [DeviceId::generate(), DeviceId::generate()],
                uuid::Uuid::new_v4(),
            )
        })
        .collect();
    let started = Instant::now();
    let mut work = Vec::new();
    for round in 0..per_thread {
        for consult in &consults {
            work.push((round, *consult));
        }
    }
    let work = Arc::new(std::sync::Mutex::new(work.into_iter()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let work = work.clone();
        let threads = threads.clone();
        tasks.spawn(async move {
            loop {
                let next = work.lock().unwrap().next();
                let Some((_, (consult, devices, family))) = next else {
                    return;
                };
                post(&threads, consult, devices, family).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let written = started.elapsed();
    let file = RedbStore::file(dir.path());
    let payload = (threads_count * per_thread * PAYLOAD) as u64;
    let full = du(&file);
    println!(
        "{} messages of {PAYLOAD} bytes in {threads_count} threads: {:.1} MB on disk, \
         {:.2} bytes per payload byte, written in {:.1} s ({:.0} posts/s)",
        threads_count * per_thread,
        full as f64 / 1e6,
        full as f64 / payload as f64,
        written.as_secs_f64(),
        (threads_count * per_thread) as f64 / written.as_secs_f64()
    );

    // Retention removes the threads of half the consults.
    for (consult, _, _) in consults.iter().take(threads_count / 2) {
        let mut batch = Batch::new();
        threads.stage_erase(&mut batch, *consult).await.unwrap();
        threads.commit(batch).await.unwrap();
    }
    let half = du(&file);
    println!(
        "after removing half the threads: {:.1} MB on disk ({:.2} bytes per remaining payload \
         byte; redb reuses freed pages and does not shrink the file)",
        half as f64 / 1e6,
        half as f64 / (payload / 2) as f64
    );

    // A crash: the file as it is while the store is open.
    let crashed = tempfile::tempdir().unwrap();
    std::fs::copy(&file, RedbStore::file(crashed.path())).unwrap();
    drop((threads, store));
    let opened = Instant::now();
    let reopened = RedbStore::open(dir.path()).unwrap();
    let clean = opened.elapsed();
    drop(reopened);
    {
        let mut db = redb::Database::open(&file).unwrap();
        let stats = db.begin_write().unwrap().stats().unwrap();
        println!(
            "redb: {} pages allocated of {} bytes, {:.1} MB stored in leaves, {:.1} MB of \
             metadata, {:.1} MB fragmented",
            stats.allocated_pages(),
            stats.page_size(),
            stats.stored_bytes() as f64 / 1e6,
            stats.metadata_bytes() as f64 / 1e6,
            stats.fragmented_bytes() as f64 / 1e6
        );
        let compacting = Instant::now();
        db.compact().unwrap();
        drop(db);
        println!(
            "after an offline compaction ({}): {:.1} MB on disk, {:.2} bytes per remaining \
             payload byte",
            human(compacting.elapsed()),
            du(&file) as f64 / 1e6,
            du(&file) as f64 / (payload / 2) as f64
        );
    }
    let opened = Instant::now();
    let repaired = RedbStore::open(crashed.path()).unwrap();
    let after_crash = opened.elapsed();
    drop(repaired);
    println!(
        "open: {} after a clean stop, {} after a crash (redb repairs the file)",
        human(clean),
        human(after_crash)
    );
}

fn human(time: Duration) -> String {
    if time.as_secs() > 0 {
        format!("{:.1} s", time.as_secs_f64())
    } else {
        format!("{} ms", time.as_millis())
    }
}
