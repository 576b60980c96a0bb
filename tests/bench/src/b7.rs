//! B7: idle subscriptions. 10,000 devices (of 313 specialists registered
//! for it) each with an open Subscribe stream and nothing to deliver:
//! what one more open stream costs the server in memory (its resident set
//! with the streams open, less with only their connections), against the
//! same number of bare broadcast streams on the echo server; then a
//! message to a consult of one of them must reach every one of that
//! specialist's devices at once.

use std::time::Duration;

use samenop_client::{Expertise, Role, ViolenceType};
use samenop_proto::v1::{
    SubscribeRequest, subscribe_response::Event, thread_service_client::ThreadServiceClient,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{
    Bench,
    b0::PAYLOAD,
    echo::pb::{SubscribeRequest as EchoSubscribe, echo_service_client::EchoServiceClient},
    network::{accepted_consult, acting, post_sealed, register_device, thread_device},
    report::{Line, Target},
    sys,
};

/// Open streams.
const STREAMS: usize = 10_000;
/// Devices per specialist (the server's limit of active devices).
const PER_SPECIALIST: usize = 32;
/// Streams per connection.
const STREAMS_PER_CONNECTION: usize = 100;
/// The target: at most this many bytes per open stream.
const TARGET_BYTES: f64 = 16.0 * 1024.0;
const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);

/// The resident memory of `pid` once it settles (two readings a second
/// apart within 1%).
async fn settled_rss(pid: u32) -> u64 {
    let mut last = sys::resident_bytes(pid);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = sys::resident_bytes(pid);
        if now.abs_diff(last) * 100 <= last {
            return now;
        }
        last = now;
    }
    last
}

pub(crate) async fn run(bench: &mut Bench) -> Result<(), String> {
    let net = &bench.network;
    let bram = net.person("Bram")?;
    let sanne = net.person("Sanne")?;
    let admin = net.connect(&bram).await?;
    let connections = STREAMS.div_ceil(STREAMS_PER_CONNECTION);
    // The specialists, then their devices: each specialist's one after
    // the other (a professional's device set is one record, changed by
    // compare-and-set), many specialists at once.
    let mut professionals = Vec::new();
    for n in 0..STREAMS.div_ceil(PER_SPECIALIST) {
        professionals.push(
            admin
                .register_professional(
                    &format!("Idle Specialist {n}"),
                    &[Role::Specialist],
                    &[ABUSE],
                )
                .await
                .map_err(|e| format!("cannot register a specialist: {e}"))?
                .id,
        );
    }
    let channel = admin.channel();
    let mut registering = tokio::task::JoinSet::new();
    for (n, professional) in professionals.iter().copied().enumerate() {
        let channel = channel.clone();
        let count = PER_SPECIALIST.min(STREAMS - n * PER_SPECIALIST);
        registering.spawn(async move {
            let mut devices = Vec::with_capacity(count);
            for _ in 0..count {
                devices.push((
                    professional,
                    register_device(channel.clone(), professional).await?,
                ));
            }
            Ok::<_, String>(devices)
        });
    }
    let mut devices: Vec<(Uuid, Uuid)> = Vec::with_capacity(STREAMS);
    while let Some(done) = registering.join_next().await {
        devices.extend(done.map_err(|e| e.to_string())??);
    }
    // The connections first, so that what the streams add is measured alone.
    let mut ours: Vec<Channel> = Vec::with_capacity(connections);
    let mut bare: Vec<Channel> = Vec::with_capacity(connections);
    for _ in 0..connections {
        ours.push(net.connect(&bram).await?.channel());
        bare.push(net.connect_echo().await?.channel());
    }
    let (server, echo) = (net.server.pid, net.echo.pid);
    let before = (settled_rss(server).await, settled_rss(echo).await);
    let mut streams = Vec::with_capacity(STREAMS);
    let mut opening = tokio::task::JoinSet::new();
    for (i, (professional, device)) in devices.iter().copied().enumerate() {
        let channel = ours[i % connections].clone();
        opening.spawn(async move {
            ThreadServiceClient::new(channel)
                .subscribe(acting(
                    professional,
                    SubscribeRequest {
                        device_id: device.to_string(),
                        cursor: String::new(),
                    },
                ))
                .await
                .map(|s| (device, s.into_inner()))
                .map_err(|s| format!("subscribe: {s}"))
        });
        if opening.len() >= 64
            && let Some(done) = opening.join_next().await
        {
            streams.push(done.map_err(|e| e.to_string())??);
        }
    }
    while let Some(done) = opening.join_next().await {
        streams.push(done.map_err(|e| e.to_string())??);
    }
    let mut bare_streams = Vec::with_capacity(STREAMS);
    for i in 0..STREAMS {
        bare_streams.push(
            EchoServiceClient::new(bare[i % connections].clone())
                .subscribe(EchoSubscribe {})
                .await
                .map_err(|s| format!("echo subscribe: {s}"))?
                .into_inner(),
        );
    }
    let after = (settled_rss(server).await, settled_rss(echo).await);
    let per_stream = after.0.saturating_sub(before.0) as f64 / STREAMS as f64;
    let bare_per_stream = after.1.saturating_sub(before.1) as f64 / STREAMS as f64;

    // A sample: the first specialist's devices, in a consult.
    let contact = net.connect(&sanne).await?;
    let sample_professional = devices[0].0;
    let sample = net
        .connect(&crate::network::Person {
            organisation: bram.organisation.clone(),
            id: sample_professional,
            name: String::new(),
        })
        .await?;
    let consult = accepted_consult(&contact, &sample).await?;
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let device = thread_device(&contact, &state.path().join("b7"), consult).await?;
    let sealed = device
        .seal_unsent(consult, &["x".repeat(PAYLOAD).as_str()])
        .await
        .map_err(|e| format!("cannot encrypt: {e}"))?;
    let publisher = contact.channel();
    let message = sealed.into_iter().next().ok_or("nothing sealed")?;
    post_sealed(publisher, sanne.id, consult, device.device(), message).await?;
    let mut reached = 0;
    let consult_id = consult.to_string();
    let sampled: std::collections::HashSet<Uuid> = devices
        .iter()
        .filter(|(owner, _)| *owner == sample_professional)
        .map(|(_, device)| *device)
        .collect();
    for (device, stream) in &mut streams {
        if !sampled.contains(device) {
            continue;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(event))) => {
                    if let Some(Event::ThreadEntry(entry)) = event.event
                        && entry.consult_id == consult_id
                    {
                        reached += 1;
                        break;
                    }
                }
                Ok(Some(Err(status))) => return Err(format!("a sampled stream failed: {status}")),
                Ok(None) => return Err("a sampled stream ended".into()),
                Err(_) => {
                    return Err("a sampled device did not receive the message within 20 s".into());
                }
            }
        }
    }
    let sampled = devices
        .iter()
        .filter(|d| d.0 == sample_professional)
        .count();
    if reached != sampled {
        return Err(format!(
            "{reached} of {sampled} sampled devices received the message"
        ));
    }
    bench.report.add(
        Line::new(
            format!("B7.idle_streams.{STREAMS}"),
            per_stream / TARGET_BYTES,
            Target::AtMost(1.0),
            "server memory per open subscription / 16 KiB; the sample still received at once",
        )
        .figure("bytes_per_stream", per_stream)
        .figure("bare_bytes_per_stream", bare_per_stream)
        .figure("sampled_devices_reached", reached as f64)
        .figure("server_rss_mib", after.0 as f64 / 1024.0 / 1024.0),
    );
    drop(bare_streams);
    drop(streams);
    Ok(())
}
