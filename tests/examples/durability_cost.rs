//! What durability costs: encrypted sends per second through the real
//! server over mutual TLS, with its store syncing every commit (as it
//! always does) against the same server with a store that does not sync
//! (redb's `Durability::None`, never used for data), measured alternately
//! in one run (A B A B …, the order reversed every other round), one send
//! at a time and 64 in flight (64 devices, one consult each). The devices'
//! own MLS state syncs in both: only the server's syncs differ.
//!
//! ```sh
//! cargo run --release -p samenop-tests --example durability_cost
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{sync::Arc, time::Instant};

use samenop_client::{Expertise, Role, ViolenceType, mls::Messenger};
use samenop_tests::{ORG_A, ORG_B, TestServer, accepted_anonymous_consult};
use uuid::Uuid;

const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);
const DEVICES: usize = 64;
const ROUNDS: usize = 5;
const ONE_AT_A_TIME: usize = 200;
const EACH_IN_FLIGHT: usize = 20;

/// A server with 64 contact persons, each with a device and a consult with
/// one specialist, whose device is in every group.
struct Bench {
    _server: TestServer,
    devices: Vec<(Arc<Messenger>, Uuid)>,
    _dirs: tempfile::TempDir,
}

async fn bench(durable: bool) -> Bench {
    let server = if durable {
        TestServer::start().await
    } else {
        TestServer::start_volatile().await
    };
    let dirs = tempfile::tempdir().unwrap();
    let eva = server
        .professional(ORG_B, "Eva", &[Role::Specialist], &[ABUSE])
        .await;
    let eva_device = Messenger::open(&eva, &dirs.path().join("eva"), "laptop")
        .await
        .unwrap();
    let mut devices = Vec::new();
    for n in 0..DEVICES {
        let contact = server
            .professional(ORG_A, &format!("Contact {n}"), &[Role::ContactPerson], &[])
            .await;
        let consult = accepted_anonymous_consult(&contact, &eva).await;
        let device = Messenger::open(&contact, &dirs.path().join(format!("c{n}")), "werkplek")
            .await
            .unwrap();
        device.create_thread(consult).await.unwrap();
        device.sync_members(consult).await.unwrap();
        devices.push((Arc::new(device), consult));
    }
    drop(eva_device);
    Bench {
        _server: server,
        devices,
        _dirs: dirs,
    }
}

/// Sends per second, one at a time from one device.
async fn one_at_a_time(b: &Bench) -> f64 {
    let (device, consult) = &b.devices[0];
    let started = Instant::now();
    for n in 0..ONE_AT_A_TIME {
        device
            .send(*consult, &format!("bericht {n}"), None)
            .await
            .unwrap();
    }
    ONE_AT_A_TIME as f64 / started.elapsed().as_secs_f64()
}

/// Sends per second, 64 devices sending at once.
async fn in_flight(b: &Bench) -> f64 {
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for (device, consult) in &b.devices {
        let (device, consult) = (device.clone(), *consult);
        sends.spawn(async move {
            for n in 0..EACH_IN_FLIGHT {
                device
                    .send(consult, &format!("bericht {n}"), None)
                    .await
                    .unwrap();
            }
        });
    }
    while sends.join_next().await.is_some() {}
    (DEVICES * EACH_IN_FLIGHT) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let durable = bench(true).await;
    let volatile = bench(false).await;
    let (mut durable_one, mut volatile_one, mut durable_many, mut volatile_many) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_durable in order {
            let b = if is_durable { &durable } else { &volatile };
            let one = one_at_a_time(b).await;
            let many = in_flight(b).await;
            if is_durable {
                durable_one.push(one);
                durable_many.push(many);
            } else {
                volatile_one.push(one);
                volatile_many.push(many);
            }
        }
    }
    for (shape, durable, volatile) in [
        ("1 in flight", durable_one, volatile_one),
        ("64 in flight", durable_many, volatile_many),
    ] {
        let (d, v) = (median(durable.clone()), median(volatile.clone()));
        println!(
            "{shape}: durable {d:.0} sends/s, without server syncs {v:.0} sends/s, \
             ratio={:.2} (rounds: durable {durable:.0?}, volatile {volatile:.0?})",
            d / v
        );
    }
}
