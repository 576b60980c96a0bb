//! B4: fan-out. One consult thread whose participants hold 10, 100 and
//! 608 devices, each with a live subscription (608 is as many as the
//! specialists of one consult hold: 20 participants, the owner included,
//! 32 active devices each; 1000 is beyond what the service allows one
//! thread); the contact person's
//! device posts messages (encrypted before timing) one after the other,
//! and every subscription must receive every message's entry, in order,
//! with no gap and no repeat. Against a bare tonic broadcast to as many
//! streams. Each round subscribes again, from the cursor each device's
//! subscription last delivered, as a client resumes. Delivered messages per second (posts × subscribers over the
//! time from the first post to the last delivery), and publish → deliver
//! latency.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use samenop_client::{Client, Expertise, Role, ViolenceType, mls::Messenger};
use samenop_proto::v1::{
    SubscribeRequest, subscribe_response::Event, thread_service_client::ThreadServiceClient,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{
    Bench,
    b0::PAYLOAD,
    echo::pb::{
        BroadcastRequest, SubscribeRequest as EchoSubscribe, echo_service_client::EchoServiceClient,
    },
    network::{accepted_consult, acting, post_sealed, register_device, thread_device},
    report::{Line, Target},
    run::{self, Round, Summary},
};

/// Subscribed devices of each stage.
const STAGES: [usize; 3] = [10, 100, 608];
/// Devices per specialist (the server's limit of active devices).
const PER_SPECIALIST: usize = 32;
/// Streams per connection (below the HTTP/2 server's default limit).
const STREAMS_PER_CONNECTION: usize = 100;
const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);

/// What each subscriber saw: (sequence, when) of each delivery; and
/// whether anything came out of order.
#[derive(Default)]
struct Seen {
    deliveries: Vec<(u64, Instant)>,
    faults: Vec<String>,
}

/// One subscription, as the numbers of what it delivers.
type Deliveries = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<u64, String>> + Send>>;

/// The publisher's side of a round: when each message was posted.
type Posted = Arc<Mutex<Vec<Instant>>>;

/// Runs N subscribers reading until each saw `count` deliveries numbered
/// after `after` (in the order the publisher made them), or `limit`.
/// `next` reads one delivery's number from subscriber i's stream.
async fn collect(
    mut streams: Vec<Deliveries>,
    after: u64,
    count: u64,
    limit: Duration,
) -> Result<Vec<Seen>, String> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut stream) in streams.drain(..).enumerate() {
        tasks.spawn(async move {
            let mut seen = Seen::default();
            let mut last = after;
            let deadline = tokio::time::Instant::now() + limit;
            while last < after + count {
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(Some(Ok(sequence))) if sequence <= after => {}
                    Ok(Some(Ok(sequence))) => {
                        if sequence != last + 1 {
                            seen.faults.push(format!(
                                "subscriber {i}: {sequence} after {last} (a {})",
                                if sequence <= last { "repeat" } else { "gap" }
                            ));
                        }
                        last = last.max(sequence);
                        seen.deliveries.push((sequence, Instant::now()));
                    }
                    Ok(Some(Err(err))) => return Err(format!("subscriber {i}: {err}")),
                    Ok(None) => return Err(format!("subscriber {i}: the stream ended")),
                    Err(_) => {
                        seen.faults.push(format!(
                            "subscriber {i}: {} of {count} deliveries within {limit:?}",
                            last - after
                        ));
                        break;
                    }
                }
            }
            Ok::<_, String>(seen)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.push(joined.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// The round's figures from what was posted and seen.
fn round(
    posted: &[Instant],
    seen: &[Seen],
    first_sequence: u64,
    server_cpu: f64,
    client_cpu: f64,
) -> Result<Round, String> {
    let faults: Vec<&String> = seen.iter().flat_map(|s| &s.faults).collect();
    if let Some(first) = faults.first() {
        return Err(format!(
            "{} delivery faults, the first: {first}",
            faults.len()
        ));
    }
    let start = posted.first().copied().ok_or("nothing posted")?;
    let mut end = start;
    let mut latencies = Vec::new();
    for s in seen {
        for (sequence, at) in &s.deliveries {
            let index = usize::try_from(sequence - first_sequence).unwrap_or(usize::MAX);
            let sent = posted
                .get(index)
                .copied()
                .ok_or("a delivery of a message not posted")?;
            latencies.push(
                u64::try_from(at.saturating_duration_since(sent).as_nanos()).unwrap_or(u64::MAX),
            );
            end = end.max(*at);
        }
    }
    latencies.sort_unstable();
    Ok(Round {
        calls: latencies.len() as u64,
        seconds: end.duration_since(start).as_secs_f64(),
        latencies,
        server_cpu,
        client_cpu,
        store: Default::default(),
        settle_seconds: 0.0,
    })
}

pub(crate) async fn run(bench: &mut Bench) -> Result<(), String> {
    let sanne = bench.network.person("Sanne")?;
    let bram = bench.network.person("Bram")?;
    let contact = bench.network.connect(&sanne).await?;
    let admin = bench.network.connect(&bram).await?;
    // Specialists registered for the benchmark hold every device of the
    // thread (no device of an earlier benchmark takes part): the first
    // accepts the request, the others are invited and accept.
    let first = admin
        .register_professional("Bench Specialist 0", &[Role::Specialist], &[ABUSE])
        .await
        .map_err(|e| format!("cannot register a specialist: {e}"))?;
    let specialist = bench
        .network
        .connect(&crate::network::Person {
            organisation: bram.organisation.clone(),
            id: first.id,
            name: first.display_name.clone(),
        })
        .await?;
    let consult = accepted_consult(&contact, &specialist).await?;
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let device = thread_device(&contact, &state.path().join("b4"), consult).await?;
    let mut holders: Vec<Client> = vec![specialist];
    let mut devices: Vec<(Uuid, Uuid)> = Vec::new();
    let text = "x".repeat(PAYLOAD);
    // The thread's last sequence: the device's own posts are all it holds.
    let mut latest = 0;
    // Where each device's subscription last got to: the next round resumes
    // there, as a client does, instead of reading its whole log again.
    let cursors: Cursors = Arc::default();
    for stage in STAGES {
        while devices.len() < stage {
            let holder_index = devices.len() / PER_SPECIALIST;
            if holder_index >= holders.len() {
                let professional = admin
                    .register_professional(
                        &format!("Bench Specialist {holder_index}"),
                        &[Role::Specialist],
                        &[ABUSE],
                    )
                    .await
                    .map_err(|e| format!("cannot register a specialist: {e}"))?;
                let holder = bench
                    .network
                    .connect(&crate::network::Person {
                        organisation: bram.organisation.clone(),
                        id: professional.id,
                        name: professional.display_name.clone(),
                    })
                    .await?;
                contact
                    .invite_specialist(consult, professional.id, ABUSE)
                    .await
                    .map_err(|e| format!("cannot invite: {e}"))?;
                holder
                    .accept_consult(consult)
                    .await
                    .map_err(|e| format!("cannot accept: {e}"))?;
                holders.push(holder);
            }
            let holder = &holders[holder_index];
            let professional = holder.professional().ok_or("no professional")?;
            let id = register_device(holder.channel(), professional).await?;
            devices.push((professional, id));
        }
        measure_stage(
            bench,
            consult,
            &device,
            &devices,
            &text,
            &mut latest,
            &cursors,
        )
        .await?;
    }
    drop(holders);
    Ok(())
}

/// The last cursor each device's subscription delivered.
type Cursors = Arc<Mutex<std::collections::HashMap<Uuid, String>>>;

async fn measure_stage(
    bench: &mut Bench,
    consult: Uuid,
    device: &Messenger,
    devices: &[(Uuid, Uuid)],
    text: &str,
    latest: &mut u64,
    cursors: &Cursors,
) -> Result<(), String> {
    let net = &bench.network;
    let subscribers = devices.len();
    let connections = subscribers.div_ceil(STREAMS_PER_CONNECTION);
    let mut ours: Vec<Channel> = Vec::new();
    let mut bare: Vec<Channel> = Vec::new();
    let sanne = net.person("Sanne")?;
    // The subscribers' organisation: the specialists' own.
    let eva = net.person("Eva")?;
    for n in 0..connections {
        ours.push(net.connect_to(n, &eva).await?.channel());
        bare.push(net.connect_echo().await?.channel());
    }
    let publisher = net.connect(&sanne).await?.channel();
    let echo_publisher = net.connect_echo().await?.channel();
    // Messages per round: about 100 000 deliveries, at least 20 posts.
    let count = (100_000 / subscribers).clamp(20, 500) as u64;
    let limit = Duration::from_secs(120);
    let device_id = device.device();
    let mut measured: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    for r in 0..bench.options.rounds() {
        let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let round = if side == 0 {
                // The bare broadcast.
                let mut streams: Vec<Deliveries> = Vec::new();
                for i in 0..subscribers {
                    let stream = EchoServiceClient::new(bare[i % connections].clone())
                        .subscribe(EchoSubscribe {})
                        .await
                        .map_err(|s| format!("echo subscribe: {s}"))?
                        .into_inner()
                        .map(|item| item.map(|m| m.sequence).map_err(|s| s.to_string()));
                    streams.push(Box::pin(stream));
                }
                let after = EchoServiceClient::new(echo_publisher.clone())
                    .broadcast(BroadcastRequest {
                        payload: Vec::new(),
                    })
                    .await
                    .map_err(|s| s.to_string())?
                    .into_inner()
                    .sequence;
                let posted: Posted = Arc::default();
                let cpu = (
                    crate::sys::cpu_seconds(Some(net.echo.pid)),
                    crate::sys::cpu_seconds(None),
                );
                let collecting = tokio::spawn(collect(streams, after, count, limit));
                for _ in 0..count {
                    posted.lock().map_err(|_| "lock")?.push(Instant::now());
                    EchoServiceClient::new(echo_publisher.clone())
                        .broadcast(BroadcastRequest {
                            payload: vec![0x5a; PAYLOAD],
                        })
                        .await
                        .map_err(|s| s.to_string())?;
                }
                let seen = collecting.await.map_err(|e| e.to_string())??;
                let cpu = (
                    crate::sys::cpu_seconds(Some(net.echo.pid)) - cpu.0,
                    crate::sys::cpu_seconds(None) - cpu.1,
                );
                let posted = posted.lock().map_err(|_| "lock")?.clone();
                round(&posted, &seen, after + 1, cpu.0, cpu.1)?
            } else {
                let texts = vec![text; usize::try_from(count).unwrap_or(0)];
                let sealed = device
                    .seal_unsent(consult, &texts)
                    .await
                    .map_err(|e| format!("cannot encrypt: {e}"))?;
                let mut streams: Vec<Deliveries> = Vec::new();
                for (i, (professional, id)) in devices.iter().enumerate() {
                    let cursor = cursors
                        .lock()
                        .map_err(|_| "lock")?
                        .get(id)
                        .cloned()
                        .unwrap_or_default();
                    let stream = ThreadServiceClient::new(ours[i % connections].clone())
                        .subscribe(acting(
                            *professional,
                            SubscribeRequest {
                                device_id: id.to_string(),
                                cursor,
                            },
                        ))
                        .await
                        .map_err(|s| format!("subscribe: {s}"))?
                        .into_inner();
                    let consult_id = consult.to_string();
                    let (cursors, id) = (cursors.clone(), *id);
                    let stream = stream.filter_map(move |item| match item {
                        Ok(event) => match event.event {
                            Some(Event::ThreadEntry(entry)) if entry.consult_id == consult_id => {
                                if let Ok(mut cursors) = cursors.lock() {
                                    cursors.insert(id, event.cursor);
                                }
                                Some(Ok(entry.sequence))
                            }
                            _ => None,
                        },
                        Err(status) => Some(Err(status.to_string())),
                    });
                    streams.push(Box::pin(stream));
                }
                let after = *latest;
                *latest += count;
                let posted: Posted = Arc::default();
                let cpu = (
                    crate::network::cpu_of(net.server.pid),
                    crate::sys::cpu_seconds(None),
                );
                let collecting = tokio::spawn(collect(streams, after, count, limit));
                for message in sealed {
                    posted.lock().map_err(|_| "lock")?.push(Instant::now());
                    post_sealed(publisher.clone(), sanne.id, consult, device_id, message).await?;
                }
                let seen = collecting.await.map_err(|e| e.to_string())??;
                let settle_seconds = run::settle(net.server.pid).await;
                let cpu = (
                    crate::network::cpu_of(net.server.pid) - cpu.0,
                    crate::sys::cpu_seconds(None) - cpu.1,
                );
                let posted = posted.lock().map_err(|_| "lock")?.clone();
                Round {
                    settle_seconds,
                    ..round(&posted, &seen, after + 1, cpu.0, cpu.1)?
                }
            };
            measured[side].push(round);
        }
    }
    let bare = Summary::of(&measured[0]);
    let ours = Summary::of(&measured[1]);
    bench.report.add(
        Line::new(
            format!("B4.fanout.{subscribers}"),
            run::paired_ratio(&measured[1], &measured[0]),
            Target::AtLeast(0.5),
            "messages delivered per second to every subscription, samenop / bare broadcast; no gap or repeat",
        )
        .sides(Some(bare), Some(ours))
        .figure("posts_per_round", count as f64),
    );
    Ok(())
}
