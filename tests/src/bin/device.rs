//! A device as its own process, for the power-cut tests: it opens (or
//! makes) a `Messenger` whose state is in a directory, then does what each
//! line on stdin says and answers on stdout, until it is killed.
//!
//! Arguments: endpoint, CA, certificate, key, professional id, state
//! directory. Commands: `catch-up CONSULT` (answers `caught-up N`), `send
//! CONSULT TEXT` (`sent SEQUENCE`), `update CONSULT` (`updated EPOCH`).
//! Any failure answers `error …`.

#![allow(clippy::expect_used)] // a test helper: a bad start is a test failure

use std::io::BufRead;

use samenop_client::{Client, ClientConfig, mls::Messenger};
use uuid::Uuid;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, ca, cert, key, professional, state] = args.as_slice() else {
        eprintln!("usage: device ENDPOINT CA CERT KEY PROFESSIONAL STATE_DIR");
        std::process::exit(64);
    };
    let mut config = ClientConfig::from_files(endpoint.as_str(), ca, cert, key).expect("config");
    config.server_name = Some("localhost".into());
    let professional: Uuid = professional.parse().expect("a professional id");
    let client = Client::connect(config)
        .await
        .expect("connect")
        .acting_as(professional);
    let device = Messenger::open(&client, std::path::Path::new(state), "werkplek")
        .await
        .expect("open the device");
    println!("device {}", device.device());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else {
            return;
        };
        let mut words = line.splitn(3, ' ');
        let (command, consult, rest) = (words.next(), words.next(), words.next());
        let Some(consult) = consult.and_then(|c| c.parse::<Uuid>().ok()) else {
            println!("error: no consult in {line:?}");
            continue;
        };
        let answer = match command {
            Some("catch-up") => device
                .catch_up(consult)
                .await
                .map(|read| format!("caught-up {}", read.len())),
            Some("send") => device
                .send(consult, rest.unwrap_or_default(), None)
                .await
                .map(|sequence| format!("sent {sequence}")),
            Some("own") => device.messages(consult).await.map(|all| {
                let own: Vec<String> = all
                    .into_iter()
                    .filter(|m| m.own)
                    .map(|m| format!("{}:{}", m.sequence, m.text))
                    .collect();
                format!("own {}", own.join(" "))
            }),
            Some("pending") => device
                .pending(consult)
                .await
                .map(|pending| format!("pending {pending}")),
            Some("update") => device
                .update_keys(consult)
                .await
                .map(|epoch| format!("updated {epoch}")),
            _ => {
                println!("error: unknown command {line:?}");
                continue;
            }
        };
        match answer {
            Ok(answer) => println!("{answer}"),
            Err(err) => println!("error {err}"),
        }
    }
}
