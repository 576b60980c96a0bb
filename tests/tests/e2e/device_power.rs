//! A device whose state is on the power-cut file system, run as its own
//! process: killed and power-cut right after a send was acknowledged and
//! right after a commit, it comes back with what it had acknowledged, never
//! encrypts with a key it already used, and reads and sends again. A send
//! writes durably once, before its ciphertext leaves; what its answer
//! changes is found again after a cut, by reading the thread or by the
//! next send.

use std::process::Stdio;

use samenop_client::{Expertise, Role, ViolenceType, mls::Messenger};
use samenop_powercut::{Cut, Mount};
use samenop_proto::v1;
use samenop_tests::{ORG_A, ORG_B, TestServer, accepted_anonymous_consult, thread_entries, within};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout},
};
use uuid::Uuid;

const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);

/// A device process (`samenop-test-device`).
struct DeviceProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl DeviceProcess {
    /// Starts the device of `professional` of organisation B with its
    /// state in `state`; returns it and its device id.
    async fn start(
        server: &TestServer,
        professional: Uuid,
        state: &std::path::Path,
    ) -> (Self, Uuid) {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_samenop-test-device"))
            .arg(server.endpoint())
            .arg(server.pki.ca_cert())
            .arg(server.pki.org_cert(ORG_B))
            .arg(server.pki.org_key(ORG_B))
            .arg(professional.to_string())
            .arg(state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the device process");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut device = DeviceProcess {
            child,
            stdin,
            stdout,
        };
        let ready = device.answer().await;
        let id = ready
            .strip_prefix("device ")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("the device did not start: {ready}"));
        (device, id)
    }

    async fn answer(&mut self) -> String {
        within("the device process to answer", self.stdout.next_line())
            .await
            .expect("its output")
            .expect("an answer before it ended")
    }

    /// Sends `command`; returns the answer, which must start with `expect`.
    async fn ask(&mut self, command: &str, expect: &str) -> String {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("its input");
        let answer = self.answer().await;
        assert!(answer.starts_with(expect), "{command}: {answer}");
        answer
    }

    /// SIGKILL, as at a power cut: nothing more reaches its files.
    async fn kill(mut self) {
        self.child.kill().await.expect("killed");
    }
}

#[tokio::test]
async fn a_device_cut_off_after_a_send_or_a_commit_comes_back_and_never_reuses_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut mount) = Mount::for_test(dir.path()) else {
        return;
    };
    let state = mount.path().join("eva");

    let server = TestServer::start().await;
    let sanne = server
        .professional(ORG_A, "Sanne", &[Role::ContactPerson], &[])
        .await;
    let eva = server
        .professional(ORG_B, "Eva", &[Role::Specialist], &[ABUSE])
        .await;
    let consult = accepted_anonymous_consult(&sanne, &eva).await;
    let sanne_dir = tempfile::tempdir().unwrap();
    let sanne_device = Messenger::open(&sanne, sanne_dir.path(), "werkplek")
        .await
        .unwrap();
    sanne_device.create_thread(consult).await.unwrap();

    let eva_id = eva.professional().unwrap();
    let (mut device, id) = DeviceProcess::start(&server, eva_id, &state).await;
    sanne_device.sync_members(consult).await.unwrap();
    device
        .ask(&format!("catch-up {consult}"), "caught-up")
        .await;

    // Cut right after reading: what was read was durable before it was
    // handed out (each message is written lazily, then one sync), so the
    // device does not read it again.
    for text in ["a", "b", "c"] {
        sanne_device.send(consult, text, None).await.unwrap();
    }
    assert_eq!(
        device
            .ask(&format!("catch-up {consult}"), "caught-up")
            .await,
        "caught-up 3"
    );
    device.kill().await;
    mount.power_cut(Cut::Clean).unwrap();
    let (mut device, _) = DeviceProcess::start(&server, eva_id, &state).await;
    assert_eq!(
        device
            .ask(&format!("catch-up {consult}"), "caught-up")
            .await,
        "caught-up 0"
    );

    // Cut right after an acknowledged send: reading the thread finds the
    // message the outbox still holds stored, and keeps it as its own.
    let sent = device.ask(&format!("send {consult} een"), "sent").await;
    let sequence = sent.trim_start_matches("sent ").to_owned();
    device.kill().await;
    mount.power_cut(Cut::Clean).unwrap();
    let (mut device, again) = DeviceProcess::start(&server, eva_id, &state).await;
    assert_eq!(again, id, "the same device, from its state on disk");
    device
        .ask(&format!("catch-up {consult}"), "caught-up")
        .await;
    assert_eq!(
        device.ask(&format!("pending {consult}"), "pending").await,
        "pending false"
    );
    assert_eq!(
        device.ask(&format!("own {consult}"), "own").await,
        format!("own {sequence}:een")
    );
    // Cut after a send again: the next send posts the waiting ciphertext
    // first, which the server answers with its sequence, stored once.
    let sent = device.ask(&format!("send {consult} twee"), "sent").await;
    let second = sent.trim_start_matches("sent ").to_owned();
    device.kill().await;
    mount.power_cut(Cut::Clean).unwrap();
    let (mut device, _) = DeviceProcess::start(&server, eva_id, &state).await;
    device.ask(&format!("send {consult} drie"), "sent").await;
    let own = device.ask(&format!("own {consult}"), "own").await;
    assert!(
        own.starts_with(&format!("own {sequence}:een {second}:twee ")),
        "{own}"
    );

    // Cut right after a commit, torn.
    device.ask(&format!("update {consult}"), "updated").await;
    device.kill().await;
    mount.power_cut(Cut::Torn { seed: 7 }).unwrap();
    let (mut device, _) = DeviceProcess::start(&server, eva_id, &state).await;
    device
        .ask(&format!("catch-up {consult}"), "caught-up")
        .await;
    device.ask(&format!("send {consult} vier"), "sent").await;
    device.kill().await;

    // The other member reads each message once, in order: a key used twice
    // would fail decryption, a count rolled back would be out of order.
    let read = sanne_device.catch_up(consult).await.unwrap();
    let texts: Vec<&str> = read.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["een", "twee", "drie", "vier"]);
    // And the server stored each ciphertext once.
    let stored: Vec<Vec<u8>> = thread_entries(&sanne, sanne_device.device(), consult)
        .await
        .into_iter()
        .filter(|e| {
            e.kind == v1::ThreadEntryKind::Application as i32
                && e.sender_device_id == id.to_string()
        })
        .map(|e| e.mls_message)
        .collect();
    assert_eq!(stored.len(), 4);
    for (n, message) in stored.iter().enumerate() {
        assert!(!stored[n + 1..].contains(message), "a ciphertext twice");
    }
}
