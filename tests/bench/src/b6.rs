//! B6: connection churn: a new mutual-TLS connection (TCP, TLS 1.3
//! handshake with client certificate and CRL check, HTTP/2) and one call on
//! it, one after the other, against the same with the echo.

use samenop_client::Client;

use crate::{
    Bench,
    b0::PAYLOAD,
    echo::pb::{EchoRequest, echo_service_client::EchoServiceClient},
    network::get_professional,
    report::{Line, Target},
    run::{self, Summary},
};

pub(crate) async fn run(bench: &mut Bench) -> Result<(), String> {
    let net = &bench.network;
    let sanne = net.person("Sanne")?;
    let ours = net.config_for(net.server.addr, &sanne.organisation);
    let bare = net.config_for(net.echo.addr, &sanne.organisation);
    let id = sanne.id;
    let fresh = run::call(move |_, _| {
        let config = ours.clone();
        async move {
            let client = Client::connect(config)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            get_professional(client.channel(), id).await
        }
    });
    let fresh_echo = run::call(move |_, _| {
        let config = bare.clone();
        async move {
            let client = Client::connect(config)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            EchoServiceClient::new(client.channel())
                .echo(EchoRequest {
                    payload: vec![0x5a; PAYLOAD],
                })
                .await
                .map(drop)
                .map_err(|s| format!("echo: {s}"))
        }
    });
    let sides = [(net.echo.pid, fresh_echo), (net.server.pid, fresh)];
    let duration = bench.options.round();
    let measured = run::alternate(bench.options.rounds(), &sides, |(pid, call)| {
        let (pid, call) = (*pid, call.clone());
        async move { run::measure(Some(pid), run::closed_loop(&call, 1, duration)).await }
    })
    .await?;
    bench.report.add(
        Line::new(
            "B6.connect_and_call",
            run::paired_ratio(&measured[1], &measured[0]),
            Target::AtLeast(0.8),
            "new connections with one call per second, samenop / echo, same round",
        )
        .sides(
            Some(Summary::of(&measured[0])),
            Some(Summary::of(&measured[1])),
        ),
    );
    Ok(())
}
