//! The `samenop-agent` binary itself, two of them (one per organisation),
//! against a real server with the demo network (in this process, on
//! loopback over mutual TLS), called over their Unix sockets (and one over
//! TCP with its token) with the generated `samenop.v1` and
//! `samenop.agent.v1` stubs, as a system in another language would.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use samenop_proto::{
    PROFESSIONAL_METADATA_KEY,
    agent::v1::{
        self as agent, agent_service_client::AgentServiceClient, watch_response::Event as Seen,
    },
    v1::{
        self, audit_service_client::AuditServiceClient,
        consult_service_client::ConsultServiceClient,
        directory_service_client::DirectoryServiceClient,
        family_service_client::FamilyServiceClient, thread_service_client::ThreadServiceClient,
    },
};
use samenop_tests::{TestServer, within};
use tempfile::TempDir;
use tonic::{Code, Request, transport::Channel};
use uuid::{Uuid, uuid};

const BINARY: &str = env!("CARGO_BIN_EXE_samenop-agent");

/// Demo people (their ids are derived from their names, the same in every
/// demo network).
const SANNE: Uuid = uuid!("248df1e1-1206-8b0a-9b05-957c9d5abc80");
const ILSE: Uuid = uuid!("269dd6b0-0479-8f67-954a-0f6b8af9f19e");
const JEROEN: Uuid = uuid!("5b8d0bea-ca30-8725-a651-bb48fd0f4ff4");
const WIJKTEAM: &str = "wijkteam-demostad-oost";
const VEILIG_THUIS: &str = "veilig-thuis-demoregio";

/// One agent process, for one organisation, with its data directory.
struct Agent {
    child: Option<Child>,
    config: PathBuf,
    data: PathBuf,
    socket: PathBuf,
}

impl Agent {
    /// Writes the configuration of an agent for `org` under `dir`.
    fn configure(server: &TestServer, org: &str, dir: &Path, extra: &str) -> Agent {
        let data = dir.join("data");
        let config = dir.join("agent.toml");
        let pki = &server.pki;
        std::fs::write(
            &config,
            format!(
                "server = \"{}\"\nserver_name = \"localhost\"\nca = \"{}\"\ncertificate = \"{}\"\nkey = \"{}\"\ndata_dir = \"{}\"\n{extra}",
                server.endpoint(),
                pki.ca_cert().display(),
                pki.org_cert(org).display(),
                pki.org_key(org).display(),
                data.display(),
            ),
        )
        .unwrap();
        Agent {
            child: None,
            config,
            socket: data.join("run").join("agent.sock"),
            data,
        }
    }

    fn command(&self, sub: &str) -> Command {
        let mut command = Command::new(BINARY);
        command
            .args([sub, "--config"])
            .arg(&self.config)
            .env("SAMENOP_AGENT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Starts the agent and waits until its socket answers.
    async fn start(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        self.child = Some(self.command("run").spawn().unwrap());
        let socket = self.socket.clone();
        within("the agent to listen", async {
            while !socket.exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Kills the agent at once (no shutdown).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn channel(&self) -> Channel {
        unix_channel(self.socket.clone()).await
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn unix_channel(path: PathBuf) -> Channel {
    tonic::transport::Endpoint::from_static("http://agent")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .unwrap()
}

/// `message` acting for `who`.
fn acting<T>(who: Uuid, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(PROFESSIONAL_METADATA_KEY, who.to_string().parse().unwrap());
    request
}

fn partner_violence() -> v1::Expertise {
    v1::Expertise {
        domain: v1::ExpertiseDomain::Violence as i32,
        violence_type: v1::ViolenceType::PartnerViolence as i32,
    }
}

/// The demo server and two agents: the wijkteam's (Sanne) and Veilig
/// Thuis's (Jeroen).
struct Setup {
    server: TestServer,
    wijkteam: Agent,
    veilig_thuis: Agent,
    _dir: TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let server = TestServer::start_demo().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        let mut wijkteam = Agent::configure(&server, WIJKTEAM, &dir.path().join("a"), "");
        let mut veilig_thuis = Agent::configure(&server, VEILIG_THUIS, &dir.path().join("b"), "");
        wijkteam.start().await;
        veilig_thuis.start().await;
        Setup {
            server,
            wijkteam,
            veilig_thuis,
            _dir: dir,
        }
    }
}

/// A Watch and what it has shown.
struct Watching {
    stream: tonic::Streaming<agent::WatchResponse>,
    cursor: String,
}

impl Watching {
    async fn start(channel: Channel, who: Uuid, cursor: &str) -> Watching {
        let stream = AgentServiceClient::new(channel)
            .watch(acting(
                who,
                agent::WatchRequest {
                    cursor: cursor.to_owned(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        Watching {
            stream,
            cursor: cursor.to_owned(),
        }
    }

    /// The next event that `wanted` picks, skipping others.
    async fn until<T>(&mut self, what: &str, wanted: impl Fn(&Seen) -> Option<T>) -> T {
        within(what, async {
            loop {
                let event = self
                    .stream
                    .message()
                    .await
                    .unwrap()
                    .expect("the watch ended");
                self.cursor.clone_from(&event.cursor);
                if let Some(found) = event.event.as_ref().and_then(&wanted) {
                    return found;
                }
            }
        })
        .await
    }

    /// The next message shown.
    async fn message(&mut self) -> agent::Message {
        self.until("a message", |e| match e {
            Seen::Message(m) => Some(m.clone()),
            _ => None,
        })
        .await
    }
}

/// Sanne opens an anonymous partner-violence consult to the pool through
/// her agent; Jeroen, watching through his, accepts it. Returns the consult
/// and Jeroen's watch.
async fn accepted_consult(s: &Setup) -> (String, Watching) {
    let mut jeroen = Watching::start(s.veilig_thuis.channel().await, JEROEN, "").await;
    let consult = ConsultServiceClient::new(s.wijkteam.channel().await)
        .open_consult(acting(
            SANNE,
            v1::OpenConsultRequest {
                kind: v1::ConsultKind::Anonymous as i32,
                question_summary: "Hoe schatten jullie de veiligheid in?".into(),
                expertise: Some(partner_violence()),
                urgency: v1::Urgency::Soon as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .consult
        .unwrap()
        .consult_id;
    let requested = jeroen
        .until("the request in Jeroen's watch", |e| match e {
            Seen::Consult(c) => c.consult.as_ref().map(|v| v.consult_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(requested, consult);
    ConsultServiceClient::new(s.veilig_thuis.channel().await)
        .accept_consult(acting(
            JEROEN,
            v1::AcceptConsultRequest {
                consult_id: consult.clone(),
            },
        ))
        .await
        .unwrap();
    (consult, jeroen)
}

async fn send(channel: Channel, who: Uuid, consult: &str, text: &str) -> u64 {
    AgentServiceClient::new(channel)
        .send_message(acting(
            who,
            agent::SendMessageRequest {
                consult_id: consult.to_owned(),
                text: text.to_owned(),
                reply_to_sequence: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_calls_answer_and_are_audited_as_direct_ones() {
    let s = Setup::new().await;
    let via_agent = s.wijkteam.channel().await;
    let direct = s.server.connect(WIJKTEAM).await.channel();

    // The same answer, unary.
    let list = |channel: Channel| async move {
        DirectoryServiceClient::new(channel)
            .list_specialists(acting(
                SANNE,
                v1::ListSpecialistsRequest {
                    expertise: Some(partner_violence()),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
    };
    assert_eq!(list(via_agent.clone()).await, list(direct.clone()).await);

    // The same audit event: action, outcome, organisation, professional.
    let register = |channel: Channel| async move {
        FamilyServiceClient::new(channel)
            .register_family(acting(
                SANNE,
                v1::RegisterFamilyRequest {
                    members: vec![v1::FamilyMember {
                        role: v1::FamilyMemberRole::ParentOrCarer as i32,
                        age_band: v1::AgeBand::From16 as i32,
                        ..Default::default()
                    }],
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .family
            .unwrap()
    };
    let one = register(direct.clone()).await;
    let two = register(via_agent.clone()).await;
    assert_eq!(two.contact_person, one.contact_person);
    let trail = |family: String| {
        let direct = direct.clone();
        async move {
            AuditServiceClient::new(direct)
                .query_audit(acting(
                    ILSE,
                    v1::QueryAuditRequest {
                        filter: Some(v1::AuditFilter {
                            family_id: family,
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .events
        }
    };
    let seen = |events: Vec<v1::AuditEvent>| {
        events
            .into_iter()
            .map(|e| {
                let actor = e.actor.unwrap();
                (
                    e.action,
                    e.outcome,
                    actor.organisation_oin,
                    actor.professional_id,
                )
            })
            .collect::<Vec<_>>()
    };
    let direct_trail = seen(trail(one.family_id).await);
    assert!(!direct_trail.is_empty());
    assert_eq!(seen(trail(two.family_id).await), direct_trail);

    // Streams are relayed too: the audit export, as the privacy officer.
    let mut export = AuditServiceClient::new(via_agent.clone())
        .export_audit(acting(
            ILSE,
            v1::ExportAuditRequest {
                format: v1::AuditExportFormat::JsonLines as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut parts = 0;
    while within("the export", export.message())
        .await
        .unwrap()
        .is_some()
    {
        parts += 1;
    }
    assert!(parts > 0);

    // Refusals are the server's: Jeroen is not the wijkteam's.
    let refused = DirectoryServiceClient::new(via_agent.clone())
        .list_specialists(acting(JEROEN, v1::ListSpecialistsRequest::default()))
        .await
        .unwrap_err();
    let refused_direct = DirectoryServiceClient::new(direct.clone())
        .list_specialists(acting(JEROEN, v1::ListSpecialistsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(
        (refused.code(), refused.message()),
        (refused_direct.code(), refused_direct.message())
    );

    // Threads are the agent's: the server's thread calls are not relayed.
    let threads = ThreadServiceClient::new(via_agent.clone())
        .fetch_thread(acting(SANNE, v1::FetchThreadRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(threads.code(), Code::Unimplemented);
    assert!(threads.message().contains("AgentService"), "{threads:?}");
    // And a call must say who it acts for.
    let nobody = AgentServiceClient::new(via_agent)
        .read_thread(Request::new(agent::ReadThreadRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consult_through_two_agents_encrypted_end_to_end() {
    let s = Setup::new().await;
    let (consult, mut jeroen) = accepted_consult(&s).await;
    let sanne_channel = s.wijkteam.channel().await;
    let jeroen_channel = s.veilig_thuis.channel().await;

    // Sanne writes; Jeroen's agent adds nothing itself, it joins and reads.
    let first = send(
        sanne_channel.clone(),
        SANNE,
        &consult,
        "Moeder meldt dreiging door ex-partner.",
    )
    .await;
    let joined = jeroen
        .until("Jeroen's device joining", |e| match e {
            Seen::Membership(m) if m.joined => Some(m.consult_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(joined, consult);
    let read = jeroen.message().await;
    assert_eq!(
        (read.sequence, read.text.as_str(), read.own),
        (first, "Moeder meldt dreiging door ex-partner.", false)
    );
    assert_eq!(read.sender_professional_id, SANNE.to_string());

    // Jeroen answers with an attachment; Sanne reads and downloads it.
    let content: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let mut parts = vec![agent::SendAttachmentRequest {
        part: Some(agent::send_attachment_request::Part::Start(
            agent::AttachmentStart {
                consult_id: consult.clone(),
                text: "Het veiligheidsplan".into(),
                name: "plan.pdf".into(),
                media_type: "application/pdf".into(),
                size_bytes: content.len() as u64,
                reply_to_sequence: first,
            },
        )),
    }];
    parts.extend(
        content
            .chunks(300_000)
            .map(|c| agent::SendAttachmentRequest {
                part: Some(agent::send_attachment_request::Part::Chunk(c.to_vec())),
            }),
    );
    let sent = AgentServiceClient::new(jeroen_channel.clone())
        .send_attachment(acting(JEROEN, tokio_stream::iter(parts)))
        .await
        .unwrap()
        .into_inner();
    let thread = AgentServiceClient::new(sanne_channel.clone())
        .read_thread(acting(
            SANNE,
            agent::ReadThreadRequest {
                consult_id: consult.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let texts: Vec<(u64, &str, bool)> = thread
        .messages
        .iter()
        .map(|m| (m.sequence, m.text.as_str(), m.own))
        .collect();
    assert_eq!(
        texts,
        [
            (first, "Moeder meldt dreiging door ex-partner.", true),
            (sent.sequence, "Het veiligheidsplan", false)
        ]
    );
    assert_eq!(thread.messages[1].reply_to_sequence, first);
    let mut download = AgentServiceClient::new(sanne_channel.clone())
        .download_attachment(acting(
            SANNE,
            agent::DownloadAttachmentRequest {
                consult_id: consult.clone(),
                attachment_id: sent.attachment_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    let mut described = None;
    while let Some(part) = within("the download", download.message()).await.unwrap() {
        match part.part.unwrap() {
            agent::download_attachment_response::Part::Attachment(a) => described = Some(a),
            agent::download_attachment_response::Part::Chunk(c) => got.extend(c),
        }
    }
    let described = described.unwrap();
    assert_eq!(
        (described.name.as_str(), described.size_bytes),
        ("plan.pdf", content.len() as u64)
    );
    assert_eq!(got, content);

    // What the server holds is ciphertext only.
    assert!(
        samenop_tests::files_containing(&s.server.data_dir, b"dreiging door ex-partner").is_empty()
    );

    // Paging: one at a time.
    let page = AgentServiceClient::new(sanne_channel.clone())
        .read_thread(acting(
            SANNE,
            agent::ReadThreadRequest {
                consult_id: consult.clone(),
                after_sequence: 0,
                page_size: 1,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((page.messages.len(), page.more), (1, true));

    // Bad input is refused, naming what is wrong.
    let empty = AgentServiceClient::new(sanne_channel.clone())
        .send_message(acting(
            SANNE,
            agent::SendMessageRequest {
                consult_id: consult.clone(),
                text: "  ".into(),
                reply_to_sequence: 0,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let short = AgentServiceClient::new(jeroen_channel)
        .send_attachment(acting(
            JEROEN,
            tokio_stream::iter(vec![agent::SendAttachmentRequest {
                part: Some(agent::send_attachment_request::Part::Start(
                    agent::AttachmentStart {
                        consult_id: consult.clone(),
                        name: "kort.txt".into(),
                        size_bytes: 10,
                        ..Default::default()
                    },
                )),
            }]),
        ))
        .await
        .unwrap_err();
    assert_eq!(short.code(), Code::InvalidArgument);
    assert!(short.message().contains("add up to 0 bytes"), "{short:?}");

    // Closed: a post is refused with the server's reason.
    ConsultServiceClient::new(sanne_channel.clone())
        .close_consult(acting(
            SANNE,
            v1::CloseConsultRequest {
                consult_id: consult.clone(),
                outcome: v1::ConsultOutcome::JointApproach as i32,
            },
        ))
        .await
        .unwrap();
    let closed = AgentServiceClient::new(sanne_channel)
        .send_message(acting(
            SANNE,
            agent::SendMessageRequest {
                consult_id: consult,
                text: "Nog iets".into(),
                reply_to_sequence: 0,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(closed.code(), Code::FailedPrecondition, "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_the_agent_and_the_server_restart_without_loss_or_repeat() {
    let mut s = Setup::new().await;
    let (consult, mut jeroen) = accepted_consult(&s).await;
    let sanne = s.wijkteam.channel().await;
    send(sanne.clone(), SANNE, &consult, "een").await;
    assert_eq!(jeroen.message().await.text, "een");
    let cursor = jeroen.cursor.clone();
    drop(jeroen);

    // Jeroen's agent dies; Sanne writes on.
    s.veilig_thuis.kill();
    send(sanne.clone(), SANNE, &consult, "twee").await;
    send(sanne.clone(), SANNE, &consult, "drie").await;
    s.veilig_thuis.start().await;
    let mut jeroen = Watching::start(s.veilig_thuis.channel().await, JEROEN, &cursor).await;
    assert_eq!(
        jeroen.message().await.text,
        "twee",
        "the next, not a repeat"
    );
    assert_eq!(jeroen.message().await.text, "drie");

    // The server restarts; the watch goes on.
    s.server.restart().await;
    let sanne = s.wijkteam.channel().await;
    within("Sanne's send after the restart", async {
        loop {
            let sent = AgentServiceClient::new(sanne.clone())
                .send_message(acting(
                    SANNE,
                    agent::SendMessageRequest {
                        consult_id: consult.clone(),
                        text: "vier".into(),
                        reply_to_sequence: 0,
                    },
                ))
                .await;
            match sent {
                Ok(_) => return,
                Err(status) if status.code() == Code::Unavailable => {
                    // The message waits on Sanne's device and goes first
                    // with the next send, so only try again when nothing
                    // waits.
                    assert!(
                        !status.message().contains("waits on this device"),
                        "{status:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert_eq!(jeroen.message().await.text, "vier");

    // A cursor the agent never gave is refused.
    let wrong = AgentServiceClient::new(s.veilig_thuis.channel().await)
        .watch(acting(
            JEROEN,
            agent::WatchRequest {
                cursor: "999999".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_per_data_directory_its_socket_its_owners_and_sigterm_drains() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start_demo().await;
    let dir = tempfile::tempdir().unwrap();
    let mut first = Agent::configure(&server, WIJKTEAM, dir.path(), "");
    first.start().await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&first.socket), 0o600);
    assert_eq!(mode(first.socket.parent().unwrap()), 0o700);
    assert_eq!(mode(&first.data), 0o700);

    let second = first.command("run").output().unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(75), "{said}");
    let pid = first.child.as_ref().unwrap().id();
    assert!(
        said.contains("another samenop-agent owns the data directory")
            && said.contains(&format!("process {pid}")),
        "{said}"
    );
    // Another agent (another data directory) told the same socket does not
    // take it over.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Agent::configure(
        &server,
        VEILIG_THUIS,
        other_dir.path(),
        &format!("listen = \"unix:{}\"\n", first.socket.display()),
    );
    let taken = other.command("run").output().unwrap();
    let said = String::from_utf8_lossy(&taken.stderr);
    assert!(!taken.status.success(), "{said}");
    assert!(said.contains("another process listens on"), "{said}");
    // The first still serves.
    let answer = DirectoryServiceClient::new(first.channel().await)
        .list_specialists(acting(SANNE, v1::ListSpecialistsRequest::default()))
        .await;
    assert!(answer.is_ok(), "{answer:?}");

    // `check` says what is wrong with a configuration, before anything runs.
    std::fs::write(
        dir.path().join("bad.toml"),
        "server = \"http://localhost:1\"\nca = \"x\"\ncertificate = \"x\"\nkey = \"x\"\ndata_dir = \"d\"\n",
    )
    .unwrap();
    let bad = Command::new(BINARY)
        .args(["check", "--config"])
        .arg(dir.path().join("bad.toml"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("https://host:port"));
    let good = first
        .command("check")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(good.status.success());
    assert!(String::from_utf8_lossy(&good.stdout).contains("configuration ok"));

    // SIGTERM: a Watch in flight is told to resume, the agent drains, exits
    // 0 and takes its socket with it.
    let mut watching = Watching::start(first.channel().await, SANNE, "").await;
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let ended = within("the watch to end", watching.stream.message()).await;
    assert_eq!(ended.unwrap_err().code(), Code::Unavailable);
    let mut child = first.child.take().unwrap();
    let status = within(
        "the agent to exit",
        tokio::task::spawn_blocking(move || child.wait().unwrap()),
    )
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!first.socket.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_tcp_every_call_needs_the_token() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start_demo().await;
    let dir = tempfile::tempdir().unwrap();
    let token = "3f9c1d7e8a2b4c6d0e1f2a3b4c5d6e7f8091a2b3";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut tcp = Agent::configure(
        &server,
        WIJKTEAM,
        dir.path(),
        &format!(
            "listen = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    );
    tcp.child = Some(tcp.command("run").spawn().unwrap());
    let endpoint = format!("http://127.0.0.1:{port}");
    let channel = within("the agent on TCP", async {
        loop {
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(endpoint.clone())
                .unwrap()
                .connect()
                .await
            {
                return channel;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let call = |bearer: Option<&str>| {
        let mut request = acting(SANNE, v1::ListSpecialistsRequest::default());
        if let Some(bearer) = bearer {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
        }
        let channel = channel.clone();
        async move {
            DirectoryServiceClient::new(channel)
                .list_specialists(request)
                .await
        }
    };
    assert_eq!(call(None).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(
        call(Some("not-the-token")).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert!(call(Some(token)).await.is_ok());

    // A token others may read is refused at start.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = tcp.command("check").output().unwrap();
    assert_eq!(open.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&open.stderr).contains("chmod 600"));
}
