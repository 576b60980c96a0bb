//! B5: catch-up. A specialist's devices come back to a thread that grew by
//! 10,000 messages while they were away: the server's delivery of the
//! backlog to a subscription from the start of its log (messages per
//! second, and the time to the first), against a raw range scan of as many
//! entries of the same size in the same store (redb, durable, in this
//! process); and the client's catch-up of the same backlog (fetch, decrypt,
//! verify, keep; `Messenger::catch_up`), against MLS decryption alone.

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
    run,
};

/// Messages in the backlog.
const BACKLOG: usize = 10_000;

/// Messages per second of a raw range scan of `count` entries of `size`
/// bytes, in pages of 256, in a fresh durable store in `dir`.
async fn raw_scan_rate(dir: &std::path::Path, count: usize, size: usize) -> Result<f64, String> {
    let store = RedbStore::open(dir).map_err(|e| e.to_string())?;
    let prefix = [7u8; 16];
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let mut batch = Batch::new();
        for n in chunk {
            let key = [prefix.as_slice(), &(*n as u64).to_be_bytes()].concat();
            batch.put(Keyspace::ThreadEntries, key, vec![0x5a; size]);
        }
        store.commit(batch).await.map_err(|e| e.to_string())?;
    }
    let started = Instant::now();
    let mut after: Option<Vec<u8>> = None;
    let mut seen = 0;
    loop {
        let page = store
            .scan(Keyspace::ThreadEntries, &prefix, after.as_deref(), 256)
            .await
            .map_err(|e| e.to_string())?;
        seen += page.len();
        match page.last() {
            Some((key, _)) if page.len() == 256 => after = Some(key.clone()),
            _ => break,
        }
    }
    if seen != count {
        return Err(format!("the raw scan read {seen} of {count} entries"));
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

pub(crate) async fn run(bench: &mut Bench) -> Result<(), String> {
    let net = &bench.network;
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
    let reader = Messenger::open(&specialist, &state.path().join("reader"), "bench")
        .await
        .map_err(|e| format!("cannot open a device: {e}"))?;
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
    reader
        .catch_up(consult)
        .await
        .map_err(|e| format!("cannot join: {e}"))?;
    // The backlog, while both are away.
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

    // The server's side: a subscription from the start of the log.
    let started = Instant::now();
    let mut stream = ThreadServiceClient::new(specialist.channel())
        .subscribe(acting(
            professional.id,
            SubscribeRequest {
                device_id: raw_device.to_string(),
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
    let delivered = BACKLOG as f64 / started.elapsed().as_secs_f64();
    drop(stream);
    let scan_dir = tempfile::tempdir_in(&net.data_dir).map_err(|e| e.to_string())?;
    let scan = raw_scan_rate(scan_dir.path(), BACKLOG, sealed_size(PAYLOAD)).await?;
    bench.report.add(
        Line::new(
            format!("B5.catch_up.subscribe.{BACKLOG}"),
            delivered / scan,
            Target::None,
            "backlog entries delivered per second on one subscription / raw range scan of as many entries",
        )
        .figure("delivered_per_s", delivered)
        .figure("raw_scan_per_s", scan)
        .figure("first_ms", first.map_or(0.0, |d| d.as_secs_f64() * 1000.0)),
    );

    // The client's side: fetch, decrypt, verify and keep every message.
    let started = Instant::now();
    let read = reader
        .catch_up(consult)
        .await
        .map_err(|e| format!("cannot catch up: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if read.len() != BACKLOG {
        return Err(format!(
            "the device read {} of {BACKLOG} messages",
            read.len()
        ));
    }
    let decrypt_us = crate::b8::decrypt_cost_us(2)?;
    let rate = BACKLOG as f64 / seconds;
    bench.report.add(
        Line::new(
            format!("B5.catch_up.device.{BACKLOG}"),
            rate / (1e6 / decrypt_us),
            Target::None,
            "messages a device catches up per second (fetch, decrypt, verify, keep durably) / MLS decryptions per second",
        )
        .figure("messages_per_s", rate)
        .figure("mls_decrypt_us", decrypt_us),
    );
    Ok(())
}

/// About the size of a thread entry holding an MLS message of `payload`
/// bytes.
fn sealed_size(payload: usize) -> usize {
    payload + 250
}
