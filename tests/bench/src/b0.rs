//! B0: read calls (GetProfessional, GetConsult, ListConsults) against the
//! bare echo, at 1 in flight and at 2 connections × 32 in flight, and the
//! first open loop at a fixed rate. Every samenop call here writes its
//! audit event durably before it answers, so at 1 in flight a read costs at
//! least one fdatasync: its target is the echo's latency plus 1.3 of them.

use std::sync::Arc;

use samenop_proto::v1::{
    ConsultListScope, GetConsultRequest, ListConsultsRequest,
    consult_service_client::ConsultServiceClient,
};

use crate::{
    Bench,
    network::{accepted_consult, acting, echo_call, get_professional},
    report::{Line, Target},
    run::{self, Call, Summary},
};

/// The payload of the echo: about what a read answers.
pub(crate) const PAYLOAD: usize = 256;

/// The shapes: (connections, calls in flight on each).
const SHAPES: [(usize, usize); 2] = [(1, 1), (2, 32)];

pub(crate) async fn run(bench: &mut Bench) -> Result<(), String> {
    let net = &bench.network;
    let sanne = net.person("Sanne")?;
    let eva = net.person("Eva")?;
    let contact = net.connect(&sanne).await?;
    let specialist = net.connect(&eva).await?;
    let consult = accepted_consult(&contact, &specialist).await?;
    let rounds = bench.options.rounds();
    let duration = bench.options.round();
    for (connections, in_flight) in SHAPES {
        let mut ours = Vec::new();
        let mut bare = Vec::new();
        for n in 0..connections {
            ours.push(net.connect_to(n, &sanne).await?.channel());
            bare.push(net.connect_echo().await?.channel());
        }
        let ours = Arc::new(ours);
        let pick = move |task: usize| ours[task % ours.len()].clone();
        let id = sanne.id;
        let get_professional = {
            let pick = pick.clone();
            run::call(move |task, _| get_professional(pick(task), id))
        };
        let get_consult = {
            let pick = pick.clone();
            run::call(move |task, _| {
                let channel = pick(task);
                async move {
                    ConsultServiceClient::new(channel)
                        .get_consult(acting(
                            id,
                            GetConsultRequest {
                                consult_id: consult.to_string(),
                            },
                        ))
                        .await
                        .map(drop)
                        .map_err(|s| format!("GetConsult: {s}"))
                }
            })
        };
        let list_consults = run::call(move |task, _| {
            let channel = pick(task);
            async move {
                ConsultServiceClient::new(channel)
                    .list_consults(acting(
                        id,
                        ListConsultsRequest {
                            scope: ConsultListScope::Owned as i32,
                            ..ListConsultsRequest::default()
                        },
                    ))
                    .await
                    .map(drop)
                    .map_err(|s| format!("ListConsults: {s}"))
            }
        });
        let sides: Vec<(&str, Call)> = vec![
            ("echo", echo_call(bare, vec![0x5a; PAYLOAD])),
            ("GetProfessional", get_professional),
            ("GetConsult", get_consult),
            ("ListConsults", list_consults),
        ];
        let pid = net.server.pid;
        let echo_pid = net.echo.pid;
        let tasks = connections * in_flight;
        let measured = run::alternate(rounds, &sides, |(name, call)| {
            let server = if *name == "echo" { echo_pid } else { pid };
            let call = call.clone();
            async move { run::measure(Some(server), run::closed_loop(&call, tasks, duration)).await }
        })
        .await?;
        let echo = Summary::of(&measured[0]);
        for (i, (name, _)) in sides.iter().enumerate().skip(1) {
            let summary = Summary::of(&measured[i]);
            let shape = format!("{connections}x{in_flight}");
            let target = if in_flight > 1 {
                Target::AtLeast(0.5)
            } else {
                Target::None
            };
            bench.report.add(
                Line::new(
                    format!("B0.{name}.{shape}"),
                    run::paired_ratio(&measured[i], &measured[0]),
                    target,
                    "calls per second, samenop / echo, same round",
                )
                .sides(Some(echo), Some(summary)),
            );
            if in_flight == 1 {
                let allowed = echo.p50_us + 1.3 * bench.fdatasync_p50_us;
                bench.report.add(
                    Line::new(
                        format!("B0.{name}.{shape}.p50"),
                        summary.p50_us / allowed,
                        Target::AtMost(1.0),
                        "p50 / (echo p50 + 1.3 × fdatasync p50)",
                    )
                    .figure("p50_us", summary.p50_us)
                    .figure("allowed_us", allowed),
                );
            }
        }
    }
    open_loop(bench, sanne.id).await
}

/// GetProfessional and echo started at a fixed rate on one connection each:
/// latency from when each call was due.
async fn open_loop(bench: &mut Bench, id: uuid::Uuid) -> Result<(), String> {
    let net = &bench.network;
    let sanne = net.person("Sanne")?;
    let ours = net.connect(&sanne).await?.channel();
    let bare = net.connect_echo().await?.channel();
    let get_professional = run::call(move |_, _| get_professional(ours.clone(), id));
    let sides: Vec<(u32, Call)> = vec![
        (net.echo.pid, echo_call(vec![bare], vec![0x5a; PAYLOAD])),
        (net.server.pid, get_professional),
    ];
    let rate = bench.options.rate;
    let duration = bench.options.round();
    let measured = run::alternate(bench.options.rounds(), &sides, |(pid, call)| {
        let call = call.clone();
        let pid = *pid;
        async move { run::measure(Some(pid), run::open_loop(&call, rate, duration)).await }
    })
    .await?;
    let echo = Summary::of(&measured[0]);
    let ours = Summary::of(&measured[1]);
    bench.report.add(
        Line::new(
            format!("B0.GetProfessional.open{rate:.0}.p99"),
            echo.p99_us / ours.p99_us.max(f64::MIN_POSITIVE),
            Target::None,
            "open loop at a fixed rate, latency from when each call was due: echo p99 / samenop p99",
        )
        .sides(Some(echo), Some(ours)),
    );
    Ok(())
}
