//! The `samenop-server` binary as an operator runs it: a bad configuration
//! stops it with exit code 64 before it binds; SIGTERM drains and flushes;
//! SIGKILL loses nothing that was acknowledged.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a test failure

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use samenop_certs_dev::{DEMO_ORGANISATIONS, PkiPaths};
use samenop_client::{Client, ClientConfig, ClientError, Role};

mod powercut;
mod replicas;

const BINARY: &str = env!("CARGO_BIN_EXE_samenop-server");
const ADMIN: &str = "0190a5b0-0000-7000-8000-00000000a001";

/// Awaits `future` for at most 20 seconds; past that, fails the test saying
/// what it was waiting for (as `samenop_tests::within` does for the e2e
/// suite, which this binary does not link).
async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    let wait = Duration::from_secs(20);
    match tokio::time::timeout(wait, future).await {
        Ok(output) => output,
        Err(_) => panic!("waited {wait:?} in vain for {what}"),
    }
}

fn run_with_config(path: &Path) -> Output {
    Command::new(BINARY)
        .args(["run", "--config"])
        .arg(path)
        .env_remove("SAMENOP_LISTEN")
        .env_remove("SAMENOP_DATA_DIR")
        .output()
        .unwrap()
}

/// A fresh PKI and a valid configuration text for it, listening on `port`.
fn setup(dir: &Path, port: u16) -> (PkiPaths, String) {
    let pki = PkiPaths::new(dir.join("pki"));
    samenop_certs_dev::generate(&pki, DEMO_ORGANISATIONS).unwrap();
    let text = config_text(&pki, port, Path::new("data"), &[ADMIN]);
    (pki, text)
}

/// A configuration text for `pki`, listening on `port`, with its data in
/// `data`, allowing the first demo organisations, one per bootstrap admin
/// in `admins`.
fn config_text(pki: &PkiPaths, port: u16, data: &Path, admins: &[&str]) -> String {
    let mut text = format!(
        r#"listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:0"
data_dir = "{data}"
shutdown_grace_seconds = 5
[tls]
certificate = "{cert}"
private_key = "{key}"
client_ca = ["{ca}"]
crls = ["{crl}"]
"#,
        data = data.display(),
        cert = pki.server_cert().display(),
        key = pki.server_key().display(),
        ca = pki.ca_cert().display(),
        crl = pki.crl().display(),
    );
    for (org, admin) in DEMO_ORGANISATIONS.iter().zip(admins) {
        text.push_str(&format!(
            "[[organisations]]\noin = \"{}\"\nname = \"{}\"\nbootstrap_admin = \"{admin}\"\n",
            org.oin, org.name
        ));
    }
    text
}

#[test]
fn a_bad_configuration_exits_64_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = setup(dir.path(), 1);
    let cases: Vec<(String, &str)> = vec![
        ("listen = [".into(), "is not valid"),
        (
            good.replace(
                "shutdown_grace_seconds",
                "colour = 1\nshutdown_grace_seconds",
            ),
            "unknown field `colour`",
        ),
        (
            good.replace("00000099000000000001", "12345"),
            "oin must be 20 digits",
        ),
        (
            good.replace("127.0.0.1:1", "somewhere"),
            "is not an address:port",
        ),
        (
            good.replace("server.pem", "missing.pem"),
            "cannot read the server certificate",
        ),
        (
            good.replace(
                &format!("bootstrap_admin = \"{ADMIN}\""),
                "bootstrap_admin = \"x\"",
            ),
            "bootstrap_admin must be a canonical UUID",
        ),
        (
            good.lines()
                .filter(|line| !line.starts_with("crls"))
                .collect::<Vec<_>>()
                .join("\n"),
            "no CRL configured",
        ),
        (
            good.replace(
                "shutdown_grace_seconds = 5",
                "handshake_timeout_seconds = 0",
            ),
            "handshake_timeout_seconds must be between 1 and 300",
        ),
        (
            good.replace("[[organisations]]", "[[nothing]]"),
            "unknown field `nothing`",
        ),
    ];
    for (text, needle) in cases {
        let path = dir.path().join("samenop.toml");
        std::fs::write(&path, &text).unwrap();
        let output = run_with_config(&path);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{needle}: {stderr}");
        assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
        assert!(
            !stderr.contains("serving"),
            "it must not have started: {stderr}"
        );
    }
    let missing = run_with_config(&dir.path().join("nope.toml"));
    assert_eq!(missing.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read configuration file"));
}

/// A server child process on a free loopback port.
struct ServerProcess {
    /// The process, until a test takes it over.
    child: Option<Child>,
    port: u16,
}

impl ServerProcess {
    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the process, not yet taken")
    }

    /// The process, to wait for it by hand; no longer killed on drop.
    fn into_child(mut self) -> Child {
        self.child.take().expect("the process, not yet taken")
    }

    /// Sends SIGTERM and waits for the process to end, without blocking the
    /// runtime (a still-connected client must be able to answer the
    /// server's HTTP/2 GOAWAY): what it printed, and how it ended.
    async fn terminate(mut self) -> Output {
        let status = Command::new("kill")
            .args(["-TERM", &self.child().id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let child = self.into_child();
        tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap()
    }
}

impl Drop for ServerProcess {
    /// A test that fails leaves no server behind (nor a file system it
    /// would keep busy).
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(config: &Path, port: u16) -> ServerProcess {
    start_with(config, port, Stdio::piped())
}

/// [`start`] for a server whose log no one reads: a pipe no one reads
/// fills, and the server then waits on its next log line.
fn start_unread(config: &Path, port: u16) -> ServerProcess {
    start_with(config, port, Stdio::null())
}

fn start_with(config: &Path, port: u16, stderr: Stdio) -> ServerProcess {
    let child = Command::new(BINARY)
        .args(["run", "--config"])
        .arg(config)
        .env("SAMENOP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    ServerProcess {
        child: Some(child),
        port,
    }
}

/// Connects once the server serves (and, in dev mode, once it has written
/// its PKI), retrying for up to 30 seconds.
async fn connect(pki: &PkiPaths, port: u16) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match connect_once(pki, port).await {
            Ok(client) => return client,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("server did not come up: {err}"),
        }
    }
}

/// One attempt of [`connect`]: a connection that has had an answer.
async fn connect_once(pki: &PkiPaths, port: u16) -> samenop_client::Result<Client> {
    let slug = DEMO_ORGANISATIONS[0].slug;
    let mut config = ClientConfig::from_files(
        format!("https://localhost:{port}"),
        pki.ca_cert(),
        pki.org_cert(slug),
        pki.org_key(slug),
    )?;
    config.server_name = Some("localhost".into());
    let client = Client::connect(config).await?;
    client.health().await.map(|_| client)
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("samenop.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn sigterm_drains_flushes_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (pki, text) = setup(dir.path(), port);
    let path = write_config(dir.path(), &text);
    let server = start(&path, port);
    let client = connect(&pki, server.port).await;
    let admin = client.acting_as(ADMIN.parse().unwrap());
    admin
        .register_professional("Sanne", &[Role::ContactPerson], &[])
        .await
        .unwrap();

    let output = server.terminate().await;
    drop(client);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("store flushed"), "{stderr}");
    assert!(
        !stderr.contains("grace period over"),
        "nothing was in flight: {stderr}"
    );
}

#[tokio::test]
async fn an_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (pki, text) = setup(dir.path(), port);
    let path = write_config(dir.path(), &text);
    let mut server = start(&path, port);
    let admin = connect(&pki, port).await.acting_as(ADMIN.parse().unwrap());
    let sanne = admin
        .register_professional("Sanne", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    let device = admin
        .register_device(sanne.id, &[5u8; 32], "laptop")
        .await
        .unwrap();

    server.child().kill().unwrap(); // SIGKILL: no shutdown, no flush
    server.child().wait().unwrap();

    // Their audit events were acknowledged with them: the bootstrap admin's
    // registration, Sanne's, and the device's.
    let verified = verify_offline(&dir.path().join("data"));
    assert_eq!(verified.status.code(), Some(0), "{verified:?}");
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        stdout.contains("audit trail intact: 3 events verified, last sequence 3"),
        "{stdout}"
    );

    let mut server = start(&path, port);
    let admin = connect(&pki, port).await.acting_as(ADMIN.parse().unwrap());
    let (after, devices) = admin.professional_with_devices(sanne.id).await.unwrap();
    assert_eq!(after, sanne);
    assert_eq!(devices, vec![device]);
    let unknown = admin.professional_with_devices(uuid::Uuid::now_v7()).await;
    assert!(matches!(unknown, Err(ClientError::NotFound(_))));
    server.child().kill().unwrap();
    server.child().wait().unwrap();
}

fn verify_offline(data: &Path) -> Output {
    Command::new(BINARY)
        .args(["audit", "verify", "--data"])
        .arg(data)
        .output()
        .unwrap()
}

#[tokio::test]
async fn offline_audit_verify_reports_a_changed_event_exactly() {
    use prost::Message;
    use samenop_server::store::{Batch, Keyspace, Store, audit::AuditEntry, redb::RedbStore};

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (pki, text) = setup(dir.path(), port);
    let path = write_config(dir.path(), &text);
    let mut server = start(&path, port);
    let admin = connect(&pki, port).await.acting_as(ADMIN.parse().unwrap());
    for name in ["Sanne", "Eva", "Pim"] {
        admin
            .register_professional(name, &[Role::ContactPerson], &[])
            .await
            .unwrap();
    }
    server.child().kill().unwrap();
    server.child().wait().unwrap();

    // Someone with the disk changes Eva's registration event.
    let data = dir.path().join("data");
    {
        let store = RedbStore::open(&data).unwrap();
        let key = 3u64.to_be_bytes();
        let raw = store.get(Keyspace::Audit, &key).await.unwrap().unwrap();
        let mut entry = AuditEntry::decode(raw.as_slice()).unwrap();
        let middle = entry.body.len() / 2;
        entry.body[middle] ^= 0x01;
        let mut batch = Batch::new();
        batch.put(Keyspace::Audit, key.to_vec(), entry.encode_to_vec());
        store.commit(batch).await.unwrap();
    }

    let verified = verify_offline(&data);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(verified.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("audit trail BROKEN: first broken event 3"),
        "{stdout}"
    );
    let missing = verify_offline(&dir.path().join("no-such-dir"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not a data directory"));
}

#[tokio::test]
async fn environment_overrides_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let file_port = free_port();
    let env_port = free_port();
    let (pki, text) = setup(dir.path(), file_port);
    let path = write_config(dir.path(), &text);
    let mut child = Command::new(BINARY)
        .args(["run", "--config"])
        .arg(&path)
        .env("SAMENOP_LISTEN", format!("127.0.0.1:{env_port}"))
        .env("SAMENOP_DATA_DIR", dir.path().join("elsewhere"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin = connect(&pki, env_port)
        .await
        .acting_as(ADMIN.parse().unwrap());
    admin
        .register_professional("Sanne", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    assert!(
        dir.path().join("elsewhere").is_dir(),
        "data went to SAMENOP_DATA_DIR"
    );
    assert!(
        !dir.path().join("data").exists(),
        "not to the file's data_dir"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", file_port)).is_err());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn dev_mode_creates_the_pki_and_serves_the_demo_network() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pki = PkiPaths::new(dir.path().join("pki"));
    let child = Command::new(BINARY)
        .arg("dev")
        .arg("--pki")
        .arg(&pki.dir)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env_remove("SAMENOP_LISTEN")
        .env_remove("SAMENOP_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = connect(&pki, port).await;
    let people =
        samenop_server::bootstrap::demo_people(DEMO_ORGANISATIONS, std::time::SystemTime::now());
    let contact = people
        .iter()
        .find(|p| {
            p.organisation == DEMO_ORGANISATIONS[0].slug
                && p.professional
                    .has_role(samenop_server::domain::Role::ContactPerson)
        })
        .unwrap();
    let specialists = client
        .acting_as(uuid::Uuid::from_bytes(*contact.professional.id.as_bytes()))
        .list_specialists(None, true)
        .await
        .unwrap();
    let covered: std::collections::HashSet<_> = specialists
        .iter()
        .flat_map(|s| s.expertise.clone())
        .collect();
    assert!(covered.contains(&samenop_client::Expertise::Child));
    assert!(covered.contains(&samenop_client::Expertise::Adult));
    for value in 1..=8 {
        let kind = samenop_client::ViolenceType::try_from(value).unwrap();
        assert!(
            covered.contains(&samenop_client::Expertise::Violence(kind)),
            "{kind:?}"
        );
    }

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("samenop dev server on 127.0.0.1:{port}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&contact.professional.id.to_string()),
        "{stdout}"
    );
    assert!(stdout.contains("grpcurl"), "{stdout}");
    let key = std::fs::metadata(pki.org_key(DEMO_ORGANISATIONS[0].slug)).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
}

#[tokio::test]
async fn a_subscription_resumes_after_sigkill_without_loss_or_repeat() {
    use samenop_client::{
        Expertise, ViolenceType,
        consult::{About, NewConsult, Urgency},
        mls::{EventKind, Messenger},
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (pki, text) = setup(dir.path(), port);
    let path = write_config(dir.path(), &text);
    let mut server = start(&path, port);
    let client = connect(&pki, port).await;
    let admin = client.acting_as(ADMIN.parse().unwrap());
    let abuse = Expertise::Violence(ViolenceType::ChildAbuse);
    let sanne = admin
        .register_professional("Sanne", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    admin
        .register_professional("Eva", &[Role::Specialist], &[abuse])
        .await
        .unwrap();
    let sanne = client.acting_as(sanne.id);
    let consult = sanne
        .open_consult(&NewConsult {
            about: About::Anonymous,
            question: "Anonieme vraag".into(),
            expertise: abuse,
            urgency: Urgency::Normal,
            respond_by: None,
            specialist: None,
        })
        .await
        .unwrap();
    let state = dir.path().join("sanne-device");
    let device = Messenger::open(&sanne, &state, "werkplek").await.unwrap();
    device.create_thread(consult.id).await.unwrap();
    for text in ["een", "twee"] {
        device.send(consult.id, text, None).await.unwrap();
    }
    // Each of the device's own messages is an event for it, in order.
    let mut events = device.subscribe(None).await.unwrap();
    let mut cursor = String::new();
    for expected in [1, 2] {
        let event = within("the device's own message", events.next())
            .await
            .unwrap()
            .unwrap();
        let EventKind::ThreadEntry(entry) = event.kind else {
            panic!("a thread entry");
        };
        assert_eq!(entry.sequence, expected);
        cursor = event.cursor;
    }

    server.child().kill().unwrap(); // SIGKILL: no shutdown, no flush
    server.child().wait().unwrap();
    assert!(
        !matches!(
            within("the stream to break with the server", events.next()).await,
            Ok(Some(_))
        ),
        "the stream breaks with the server"
    );
    let mut server = start(&path, port);
    connect(&pki, port).await;
    // The same connection settings reconnect by themselves.
    device.send(consult.id, "drie", None).await.unwrap();
    let mut resumed = device.subscribe(Some(&cursor)).await.unwrap();
    let event = within("the event after the cursor", resumed.next())
        .await
        .unwrap()
        .unwrap();
    let EventKind::ThreadEntry(entry) = event.kind else {
        panic!("a thread entry");
    };
    assert_eq!(
        entry.sequence, 3,
        "the first event after the cursor, no repeat"
    );
    // Live again: the next message arrives on the resumed stream.
    device.send(consult.id, "vier", None).await.unwrap();
    let event = within("the live message on the resumed stream", resumed.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(event.kind, EventKind::ThreadEntry(e) if e.sequence == 4));
    server.child().kill().unwrap();
    server.child().wait().unwrap();
}

#[tokio::test]
async fn offline_audit_verify_catches_removed_last_events_by_the_signed_checkpoint() {
    use prost::Message;
    use samenop_server::store::{
        Batch, Keyspace, Store,
        audit::{AuditEntry, HEAD_KEY, Head},
        redb::RedbStore,
    };

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (pki, text) = setup(dir.path(), port);
    let path = write_config(dir.path(), &text);
    let server = start(&path, port);
    let admin = connect(&pki, port).await.acting_as(ADMIN.parse().unwrap());
    for name in ["Sanne", "Eva", "Pim", "Noor"] {
        admin
            .register_professional(name, &[Role::ContactPerson], &[])
            .await
            .unwrap();
    }
    drop(admin);
    // A graceful stop signs a checkpoint of the chain's end (event 5).
    let stopped = server.terminate().await;
    assert!(stopped.status.success());
    let data = dir.path().join("data");
    let key = std::fs::metadata(data.join("audit-ed25519.pk8")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );

    // Someone with the disk removes the last two events and rewrites the
    // head so that the chain itself looks whole.
    {
        let store = RedbStore::open(&data).unwrap();
        let raw = store
            .get(Keyspace::Audit, &3u64.to_be_bytes())
            .await
            .unwrap()
            .unwrap();
        let third = AuditEntry::decode(raw.as_slice()).unwrap();
        let mut batch = Batch::new();
        for sequence in [4u64, 5] {
            batch.delete(Keyspace::Audit, sequence.to_be_bytes().to_vec());
        }
        let head = Head {
            sequence: 3,
            hash: third.hash.as_slice().try_into().unwrap(),
        };
        batch.put(Keyspace::Meta, HEAD_KEY.to_vec(), head.encode());
        store.commit(batch).await.unwrap();
    }

    let verified = verify_offline(&data);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(verified.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("first broken event 4 (AUDIT_CHAIN_FAULT_TRUNCATED)"),
        "{stdout}"
    );
}
