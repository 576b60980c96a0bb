//! Two `samenop-server` processes on one PostgreSQL database are one
//! service: what is posted through one is delivered live through the other,
//! two specialists accepting one pool request on different replicas make
//! exactly one winner, a replica killed with SIGKILL mid-load and a database
//! restarted under load lose nothing acknowledged, and the audit chain both
//! wrote verifies. And a deployment moves from the embedded store to
//! PostgreSQL with `migrate-store`, its audit chain verified on the new store.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use samenop_client::{
    ClientError, Expertise, Role, ViolenceType,
    consult::{About, NewConsult, Urgency},
    mls::{EventKind, Messenger},
};
use samenop_server::store::postgres::{PostgresStore, throwaway};

use super::{ADMIN, ServerProcess, config_text, connect, free_port, within, write_config};

/// A replica: `run --config` of its own file (its own data directory, the
/// shared audit key) on the database `url`.
fn replica(dir: &Path, name: &str, pki: &samenop_certs_dev::PkiPaths, url: &str) -> ServerProcess {
    let port = free_port();
    let own = dir.join(name);
    std::fs::create_dir_all(&own).unwrap();
    let text = config_text(pki, port, &own.join("data"), &[ADMIN]).replacen(
        "shutdown_grace_seconds = 5\n",
        &format!(
            "shutdown_grace_seconds = 5\nsweep_interval_seconds = 1\naudit_key = \"{}\"\n",
            dir.join("audit-ed25519.pk8").display()
        ),
        1,
    );
    let path = write_config(&own, &text);
    let child = std::process::Command::new(super::BINARY)
        .args(["run", "--config"])
        .arg(&path)
        .args(["--postgres", url])
        .env("SAMENOP_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    ServerProcess {
        child: Some(child),
        port,
    }
}

/// Sends `text` until the server acknowledges it (an unavailable database
/// or replica is tried again): its sequence.
async fn send_until_acknowledged(device: &Messenger, consult: uuid::Uuid, text: &str) -> u64 {
    for _ in 0..200 {
        match device.send(consult, text, None).await {
            Ok(sequence) => return sequence,
            Err(err @ (ClientError::Unavailable(_) | ClientError::Aborted(_))) => {
                eprintln!("replicas: {text:?} tried again: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("send {text:?}: {err}"),
        }
    }
    panic!("{text:?} was never acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_are_one_service() {
    let Some(db) = throwaway::for_tests("the two-replica test").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = samenop_certs_dev::PkiPaths::new(dir.path().join("pki"));
    samenop_certs_dev::generate(&pki, samenop_certs_dev::DEMO_ORGANISATIONS).unwrap();
    let mut a = replica(dir.path(), "a", &pki, db.url());
    let on_a = connect(&pki, a.port).await;
    let mut b = replica(dir.path(), "b", &pki, db.url());
    let on_b = connect(&pki, b.port).await;

    // People registered through A are known through B at once.
    let admin = on_a.acting_as(ADMIN.parse().unwrap());
    let abuse = Expertise::Violence(ViolenceType::ChildAbuse);
    let sanne = admin
        .register_professional("Sanne", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    let eva = admin
        .register_professional("Eva", &[Role::Specialist], &[abuse])
        .await
        .unwrap();
    let evi = admin
        .register_professional("Evi", &[Role::Specialist], &[abuse])
        .await
        .unwrap();
    let (sanne_a, eva_b, evi_a) = (
        on_a.acting_as(sanne.id),
        on_b.acting_as(eva.id),
        on_a.acting_as(evi.id),
    );
    eva_b.professional_with_devices(eva.id).await.unwrap();

    // Eva's device follows on B; Sanne asks the pool on A; it reaches Eva live.
    let eva_device = Messenger::open(&eva_b, &dir.path().join("eva"), "werkplek")
        .await
        .unwrap();
    let mut eva_events = eva_device.subscribe(None).await.unwrap();
    let sanne_device = Messenger::open(&sanne_a, &dir.path().join("sanne"), "werkplek")
        .await
        .unwrap();
    let ask = |question: &str| NewConsult {
        about: About::Anonymous,
        question: question.into(),
        expertise: abuse,
        urgency: Urgency::Normal,
        respond_by: None,
        specialist: None,
    };
    let consult = sanne_a.open_consult(&ask("Anonieme vraag")).await.unwrap();
    loop {
        let event = within(
            "the pool request, through the other replica",
            eva_events.next(),
        )
        .await
        .unwrap()
        .unwrap();
        if matches!(&event.kind, EventKind::Consult(c) if c.consult == consult.id) {
            break;
        }
    }

    // Eva on B and Evi on A accept at once: exactly one wins.
    let (by_eva, by_evi) = tokio::join!(
        eva_b.accept_consult(consult.id),
        evi_a.accept_consult(consult.id)
    );
    assert_eq!(
        usize::from(by_eva.is_ok()) + usize::from(by_evi.is_ok()),
        1,
        "one winner: {by_eva:?} / {by_evi:?}"
    );

    // A consult for Eva by name, which she accepts through B.
    let for_eva = sanne_a
        .open_consult(&NewConsult {
            specialist: Some(eva.id),
            ..ask("Vraag aan Eva")
        })
        .await
        .unwrap();
    eva_b.accept_consult(for_eva.id).await.unwrap();
    two_replicas_carry_a_thread(db, &mut a, &mut b, sanne_device, eva_device, for_eva.id).await;
}

/// Sanne writes through A and Eva through B into one gapless thread; A is
/// killed mid-load and the database restarted under load; nothing
/// acknowledged is lost, and the audit chain verifies.
async fn two_replicas_carry_a_thread(
    db: throwaway::Database,
    a: &mut ServerProcess,
    b: &mut ServerProcess,
    sanne_device: Messenger,
    eva_device: Messenger,
    consult: uuid::Uuid,
) {
    sanne_device.create_thread(consult).await.unwrap();
    // Sanne's device adds Eva's (listed through A, registered through B);
    // Eva joins from its Welcome.
    let added = sanne_device.sync_members(consult).await.unwrap();
    assert_eq!(added.added.len(), 1, "Eva's device is added");
    let mut acknowledged = vec![send_until_acknowledged(&sanne_device, consult, "vraag 1").await];
    within("Eva's device to join", async {
        loop {
            if eva_device.catch_up(consult).await.is_ok()
                && eva_device.joined(consult).await.unwrap()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    acknowledged.push(send_until_acknowledged(&eva_device, consult, "antwoord 1").await);

    // Load through both; A is killed with SIGKILL in the middle of it,
    // once it has acknowledged some. Until the kill, a passing error (two
    // replicas appending to one thread can meet a serialization failure)
    // is tried again, as an integrator would.
    let sanne_device = Arc::new(sanne_device);
    let killed = Arc::new(AtomicBool::new(false));
    let through_a_so_far = Arc::new(AtomicUsize::new(0));
    let load = {
        let sanne = Arc::clone(&sanne_device);
        let killed = Arc::clone(&killed);
        let count = Arc::clone(&through_a_so_far);
        tokio::spawn(async move {
            let mut acked = Vec::new();
            while acked.len() < 200 {
                match sanne
                    .send(consult, &format!("via A {}", acked.len()), None)
                    .await
                {
                    Ok(sequence) => {
                        acked.push(sequence);
                        count.store(acked.len(), Ordering::SeqCst);
                    }
                    Err(_) if killed.load(Ordering::SeqCst) => break,
                    Err(err @ (ClientError::Unavailable(_) | ClientError::Aborted(_))) => {
                        eprintln!("replicas: a send through A tried again: {err}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(err) => panic!("a send through A before it was killed: {err}"),
                }
            }
            acked
        })
    };
    for n in 0..10 {
        acknowledged
            .push(send_until_acknowledged(&eva_device, consult, &format!("via B {n}")).await);
    }
    within("A to acknowledge a send", async {
        while through_a_so_far.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(!load.is_finished(), "A is killed while it is under load");
    killed.store(true, Ordering::SeqCst);
    a.child().kill().unwrap();
    a.child().wait().unwrap();
    let via_a = load.await.unwrap();
    let through_a = via_a.len();
    assert!(!via_a.is_empty(), "A acknowledged some before it died");
    acknowledged.extend(via_a);
    for n in 10..20 {
        acknowledged
            .push(send_until_acknowledged(&eva_device, consult, &format!("via B {n}")).await);
    }

    // The database stops at once and starts again while B is used.
    let restart = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(100));
        db.crash_and_restart().map(|()| db)
    });
    let mut during = 0;
    while !restart.is_finished() {
        acknowledged.push(
            send_until_acknowledged(&eva_device, consult, &format!("via B, restart {during}"))
                .await,
        );
        during += 1;
    }
    let db = restart.await.unwrap().unwrap();
    eprintln!(
        "replicas: {through_a} acknowledged through A before it died, {during} through B while the database restarted"
    );
    acknowledged.push(send_until_acknowledged(&eva_device, consult, "na de herstart").await);

    // Everything acknowledged is in the thread, read through B, in one
    // gapless order.
    let read = within("the whole thread through B", eva_device.catch_up(consult))
        .await
        .unwrap();
    let mut all = eva_device.messages(consult).await.unwrap();
    all.extend(read);
    let mut sequences: Vec<u64> = all.iter().map(|m| m.sequence).collect();
    sequences.sort_unstable();
    sequences.dedup();
    for sequence in &acknowledged {
        assert!(
            sequences.contains(sequence),
            "acknowledged message {sequence} is in the thread"
        );
    }
    b.child().kill().unwrap();
    b.child().wait().unwrap();

    // The chain both replicas wrote is one, and it verifies; the periodic
    // work had one holder per task.
    let store = PostgresStore::connect(&db.config()).await.unwrap();
    let trail = samenop_server::store::audit::Trail::new(Arc::new(store));
    let verification = trail.verify(None).await.unwrap();
    assert!(verification.broken.is_none(), "{:?}", verification.broken);
    assert_eq!(verification.checked, verification.recorded);
    assert!(verification.recorded.sequence > acknowledged.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_moves_to_postgres_and_its_trail_verifies_there() {
    let Some(db) = throwaway::for_tests("the store migration test").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (pki, text) = super::setup(dir.path(), port);
    let path = write_config(dir.path(), &text);
    let server = super::start(&path, port);
    let client = connect(&pki, port).await;
    let admin = client.acting_as(ADMIN.parse().unwrap());
    let abuse = Expertise::Violence(ViolenceType::ChildAbuse);
    let sanne = admin
        .register_professional("Sanne", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    let opened = client
        .acting_as(sanne.id)
        .open_consult(&NewConsult {
            about: About::Anonymous,
            question: "Vraag van voor de verhuizing".into(),
            expertise: abuse,
            urgency: Urgency::Normal,
            respond_by: None,
            specialist: None,
        })
        .await
        .unwrap();
    drop(client);
    let stopped = server.terminate().await;
    assert!(stopped.status.success());

    // The data directory moves into the database, and the chain verifies
    // there with the server's audit key.
    let data = path.parent().unwrap().join("data");
    let migrate = || {
        std::process::Command::new(super::BINARY)
            .args(["migrate-store", "--data"])
            .arg(&data)
            .args(["--postgres", db.url()])
            .env("SAMENOP_LOG", "warn")
            .output()
            .unwrap()
    };
    let moved = migrate();
    let said = String::from_utf8_lossy(&moved.stdout);
    assert!(
        moved.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    assert!(said.contains("copied "), "{said}");
    assert!(said.contains("audit trail intact"), "{said}");
    assert!(
        !said.contains("checkpoints verified: 0"),
        "a signed checkpoint moved too: {said}"
    );
    // A second move would mix two deployments: refused, nothing written.
    let again = migrate();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The server on the database finds everything as it was.
    let child = std::process::Command::new(super::BINARY)
        .args(["run", "--config"])
        .arg(&path)
        .args(["--postgres", db.url()])
        .env("SAMENOP_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut on_postgres = ServerProcess {
        child: Some(child),
        port,
    };
    let client = connect(&pki, port).await;
    let found = client.acting_as(sanne.id).consult(opened.id).await.unwrap();
    assert_eq!(found.question, "Vraag van voor de verhuizing");
    on_postgres.child().kill().unwrap();
    on_postgres.child().wait().unwrap();
}
