//! B1: the server's append throughput. A hundred consult threads, MLS
//! application messages of 256 bytes encrypted before each round (so the
//! load generator's encryption is not in the figure), posted over 2
//! connections × 32 in flight; each acknowledged only once durable. Against
//! the echo at the same shape and payload.

use std::sync::Arc;

use samenop_client::mls::Messenger;

use crate::{
    Bench,
    b0::PAYLOAD,
    network::{accepted_consult, echo_call, post_sealed},
    report::{Line, Target},
    run::{self, Summary},
};

/// Threads posted to.
const THREADS: usize = 100;
const CONNECTIONS: usize = 2;
const IN_FLIGHT: usize = 32;

pub(crate) async fn run(bench: &mut Bench) -> Result<(), String> {
    let net = &bench.network;
    let sanne = net.person("Sanne")?;
    let eva = net.person("Eva")?;
    let contact = net.connect(&sanne).await?;
    let specialist = net.connect(&eva).await?;
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let device = Messenger::open(&contact, &state.path().join("b1"), "bench")
        .await
        .map_err(|e| format!("cannot open a device: {e}"))?;
    let mut consults = Vec::with_capacity(THREADS);
    for _ in 0..THREADS {
        let consult = accepted_consult(&contact, &specialist).await?;
        device
            .create_thread(consult)
            .await
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        consults.push(consult);
    }
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for n in 0..CONNECTIONS {
        ours.push(net.connect_to(n, &sanne).await?.channel());
        bare.push(net.connect_echo().await?.channel());
    }
    let ours = Arc::new(ours);
    // A round posts a fixed number of messages encrypted beforehand, sized
    // to take about a round at the rate of the round before (the first at
    // a guess): a round much shorter than the echo's would weigh whether a
    // checkpoint falls in it more than what a post costs.
    let per_round = std::cell::Cell::new(round_size(bench.options.seconds * 10_000.0));
    let text = "x".repeat(PAYLOAD);
    let echo = echo_call(bare, vec![0x5a; PAYLOAD]);
    let duration = bench.options.round();
    let (server, echo_pid) = (net.server.pid, net.echo.pid);
    let device_id = device.device();
    let professional = sanne.id;
    let sides = [false, true];
    let measured = run::alternate(bench.options.rounds(), &sides, |&samenop| {
        let echo = echo.clone();
        let (device, consults, ours, text) = (&device, &consults, ours.clone(), &text);
        let (per_round, seconds) = (&per_round, bench.options.seconds);
        async move {
            if !samenop {
                return run::measure(
                    Some(echo_pid),
                    run::closed_loop(&echo, CONNECTIONS * IN_FLIGHT, duration),
                )
                .await;
            }
            // Before timing: each thread's share of the round, encrypted.
            let mut sealed = Vec::with_capacity(THREADS);
            let count = per_round.get();
            let texts = vec![text.as_str(); count / THREADS];
            for consult in consults {
                sealed.push(
                    device
                        .seal_unsent(*consult, &texts)
                        .await
                        .map_err(|e| format!("cannot encrypt: {e}"))?,
                );
            }
            let sealed = Arc::new(sealed);
            let consults = Arc::new(consults.clone());
            let post = run::call(move |task, n| {
                let channel = ours[task % ours.len()].clone();
                let thread = n as usize % THREADS;
                let message = sealed[thread][n as usize / THREADS].clone();
                let consult = consults[thread];
                post_sealed(channel, professional, consult, device_id, message)
            });
            let round = run::measure(
                Some(server),
                run::fixed_work(&post, CONNECTIONS * IN_FLIGHT, count as u64),
            )
            .await?;
            per_round.set(round_size(round.rate() * seconds));
            Ok(round)
        }
    })
    .await?;
    let bare = Summary::of(&measured[0]);
    let appended = Summary::of(&measured[1]);
    bench.report.add(
        Line::new(
            format!("B1.PostMessage.{CONNECTIONS}x{IN_FLIGHT}"),
            run::paired_ratio(&measured[1], &measured[0]),
            Target::AtLeast(0.5),
            "durable appends per second to 100 threads / echo calls per second, same round",
        )
        .sides(Some(bare), Some(appended)),
    );
    Ok(())
}

/// A round's messages for `wanted`: a whole number per thread, at least 10
/// each and at most 2,000 each (memory for the ciphertexts made before it).
fn round_size(wanted: f64) -> usize {
    let per_thread = (wanted / THREADS as f64) as usize;
    per_thread.clamp(10, 2_000) * THREADS
}
