//! B3: the store on disk. A million messages in 10,000 threads, written
//! through the server's own store layer as the server stores a post (the
//! thread entry with a ciphertext of a 256-byte payload, the thread head,
//! the answer kept under the post's request id, a reference in the event
//! log of each of the consult's two devices, and the call's audit event
//! with its index entries), one batch per post, 64 posts in flight: the
//! append rate against a raw loop of appends and `fdatasync`s to one file
//! with the same batching (the group commit's mean group, as the store's
//! own metrics count it); the range-read rate; bytes on disk per payload
//! byte, full and after retention removed half the threads; the time to
//! open the store after a clean stop and after a crash; an offline
//! compaction.

use std::{
    io::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use samenop_proto::v1;
use samenop_server::{
    domain::{DeviceId, consult::ConsultId},
    store::{Batch, Keyspace, Store, StoreError, redb::RedbStore, threads::Threads},
};

use crate::{
    Bench,
    b0::PAYLOAD,
    report::{Line, Target},
};

/// What MLS adds to a 256-byte payload in a PrivateMessage (group id,
/// epoch, content type, encrypted sender data, signature, AEAD tag and
/// framing; 160 to 190 bytes with OpenMLS 0.9).
const MLS_OVERHEAD: usize = 180;
/// Posts in flight.
const IN_FLIGHT: usize = 64;
/// Messages per thread.
const PER_THREAD: usize = 100;

/// Bytes `path` takes on disk: its allocated blocks. redb grows its file
/// with `set_len` (doubling it while it is under 4 GiB), and the part not
/// written yet is a hole that takes no space.
fn size(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// The length `path` says it has, holes included.
fn apparent_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Bytes of the store in `dir` on disk: the redb file and the journal's
/// segments (their space written ahead included).
fn store_size(dir: &std::path::Path) -> u64 {
    let journal = std::fs::read_dir(RedbStore::journal_dir(dir))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| size(&entry.path()))
                .sum()
        })
        .unwrap_or(0);
    size(&RedbStore::file(dir)) + journal
}

/// Copies the store in `from` to `to` as it is on disk now (the redb file
/// and the journal): what a crash at this moment leaves.
fn crash_image(from: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    std::fs::copy(RedbStore::file(from), RedbStore::file(to)).map_err(|e| e.to_string())?;
    let journal = RedbStore::journal_dir(to);
    std::fs::create_dir(&journal).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(RedbStore::journal_dir(from)).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        std::fs::copy(entry.path(), journal.join(entry.file_name())).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn audit_event(consult: ConsultId, family: uuid::Uuid, device: DeviceId) -> v1::AuditEvent {
    use v1::{AuditObject, AuditObjectType as Object};
    let object = |object_type: Object, object_id: String| AuditObject {
        object_type: object_type as i32,
        object_id,
    };
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
            object(Object::Consult, consult.to_string()),
            object(Object::Family, family.to_string()),
            object(Object::Device, device.to_string()),
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

/// Bytes that do not compress, as ciphertext does not.
fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes
}

/// One post, stored as the server stores it; tried again when another post
/// to the same thread moved its head first.
async fn post(
    threads: &Threads,
    consult: ConsultId,
    devices: [DeviceId; 2],
    family: uuid::Uuid,
) -> Result<(), String> {
    let ciphertext = random(PAYLOAD + MLS_OVERHEAD);
    loop {
        let read = threads.head(consult).await.map_err(|e| e.to_string())?;
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
        let reference = prost::Message::encode_to_vec(&reference);
        for device in devices {
            threads.stage_events(&mut batch, device, vec![reference.clone()]);
        }
        batch.audit(audit_event(consult, family, devices[0]));
        match threads.commit(batch).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict) => {}
            Err(other) => return Err(other.to_string()),
        }
    }
}

/// The store's own count of write transactions and of the batches they
/// carried, from its metrics.
fn commits(store: &RedbStore) -> (f64, f64) {
    let mut registry = prometheus_client::registry::Registry::default();
    store.register_metrics(&mut registry);
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("samenop_store_commit_batches_count"),
        value("samenop_store_commit_batches_sum"),
    )
}

/// Posts per second of a raw append-only file in `dir`: `commits` times,
/// `group` posts' worth of bytes (`bytes` each) written and `fdatasync`ed.
fn raw_appends(
    dir: &std::path::Path,
    commits: usize,
    group: usize,
    bytes: usize,
) -> Result<f64, String> {
    let path = dir.join("raw-appends");
    let mut file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let chunk = random(group * bytes);
    let started = Instant::now();
    for _ in 0..commits {
        file.write_all(&chunk).map_err(|e| e.to_string())?;
        file.sync_data().map_err(|e| e.to_string())?;
    }
    let rate = (commits * group) as f64 / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).map_err(|e| e.to_string())?;
    Ok(rate)
}

pub(crate) async fn run(bench: &mut Bench) -> Result<(), String> {
    let messages = bench.options.messages.max(PER_THREAD);
    let thread_count = messages / PER_THREAD;
    let messages = thread_count * PER_THREAD;
    // On the disk the server uses.
    let root = bench
        .network
        .data_dir
        .parent()
        .ok_or("no run directory")?
        .to_owned();
    let dir = tempfile::tempdir_in(&root).map_err(|e| e.to_string())?;
    let store = RedbStore::open(dir.path()).map_err(|e| e.to_string())?;
    let threads = Threads::new(Arc::new(store.clone()) as Arc<dyn Store>);
    let consults: Vec<(ConsultId, [DeviceId; 2], uuid::Uuid)> = (0..thread_count)
        .map(|_| {
            (
                ConsultId::generate(SystemTime::now()),
                [DeviceId::generate(), DeviceId::generate()],
                uuid::Uuid::new_v4(),
            )
        })
        .collect();
    // Round by round over the threads, as conversations grow side by side.
    let work: Vec<usize> = (0..messages).collect();
    let work = Arc::new(Mutex::new(work.into_iter()));
    let consults = Arc::new(consults);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (work, threads, consults) = (work.clone(), threads.clone(), consults.clone());
        tasks.spawn(async move {
            loop {
                let next = work.lock().map_err(|_| "lock")?.next();
                let Some(n) = next else {
                    return Ok::<_, String>(());
                };
                let (consult, devices, family) = consults[n % consults.len()];
                post(&threads, consult, devices, family).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    let written = started.elapsed().as_secs_f64();
    let rate = messages as f64 / written;
    let (transactions, batches) = commits(&store);
    let group = if transactions > 0.0 {
        (batches / transactions).round().max(1.0)
    } else {
        1.0
    };
    let raw = raw_appends(
        dir.path(),
        usize::try_from((transactions as u64).min(20_000))
            .unwrap_or(1)
            .max(1),
        group as usize,
        PAYLOAD + MLS_OVERHEAD,
    )?;
    bench.report.add(
        Line::new(
            format!("B3.append.{messages}"),
            rate / raw,
            Target::None,
            "posts stored per second (64 in flight, group commit) / a raw append-and-fdatasync loop with the same group size",
        )
        .figure("posts_per_s", rate)
        .figure("raw_per_s", raw)
        .figure("batches_per_commit", group),
    );

    // Range reads: every thread, from its start, a page at a time.
    let started = Instant::now();
    let mut read = 0;
    for (consult, _, _) in consults.iter() {
        read += threads
            .entries(*consult, 1, PER_THREAD)
            .await
            .map_err(|e| e.to_string())?
            .len();
    }
    if read != messages {
        return Err(format!("read {read} of {messages} messages back"));
    }
    let read_rate = read as f64 / started.elapsed().as_secs_f64();

    let file = RedbStore::file(dir.path());
    let payload = (messages * PAYLOAD) as f64;
    let full = store_size(dir.path()) as f64;
    bench.report.add(
        Line::new(
            format!("B3.bytes_per_payload_byte.{messages}"),
            full / payload,
            Target::AtMost(1.5),
            "bytes of the store (redb file and journal) per payload byte (ciphertext, heads, device logs, audit)",
        )
        .figure("file_mb", full / 1e6)
        .figure("redb_file_apparent_mb", apparent_size(&file) as f64 / 1e6)
        // The ciphertext alone is 1.7 bytes per payload byte: what the
        // store adds beyond it shows here.
        .figure(
            "bytes_per_ciphertext_byte",
            full / (messages * (PAYLOAD + MLS_OVERHEAD)) as f64,
        )
        .figure("range_read_per_s", read_rate),
    );
    // Retention removes half the threads.
    for (consult, _, _) in consults.iter().take(thread_count / 2) {
        let mut batch = Batch::new();
        threads
            .stage_erase(&mut batch, *consult)
            .await
            .map_err(|e| e.to_string())?;
        threads.commit(batch).await.map_err(|e| e.to_string())?;
    }
    let half = store_size(dir.path()) as f64;
    bench.report.add(
        Line::new(
            "B3.bytes_per_payload_byte.after_half_removed",
            half / (payload / 2.0),
            Target::AtMost(1.5),
            "the same once retention removed half the threads (redb reuses freed pages; the file does not shrink)",
        )
        .figure("file_mb", half / 1e6)
        .figure(
            "bytes_per_ciphertext_byte",
            half / (messages / 2 * (PAYLOAD + MLS_OVERHEAD)) as f64,
        ),
    );
    // A crash: the files as they are while the store is open.
    let crashed = tempfile::tempdir_in(&root).map_err(|e| e.to_string())?;
    crash_image(dir.path(), crashed.path())?;
    drop(threads);
    drop(store);
    // Open: until the store serves. Closed: until it has written all it
    // holds into redb (after a crash, what the journal replayed, which a
    // checkpoint takes in the background once the store serves).
    let open_and_close = |dir: &std::path::Path| -> Result<_, String> {
        let opened = Instant::now();
        let store = RedbStore::open(dir).map_err(|e| e.to_string())?;
        let open = opened.elapsed();
        let closing = Instant::now();
        drop(store);
        Ok((open, closing.elapsed()))
    };
    let (clean, clean_close) = open_and_close(dir.path())?;
    let (after_crash, after_crash_close) = open_and_close(crashed.path())?;
    drop(crashed);
    let compacting = Instant::now();
    let mut db = redb::Database::open(&file).map_err(|e| e.to_string())?;
    db.compact().map_err(|e| e.to_string())?;
    let tx = db.begin_write().map_err(|e| e.to_string())?;
    let stats = tx.stats().map_err(|e| e.to_string())?;
    tx.abort().map_err(|e| e.to_string())?;
    let compaction = compacting.elapsed();
    // Read after the compaction is timed.
    let by_keyspace = keyspace_bytes(&db)?;
    drop(db);
    let compacted = store_size(dir.path()) as f64;
    bench.report.add(
        Line::new(
            "B3.open_after_crash",
            after_crash.as_secs_f64() / clean.as_secs_f64().max(1e-6),
            Target::None,
            "time until the store serves after a crash (the journal replayed) / after a clean stop",
        )
        .figure("clean_ms", ms(clean))
        .figure("after_crash_ms", ms(after_crash))
        .figure("clean_close_ms", ms(clean_close))
        .figure("after_crash_close_ms", ms(after_crash_close))
        .figure("offline_compaction_ms", ms(compaction))
        // Where the bytes of the compacted file are (the half kept): the
        // keys and values themselves, the tree's pages around them, and
        // what is free.
        .figure("stored_mb", stats.stored_bytes() as f64 / 1e6)
        .figure("metadata_mb", stats.metadata_bytes() as f64 / 1e6)
        .figure("fragmented_mb", stats.fragmented_bytes() as f64 / 1e6)
        .figure(
            "allocated_mb",
            (stats.allocated_pages() * stats.page_size() as u64) as f64 / 1e6,
        )
        .figure(
            "compacted_bytes_per_remaining_payload_byte",
            compacted / (payload / 2.0),
        ),
    );
    // What the keys and values are, by keyspace, per message stored (the
    // half kept) or per post made: the audit trail keeps every post's, and
    // a device's log keeps its references until the device reads past them.
    let mut line = Line::new(
        "B3.stored_bytes_per_message",
        by_keyspace.iter().map(|(_, bytes)| *bytes).sum::<u64>() as f64 / (messages / 2) as f64,
        Target::None,
        "keys and values the store holds per message kept, once retention removed half the threads; by keyspace, per message kept (thread) or per post made (audit, device logs)",
    );
    for (space, bytes) in &by_keyspace {
        let per = if space.starts_with("audit") || space == "events" {
            messages
        } else {
            messages / 2
        };
        line = line.figure(space, *bytes as f64 / per as f64);
    }
    bench.report.add(line);
    Ok(())
}

/// Bytes of keys and values in the store's table, by keyspace (those over
/// 1 MB), read from the closed store's redb file.
fn keyspace_bytes(db: &redb::Database) -> Result<Vec<(String, u64)>, String> {
    use redb::{ReadableDatabase as _, ReadableTable as _};
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let table = tx
        .open_table(samenop_server::store::redb::TABLE)
        .map_err(|e| e.to_string())?;
    let mut bytes = [0u64; 256];
    for row in table.iter().map_err(|e| e.to_string())? {
        let (key, value) = row.map_err(|e| e.to_string())?;
        let (key, value) = (key.value(), value.value());
        if let Some(tag) = key.first() {
            bytes[usize::from(*tag)] += (key.len() + value.len()) as u64;
        }
    }
    Ok(Keyspace::ALL
        .iter()
        .map(|space| (space.name().to_owned(), bytes[usize::from(space.tag())]))
        .filter(|(_, bytes)| *bytes > 1_000_000)
        .collect())
}

fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1000.0
}
