//! The two servers of a run, each its own process: the real
//! `samenop-server dev` (its own data directory and port, durable store,
//! the development PKI and demo network) and the bare echo server on the
//! same PKI and TLS configuration; and clients of both.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use samenop_client::{
    Client, ClientConfig,
    consult::{About, NewConsult, Urgency},
};
use tokio::{io::AsyncBufReadExt, process::Child};
use uuid::Uuid;

/// A server process, killed when dropped.
pub(crate) struct Process {
    /// The child.
    child: Child,
    /// Its pid.
    pub(crate) pid: u32,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Where it serves its metrics (plain HTTP), if it does.
    pub(crate) metrics: Option<SocketAddr>,
}

/// What serves with the samenop server `pid` of a run: where its metrics
/// are, the other replicas, and the PostgreSQL cluster's postmaster.
#[derive(Debug, Clone, Default)]
struct Serving {
    /// Its `/metrics`.
    metrics: Option<SocketAddr>,
    /// The other replicas' pids.
    replicas: Vec<u32>,
    /// The postmaster's pid, when the store is a PostgreSQL cluster here.
    postmaster: Option<u32>,
}

/// The samenop servers of this run (a run may start several networks in
/// turn), by the pid of the first replica.
static SERVERS: std::sync::Mutex<Vec<(u32, Serving)>> = std::sync::Mutex::new(Vec::new());

fn serving(pid: u32) -> Option<Serving> {
    SERVERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|(server, _)| *server == pid)
        .map(|(_, serving)| serving.clone())
}

/// Where the metrics of the process `pid` are, when it is a samenop
/// server of this run.
pub(crate) fn metrics_of(pid: u32) -> Option<SocketAddr> {
    serving(pid).and_then(|s| s.metrics)
}

/// CPU seconds of process `pid` and, when it is the first replica of a
/// samenop server of this run, of everything serving with it: the other
/// replicas and the PostgreSQL cluster's processes.
pub(crate) fn cpu_of(pid: u32) -> f64 {
    let own = crate::sys::cpu_seconds(Some(pid));
    let Some(serving) = serving(pid) else {
        return own;
    };
    own + serving
        .replicas
        .iter()
        .map(|p| crate::sys::cpu_seconds(Some(*p)))
        .sum::<f64>()
        + serving
            .postmaster
            .map_or(0.0, crate::sys::cpu_seconds_with_children)
}

/// What the server's `/metrics` says of its store.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StoreFigures {
    /// Durable write transactions (`samenop_store_syncs_total`).
    pub(crate) syncs: f64,
    /// Write transactions (`samenop_store_commit_batches_count`).
    pub(crate) commits: f64,
    /// Batches they carried (`samenop_store_commit_batches_sum`).
    pub(crate) batches: f64,
}

/// Reads the store's figures from the metrics at `addr` (zero when they
/// cannot be read: the echo server has none).
pub(crate) fn scrape(addr: Option<SocketAddr>) -> StoreFigures {
    let Some(text) = addr.and_then(|addr| metrics_text(addr).ok()) else {
        return StoreFigures::default();
    };
    let value = |name: &str| {
        text.lines()
            .find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    StoreFigures {
        syncs: value("samenop_store_syncs_total"),
        commits: value("samenop_store_commit_batches_count"),
        batches: value("samenop_store_commit_batches_sum"),
    }
}

/// The whole text of the server's `/metrics`.
pub(crate) fn metrics_text(addr: SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut text = String::new();
    std::net::TcpStream::connect(addr)
        .and_then(|mut stream| {
            stream.write_all(
                b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )?;
            stream.read_to_string(&mut text)
        })
        .map_err(|e| format!("cannot read the metrics: {e}"))?;
    Ok(text
        .split_once("\r\n\r\n")
        .map_or(text.clone(), |(_, body)| body.to_owned()))
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A demo professional.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    /// The organisation's slug.
    pub(crate) organisation: String,
    /// Their id.
    pub(crate) id: Uuid,
    /// Their name.
    pub(crate) name: String,
}

/// Where the samenop server of a run keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The embedded store in its data directory.
    Embedded,
    /// A throwaway PostgreSQL cluster of this machine's PostgreSQL (fsync
    /// on, its defaults), with this many server replicas on it.
    Postgres(usize),
}

impl Backend {
    /// What the report appends to each figure's name.
    pub(crate) fn suffix(self) -> String {
        match self {
            Backend::Embedded => String::new(),
            Backend::Postgres(replicas) => format!(".pg{replicas}"),
        }
    }
}

/// The run's servers and what clients need to reach them.
pub(crate) struct Network {
    /// The real server (its first replica).
    pub(crate) server: Process,
    /// Its other replicas, on the same database (none on the embedded
    /// store).
    pub(crate) replicas: Vec<Process>,
    /// The bare echo server.
    pub(crate) echo: Process,
    /// The PKI.
    pub(crate) pki: samenop_certs_dev::PkiPaths,
    /// The demo network's people.
    pub(crate) people: Vec<Person>,
    /// The server's data directory.
    pub(crate) data_dir: PathBuf,
    /// The database, when on PostgreSQL (dropped after the servers: the
    /// cluster stops).
    _database: Option<samenop_server::store::postgres::throwaway::Database>,
    /// Everything of the run (kept until the network is dropped).
    _dir: tempfile::TempDir,
}

/// A free loopback port (bound and released: the server binds it next).
fn free_port() -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map_err(|e| e.to_string())
}

/// The `samenop-server` binary: `explicit`, else the one beside this
/// binary (built first when run by cargo, so it is never stale).
pub(crate) fn server_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = me.parent().ok_or("this binary has no directory")?;
    let path = dir.join("samenop-server");
    if let Ok(cargo) = std::env::var("CARGO") {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut build = std::process::Command::new(cargo);
        build.args([
            "build",
            "--quiet",
            "-p",
            "samenop-server",
            "--bin",
            "samenop-server",
        ]);
        if release {
            build.arg("--release");
        }
        let status = build
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err("building samenop-server failed".into());
        }
    }
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no samenop-server beside this binary ({}): build it with `cargo build --release -p \
             samenop-server`, or name it with --server",
            path.display()
        ))
    }
}

/// Starts `samenop-server dev` on `pki_dir` and `data_dir` (on the
/// database `postgres` when given), logging to `log`.
fn start_server(
    server_binary: &Path,
    pki_dir: &Path,
    data_dir: &Path,
    postgres: Option<&str>,
    log: &Path,
) -> Result<Process, String> {
    let addr = free_port()?;
    let admin = free_port()?;
    let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(server_binary);
    command
        .arg("dev")
        .arg("--pki")
        .arg(pki_dir)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--admin-listen")
        .arg(admin.to_string());
    if let Some(url) = postgres {
        command.arg("--postgres").arg(url);
    }
    let child = command
        .env("SAMENOP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", server_binary.display()))?;
    let pid = child.id().ok_or("the server ended at once")?;
    Ok(Process {
        child,
        pid,
        addr,
        metrics: Some(admin),
    })
}

impl Network {
    /// Starts the real server (its replicas on `backend`) and the echo
    /// server, and waits until every one answers.
    pub(crate) async fn start(server_binary: &Path, backend: Backend) -> Result<Network, String> {
        let dir = tempfile::Builder::new()
            .prefix("samenop-bench-")
            .tempdir_in(
                std::env::var_os("SAMENOP_BENCH_DIR")
                    .map_or_else(std::env::temp_dir, PathBuf::from),
            )
            .map_err(|e| format!("cannot make the run's directory: {e}"))?;
        let pki_dir = dir.path().join("pki");
        let data_dir = dir.path().join("data");
        let (database, replicas) = match backend {
            Backend::Embedded => (None, 1),
            Backend::Postgres(replicas) => {
                let database = samenop_server::store::postgres::throwaway::open()
                    .await?
                    .ok_or(
                        "no PostgreSQL to run on: install it (apt-get install postgresql: initdb \
                         and pg_ctl), or name a server in SAMENOP_TEST_POSTGRES_URL",
                    )?;
                (Some(database), replicas.max(1))
            }
        };
        let url = database.as_ref().map(|d| d.url().to_owned());
        let log = |n: usize| dir.path().join(format!("server-{n}.log"));
        let server = start_server(server_binary, &pki_dir, &data_dir, url.as_deref(), &log(0))?;
        let pki = samenop_certs_dev::PkiPaths::new(pki_dir.clone());
        let network_file = pki_dir.join(samenop_server::dev::NETWORK_FILE);
        let started = Instant::now();
        while !network_file.is_file() {
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "the server did not start; its log: {}",
                    std::fs::read_to_string(log(0)).unwrap_or_default()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let people = read_people(&network_file)?;
        // The other replicas start once the first has made the PKI, the
        // audit key (in the shared data directory) and the demo network.
        let mut others = Vec::new();
        for n in 1..replicas {
            others.push(start_server(
                server_binary,
                &pki_dir,
                &data_dir,
                url.as_deref(),
                &log(n),
            )?);
        }
        SERVERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((
                server.pid,
                Serving {
                    metrics: server.metrics,
                    replicas: others.iter().map(|p| p.pid).collect(),
                    postmaster: database.as_ref().and_then(|d| d.postmaster_pid()),
                },
            ));
        let echo = start_echo(&pki_dir).await?;
        let network = Network {
            server,
            replicas: others,
            echo,
            pki,
            people,
            data_dir,
            _database: database,
            _dir: dir,
        };
        let mut all: Vec<SocketAddr> = network.servers().collect();
        all.push(network.echo.addr);
        for addr in all {
            let started = Instant::now();
            loop {
                match Client::connect(network.config_for(addr, "wijkteam-demostad-oost")).await {
                    Ok(client)
                        if client.health().await.unwrap_or(false) || addr == network.echo.addr =>
                    {
                        break;
                    }
                    _ if started.elapsed() > Duration::from_secs(30) => {
                        return Err(format!("{addr} does not answer"));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(network)
    }

    /// Where every replica of the real server listens, the first first.
    pub(crate) fn servers(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.server.addr).chain(self.replicas.iter().map(|r| r.addr))
    }

    /// The client configuration of `organisation` for the server at `addr`.
    pub(crate) fn config_for(&self, addr: SocketAddr, organisation: &str) -> ClientConfig {
        ClientConfig {
            endpoint: format!("https://localhost:{}", addr.port()),
            server_name: Some("localhost".into()),
            ca_certificate_pem: std::fs::read(self.pki.ca_cert()).unwrap_or_default(),
            certificate_pem: std::fs::read(self.pki.org_cert(organisation)).unwrap_or_default(),
            private_key_pem: std::fs::read(self.pki.org_key(organisation)).unwrap_or_default(),
            timeout: Duration::from_secs(60),
        }
    }

    /// A new connection to the real server (its first replica) as
    /// `person`'s organisation, acting for them.
    pub(crate) async fn connect(&self, person: &Person) -> Result<Client, String> {
        self.connect_to(0, person).await
    }

    /// Like [`Network::connect`], to replica `n` modulo their number: how
    /// a load spreads its connections over the replicas.
    pub(crate) async fn connect_to(&self, n: usize, person: &Person) -> Result<Client, String> {
        let servers: Vec<SocketAddr> = self.servers().collect();
        let addr = servers[n % servers.len()];
        Client::connect(self.config_for(addr, &person.organisation))
            .await
            .map(|c| c.acting_as(person.id))
            .map_err(|e| format!("cannot connect: {e}"))
    }

    /// A new connection to the echo server (with the same certificate).
    pub(crate) async fn connect_echo(&self) -> Result<Client, String> {
        Client::connect(self.config_for(self.echo.addr, "wijkteam-demostad-oost"))
            .await
            .map_err(|e| format!("cannot connect to the echo server: {e}"))
    }

    /// The demo professional whose name starts with `name`.
    pub(crate) fn person(&self, name: &str) -> Result<Person, String> {
        self.people
            .iter()
            .find(|p| p.name.starts_with(name))
            .cloned()
            .ok_or_else(|| format!("no {name} in the demo network"))
    }
}

fn read_people(file: &Path) -> Result<Vec<Person>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let network: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let people = network["people"]
        .as_array()
        .ok_or("the network lists no people")?;
    people
        .iter()
        .map(|p| {
            Ok(Person {
                organisation: p["organisation"].as_str().unwrap_or_default().to_owned(),
                id: p["id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .ok_or("a person without an id")?,
                name: p["name"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// Starts this binary's echo server on the PKI in `pki`.
async fn start_echo(pki: &Path) -> Result<Process, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(me)
        .arg("echo-server")
        .arg("--pki")
        .arg(pki)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the echo server: {e}"))?;
    let pid = child.id().ok_or("the echo server ended at once")?;
    let stdout = child.stdout.take().ok_or("no output of the echo server")?;
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    let addr = line
        .trim()
        .parse()
        .map_err(|_| format!("the echo server said {line:?}, not its address"))?;
    Ok(Process {
        child,
        pid,
        addr,
        metrics: None,
    })
}

/// `message` as a request acting for `professional`.
pub(crate) fn acting<T>(professional: Uuid, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = professional.to_string().parse() {
        request
            .metadata_mut()
            .insert(samenop_proto::PROFESSIONAL_METADATA_KEY, value);
    }
    request
}

/// The bare echo call of `payload` over `channels` (task t on channel t
/// modulo their number).
pub(crate) fn echo_call(
    channels: Vec<tonic::transport::Channel>,
    payload: Vec<u8>,
) -> crate::run::Call {
    use crate::echo::pb::{EchoRequest, echo_service_client::EchoServiceClient};
    let channels = std::sync::Arc::new(channels);
    crate::run::call(move |task, _| {
        let channel = channels[task % channels.len()].clone();
        let payload = payload.clone();
        async move {
            EchoServiceClient::new(channel)
                .echo(EchoRequest { payload })
                .await
                .map(drop)
                .map_err(|s| format!("echo: {s}"))
        }
    })
}

/// An accepted anonymous consult of `contact` with `specialist`.
pub(crate) async fn accepted_consult(
    contact: &Client,
    specialist: &Client,
) -> Result<Uuid, String> {
    let consult = contact
        .open_consult(&NewConsult {
            about: About::Anonymous,
            question: "Hoe wegen wij deze signalen?".into(),
            expertise: samenop_client::Expertise::Violence(
                samenop_client::ViolenceType::ChildAbuse,
            ),
            urgency: Urgency::Normal,
            respond_by: None,
            specialist: specialist.professional(),
        })
        .await
        .map_err(|e| format!("cannot open a consult: {e}"))?
        .id;
    specialist
        .accept_consult(consult)
        .await
        .map_err(|e| format!("cannot accept a consult: {e}"))?;
    Ok(consult)
}

/// One GetProfessional call on `channel` for `professional`, acting as them.
pub(crate) async fn get_professional(
    channel: tonic::transport::Channel,
    professional: Uuid,
) -> Result<(), String> {
    use samenop_proto::v1::{
        GetProfessionalRequest, directory_service_client::DirectoryServiceClient,
    };
    DirectoryServiceClient::new(channel)
        .get_professional(acting(
            professional,
            GetProfessionalRequest {
                professional_id: professional.to_string(),
            },
        ))
        .await
        .map(drop)
        .map_err(|s| format!("GetProfessional: {s}"))
}

/// Posts the ciphertext `message` of `device` to `consult` on `channel`,
/// acting for `professional`, under a fresh request id.
pub(crate) async fn post_sealed(
    channel: tonic::transport::Channel,
    professional: Uuid,
    consult: Uuid,
    device: Uuid,
    message: Vec<u8>,
) -> Result<(), String> {
    use samenop_proto::v1::{PostMessageRequest, thread_service_client::ThreadServiceClient};
    ThreadServiceClient::new(channel)
        .post_message(acting(
            professional,
            PostMessageRequest {
                consult_id: consult.to_string(),
                device_id: device.to_string(),
                mls_message: message,
                request_id: Uuid::new_v4().to_string(),
            },
        ))
        .await
        .map(drop)
        .map_err(|s| format!("PostMessage: {s}"))
}

/// Registers a new device (a fresh Ed25519 key) of `professional`, acting
/// for them on `channel`; its id.
pub(crate) async fn register_device(
    channel: tonic::transport::Channel,
    professional: Uuid,
) -> Result<Uuid, String> {
    use ring::signature::KeyPair as _;
    use samenop_proto::v1::{
        RegisterDeviceRequest, directory_service_client::DirectoryServiceClient,
    };
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "a key")?;
    let key = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "a key")?;
    let registered = DirectoryServiceClient::new(channel)
        .register_device(acting(
            professional,
            RegisterDeviceRequest {
                professional_id: professional.to_string(),
                signature_public_key: key.public_key().as_ref().to_vec(),
                label: "bench".into(),
            },
        ))
        .await
        .map_err(|s| format!("cannot register a device: {s}"))?
        .into_inner()
        .device
        .ok_or("no device in the answer")?;
    registered
        .device_id
        .parse()
        .map_err(|_| "a device id that is not a UUID".into())
}

/// A device of `client`'s professional with its state in `dir`, holding
/// the new thread of `consult`.
pub(crate) async fn thread_device(
    client: &Client,
    dir: &Path,
    consult: Uuid,
) -> Result<samenop_client::mls::Messenger, String> {
    let device = samenop_client::mls::Messenger::open(client, dir, "bench")
        .await
        .map_err(|e| format!("cannot open a device: {e}"))?;
    device
        .create_thread(consult)
        .await
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(device)
}
