//! B5: catch-up. A specialist's devices come back to a thread that grew by
//! 10,000 messages while they were away: the server's delivery of the
//! backlog to a subscription from the start of its log (messages per
//! second, and the time to the first), against a raw range scan of as many
//! entries of the same size in the same store (redb, durable, in this
//! process); and the client's catch-up of the same backlog (fetch, decrypt,
//! verify, keep; `Messenger::catch_up`), against MLS decryption alone in a
//! group of the same size. Both comparisons alternate their sides round by
//! round like every other; the client's side has a device of its own for
//! each round, since a catch-up consumes what it reads.

use std::time::Instant;

use samenop_client::mls::Messenger;
use samenop_proto::v1::{
    SubscribeRequest, subscribe_response::Event, thread_service_client::ThreadServiceClient,
};
use samenop_server::store::{Batch, Keyspace, Store, redb::RedbStore};
use tokio_stream::StreamExt;

use crate::{
    Bench,
    b0::PAYLOAD,
    network::{accepted_consult, acting, post_sealed, register_device},
    report::{Line, Target},
    run::{self, Summary},
};

/// Messages in the backlog.
const BACKLOG: usize = 10_000;

/// `count` entries of `size` bytes in a fresh durable store, for a raw
/// range scan to read again in every round.
struct RawEntries {
    store: RedbStore,
    count: usize,
}

/// The prefix the raw entries are stored under.
const RAW_PREFIX: [u8; 16] = [7; 16];

impl RawEntries {
    async fn fill(dir: &std::path::Path, count: usize, size: usize) -> Result<Self, String> {
        let store = RedbStore::open(dir).map_err(|e| e.to_string())?;
        for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
            let mut batch = Batch::new();
            for n in chunk {
                let key = [RAW_PREFIX.as_slice(), &(*n as u64).to_be_bytes()].concat();
                batch.put(Keyspace::ThreadEntries, key, vec![0x5a; size]);
            }
            store.commit(batch).await.map_err(|e| e.to_string())?;
        }
        Ok(RawEntries { store, count })
    }

    /// Every entry, in pages of 256: how many were read.
    async fn scan(&self) -> Result<(u64, Vec<u64>), String> {
        let mut after: Option<Vec<u8>> = None;
        let mut seen = 0;
        loop {
            let page = self
                .store
                .scan(Keyspace::ThreadEntries, &RAW_PREFIX, after.as_deref(), 256)
                .await
                .map_err(|e| e.to_string())?;
            seen += page.len();
            match page.last() {
                Some((key, _)) if page.len() == 256 => after = Some(key.clone()),
                _ => break,
            }
        }
        if seen != self.count {
            return Err(format!(
                "the raw scan read {seen} of {} entries",
                self.count
            ));
        }
        Ok((seen as u64, Vec::new()))
    }
}

pub(crate) async fn run(bench: &mut Bench) -> Result<(), String> {
    let net = &bench.network;
    let rounds = bench.options.rounds();
    let sanne = net.person("Sanne")?;
    let bram = net.person("Bram")?;
    let contact = net.connect(&sanne).await?;
    let admin = net.connect(&bram).await?;
    let professional = admin
        .register_professional(
            "Catch-up Specialist",
            &[samenop_client::Role::Specialist],
            &[samenop_client::Expertise::Violence(
                samenop_client::ViolenceType::ChildAbuse,
            )],
        )
        .await
        .map_err(|e| format!("cannot register a specialist: {e}"))?;
    let specialist = net
        .connect(&crate::network::Person {
            organisation: bram.organisation.clone(),
            id: professional.id,
            name: professional.display_name.clone(),
        })
        .await?;
    let consult = accepted_consult(&contact, &specialist).await?;
    let state = tempfile::tempdir_in(&net.data_dir).map_err(|e| e.to_string())?;
    let writer = Messenger::open(&contact, &state.path().join("sanne"), "bench")
        .await
        .map_err(|e| format!("cannot open a device: {e}"))?;
    // One device per round: a catch-up consumes its backlog (MLS keeps no
    // key it has used), so each round's device comes back to it afresh.
    let mut readers = Vec::with_capacity(rounds);
    for n in 0..rounds {
        readers.push(
            Messenger::open(
                &specialist,
                &state.path().join(format!("reader-{n}")),
                "bench",
            )
            .await
            .map_err(|e| format!("cannot open a device: {e}"))?,
        );
    }
    // A device that only subscribes, for the server's side.
    let raw_device = register_device(specialist.channel(), professional.id).await?;
    writer
        .create_thread(consult)
        .await
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    writer
        .sync_members(consult)
        .await
        .map_err(|e| format!("cannot add the devices: {e}"))?;
    for reader in &readers {
        reader
            .catch_up(consult)
            .await
            .map_err(|e| format!("cannot join: {e}"))?;
    }
    // The backlog, while they are all away.
    let text = "x".repeat(PAYLOAD);
    let sealed = writer
        .seal_unsent(consult, &vec![text.as_str(); BACKLOG])
        .await
        .map_err(|e| format!("cannot encrypt: {e}"))?;
    let sealed = std::sync::Arc::new(sealed);
    let channel = contact.channel();
    let writer_id = writer.device();
    let post = run::call(move |_, n| {
        let message = sealed[usize::try_from(n).unwrap_or(0)].clone();
        post_sealed(channel.clone(), sanne.id, consult, writer_id, message)
    });
    // Posted in order: one after the other keeps the thread's order the
    // ciphertexts' generation order (a receiver takes them in any order,
    // but its window of skipped keys is bounded).
    run::fixed_work(&post, 1, BACKLOG as u64).await?;

    // The server's side: a subscription from the start of the log (read
    // again in every round: the log is trimmed only past a cursor given),
    // alternated with a raw range scan of as many entries of the same size.
    let scan_dir = tempfile::tempdir_in(&net.data_dir).map_err(|e| e.to_string())?;
    let raw = RawEntries::fill(scan_dir.path(), BACKLOG, sealed_size(PAYLOAD)).await?;
    let server = net.server.pid;
    let firsts = std::sync::Mutex::new(Vec::new());
    let channel = specialist.channel();
    let measured = run::alternate(rounds, &[Side::Scan, Side::Subscribe], |side| {
        let side = *side;
        let (raw, firsts, channel) = (&raw, &firsts, channel.clone());
        async move {
            match side {
                Side::Scan => run::measure(None, raw.scan()).await,
                Side::Subscribe => {
                    run::measure(Some(server), async {
                        let (count, first) =
                            subscribe_backlog(channel, professional.id, raw_device, consult)
                                .await?;
                        firsts
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(first.as_secs_f64() * 1000.0);
                        Ok((count, Vec::new()))
                    })
                    .await
                }
            }
        }
    })
    .await?;
    let first_ms = run::median(
        &firsts
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let (scan, delivered) = (Summary::of(&measured[0]), Summary::of(&measured[1]));
    bench.report.add(
        Line::new(
            format!("B5.catch_up.subscribe.{BACKLOG}"),
            run::paired_ratio(&measured[1], &measured[0]),
            Target::None,
            "backlog entries delivered per second on one subscription / raw range scan of as many entries, same round",
        )
        .sides(Some(scan), Some(delivered))
        .figure("delivered_per_s", delivered.rate)
        .figure("raw_scan_per_s", scan.rate)
        .figure("first_ms", first_ms),
    );

    // The client's side: fetch, decrypt, verify and keep every message,
    // alternated with MLS decryption alone in a group of the same size.
    let members = readers.len() + 1;
    let mut devices = readers.iter();
    let measured = run::alternate(rounds, &[Device::Decrypt, Device::CatchUp], |side| {
        let reader = match side {
            Device::Decrypt => None,
            Device::CatchUp => devices.next(),
        };
        let side = *side;
        async move {
            match (side, reader) {
                (Device::Decrypt, _) => {
                    let decrypt_us = crate::b8::decrypt_once_us(members)?;
                    // As many messages as it decrypted, in the time they
                    // took (its group's setup not counted); no CPU figure.
                    Ok(run::Round {
                        calls: crate::b8::MESSAGES as u64,
                        seconds: decrypt_us * crate::b8::MESSAGES as f64 / 1e6,
                        ..run::Round::default()
                    })
                }
                (Device::CatchUp, None) => Err("more rounds than devices".to_owned()),
                (Device::CatchUp, Some(reader)) => {
                    run::measure(None, async {
                        let read = reader
                            .catch_up(consult)
                            .await
                            .map_err(|e| format!("cannot catch up: {e}"))?;
                        if read.len() != BACKLOG {
                            return Err(format!(
                                "the device read {} of {BACKLOG} messages",
                                read.len()
                            ));
                        }
                        Ok((BACKLOG as u64, Vec::new()))
                    })
                    .await
                }
            }
        }
    })
    .await?;
    let (decrypt, device) = (Summary::of(&measured[0]), Summary::of(&measured[1]));
    bench.report.add(
        Line::new(
            format!("B5.catch_up.device.{BACKLOG}"),
            run::paired_ratio(&measured[1], &measured[0]),
            Target::None,
            "messages a device catches up per second (fetch, decrypt, verify, keep durably) / MLS decryptions per second, same round",
        )
        .sides(Some(decrypt), Some(device))
        .figure("messages_per_s", device.rate)
        .figure("mls_decrypt_us", 1e6 / decrypt.rate.max(f64::MIN_POSITIVE)),
    );
    Ok(())
}

/// The two sides of a server-side round.
#[derive(Clone, Copy)]
enum Side {
    Scan,
    Subscribe,
}

/// The two sides of a device-side round.
#[derive(Clone, Copy)]
enum Device {
    Decrypt,
    CatchUp,
}

/// Subscribes `device` from the start of its log and reads until the
/// backlog's application messages in `consult` have all come: how many,
/// and the time to the first.
async fn subscribe_backlog(
    channel: tonic::transport::Channel,
    professional: uuid::Uuid,
    device: uuid::Uuid,
    consult: uuid::Uuid,
) -> Result<(u64, std::time::Duration), String> {
    let started = Instant::now();
    let mut stream = ThreadServiceClient::new(channel)
        .subscribe(acting(
            professional,
            SubscribeRequest {
                device_id: device.to_string(),
                cursor: String::new(),
            },
        ))
        .await
        .map_err(|s| format!("subscribe: {s}"))?
        .into_inner();
    let mut first = None;
    let mut received = 0;
    let consult_id = consult.to_string();
    while received < BACKLOG {
        match stream.next().await {
            Some(Ok(event)) => {
                if let Some(Event::ThreadEntry(entry)) = event.event
                    && entry.consult_id == consult_id
                    && entry.kind == samenop_proto::v1::ThreadEntryKind::Application as i32
                {
                    first.get_or_insert_with(|| started.elapsed());
                    received += 1;
                }
            }
            Some(Err(status)) => return Err(format!("the backlog's stream failed: {status}")),
            None => return Err("the backlog's stream ended".into()),
        }
    }
    Ok((received as u64, first.unwrap_or_default()))
}

/// About the size of a thread entry holding an MLS message of `payload`
/// bytes.
fn sealed_size(payload: usize) -> usize {
    payload + 250
}
