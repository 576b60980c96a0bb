//! B2: one encrypted send at a time through samenop-client (a device of the
//! contact person, in a consult whose group also holds the specialist's
//! device): encryption, the device's durable state and the server's durable
//! append all in it. Against the echo at 1 in flight, in the same rounds;
//! the target is the echo's latency plus two fdatasyncs (one on each side)
//! plus twice the MLS encryption.

use std::sync::Arc;

use samenop_client::mls::Messenger;

use crate::{
    Bench,
    b0::PAYLOAD,
    network::{accepted_consult, echo_call},
    report::{Line, Target},
    run::{self, Summary},
};

pub(crate) async fn run(bench: &mut Bench) -> Result<(), String> {
    let net = &bench.network;
    let sanne = net.person("Sanne")?;
    let eva = net.person("Eva")?;
    let contact = net.connect(&sanne).await?;
    let specialist = net.connect(&eva).await?;
    let state = tempfile::tempdir_in(&net.data_dir).map_err(|e| e.to_string())?;
    let device = Messenger::open(&contact, &state.path().join("sanne"), "bench")
        .await
        .map_err(|e| format!("cannot open a device: {e}"))?;
    let eva_device = Messenger::open(&specialist, &state.path().join("eva"), "bench")
        .await
        .map_err(|e| format!("cannot open a device: {e}"))?;
    let consult = accepted_consult(&contact, &specialist).await?;
    device
        .create_thread(consult)
        .await
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    device
        .sync_members(consult)
        .await
        .map_err(|e| format!("cannot add the specialist's device: {e}"))?;
    drop(eva_device);
    let device = Arc::new(device);
    let text = Arc::new("x".repeat(PAYLOAD));
    let send = run::call(move |_, _| {
        let (device, text) = (device.clone(), text.clone());
        async move {
            device
                .send(consult, &text, None)
                .await
                .map(drop)
                .map_err(|e| format!("send: {e}"))
        }
    });
    let echo = echo_call(
        vec![net.connect_echo().await?.channel()],
        vec![0x5a; PAYLOAD],
    );
    let sides = [(net.echo.pid, echo), (net.server.pid, send)];
    let duration = bench.options.round();
    let measured = run::alternate(bench.options.rounds(), &sides, |(pid, call)| {
        let (pid, call) = (*pid, call.clone());
        async move { run::measure(Some(pid), run::closed_loop(&call, 1, duration)).await }
    })
    .await?;
    let bare = Summary::of(&measured[0]);
    let sent = Summary::of(&measured[1]);
    let encrypt = match bench.mls_encrypt_us {
        Some(us) => us,
        None => crate::b8::encrypt_cost_us(2)?,
    };
    let allowed = bare.p50_us + 2.0 * bench.fdatasync_p50_us + 2.0 * encrypt;
    bench.report.add(
        Line::new(
            "B2.send.1x1.p50",
            sent.p50_us / allowed,
            Target::AtMost(1.0),
            "send p50 / (echo p50 + 2 × fdatasync p50 + 2 × MLS encrypt)",
        )
        .sides(Some(bare), Some(sent))
        .figure("allowed_us", allowed)
        .figure("mls_encrypt_us", encrypt),
    );
    let allowed_p99 = bare.p99_us + 2.0 * bench.fdatasync_p99_us + 2.0 * encrypt;
    bench.report.add(
        Line::new(
            "B2.send.1x1.p99",
            sent.p99_us / allowed_p99,
            Target::None,
            "send p99 / (echo p99 + 2 × fdatasync p99 + 2 × MLS encrypt)",
        )
        .figure("p99_us", sent.p99_us)
        .figure("allowed_us", allowed_p99),
    );
    // The device's own work per send, beyond what any gRPC call costs its
    // caller: state persistence and encryption, against encryption alone.
    let local = (sent.client_cpu_us - bare.client_cpu_us).max(0.0);
    bench.report.add(
        Line::new(
            "B8.send_cost",
            local / encrypt,
            Target::AtMost(2.0),
            "client CPU per send beyond an echo call's / MLS encrypt alone",
        )
        .figure("client_cpu_per_send_us", sent.client_cpu_us)
        .figure("client_cpu_per_echo_us", bare.client_cpu_us)
        .figure("mls_encrypt_us", encrypt),
    );
    Ok(())
}
