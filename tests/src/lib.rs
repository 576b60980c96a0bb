//! The end-to-end test fixture: a real samenop server on an ephemeral
//! loopback port, with a fresh development PKI and data directory, talked to
//! over real mutual TLS connections.
//!
//! The PKI holds every demo organisation plus one that the server's
//! configuration does not allow ([`NOT_ALLOWED`]). Each allowed organisation
//! gets a bootstrap ORG_ADMIN, from whom tests register everyone else.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test fixture: a failure is a test failure

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use samenop_certs_dev::{DEMO_ORGANISATIONS, Organisation, PkiPaths};
use samenop_client::{
    Client, ClientConfig, Expertise, ViolenceType,
    family::{AgeBand, ConsentRequest, Family, MemberAge, MemberRole, NewMember},
};
use samenop_server::{
    clock::ManualClock,
    config::{Config, FileConfig, FileOrganisation, FileTls, Overrides},
};
use tempfile::TempDir;
use tokio::{sync::oneshot, task::JoinHandle};
use uuid::Uuid;

/// With `postgres`, every [`TestServer`] keeps its data in a fresh database
/// of the PostgreSQL server `SAMENOP_TEST_POSTGRES_URL` names (or of a
/// throwaway cluster) instead of the embedded store: the suite runs once
/// on each (`the_suite_on_postgres` in `tests/e2e/main.rs`).
pub const STORE_VARIABLE: &str = "SAMENOP_E2E_STORE";

/// Whether this run of the suite is on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var(STORE_VARIABLE).as_deref() == Ok("postgres")
}

/// An organisation with a valid certificate from the trusted CA that the
/// server's configuration does not allow.
pub const NOT_ALLOWED: Organisation = Organisation {
    slug: "niet-toegelaten",
    name: "Niet Toegelaten Organisatie",
    oin: "00000099000000000099",
    kind: "wijkteam",
};

/// Organisation A of the tests (a wijkteam).
pub const ORG_A: &str = "wijkteam-demostad-oost";
/// Organisation B of the tests (Veilig Thuis).
pub const ORG_B: &str = "veilig-thuis-demoregio";

/// A running test server and everything needed to talk to it.
pub struct TestServer {
    /// The temporary directory holding the PKI and the data (removed on drop).
    dir: TempDir,
    /// The PKI's file paths.
    pub pki: PkiPaths,
    /// The server's data directory.
    pub data_dir: PathBuf,
    /// Where the server listens now.
    pub addr: SocketAddr,
    /// Where it serves `/metrics` and `/health` (plain HTTP) now.
    pub admin_addr: SocketAddr,
    /// The server's clock, which tests move by hand.
    pub clock: ManualClock,
    /// The bootstrap ORG_ADMIN of each allowed organisation, by slug.
    pub admins: HashMap<&'static str, Uuid>,
    /// The server's two ports (main, admin), held by sockets bound and not
    /// listening for as long as this value lives: while the server is
    /// stopped nobody else (another test's server, a connection's local
    /// port) takes them, and its clients, which reconnect to the same
    /// port, find it again or are refused until it is back.
    held: Vec<tokio::net::TcpSocket>,
    /// Organisations taken out of the configuration
    /// ([`TestServer::remove_organisation`]), by slug.
    removed: Vec<&'static str>,
    /// Whether the store syncs its commits (always, but for measuring what
    /// durability costs: [`TestServer::start_volatile`]).
    durable: bool,
    /// The PostgreSQL database the server keeps its data in, when the suite
    /// runs on PostgreSQL ([`STORE_VARIABLE`]); `None`: the embedded store
    /// in the data directory.
    postgres: Option<samenop_server::store::postgres::throwaway::Database>,
    /// Sends the shutdown signal.
    stop: Option<oneshot::Sender<()>>,
    /// The server task.
    task: Option<JoinHandle<Result<(), samenop_server::RunError>>>,
}

impl TestServer {
    /// Starts a server with a fresh PKI and an empty data directory.
    pub async fn start() -> TestServer {
        Self::start_with(true).await
    }

    /// Like [`TestServer::start`], with a store that does not sync its
    /// commits: only for measuring what durability costs.
    pub async fn start_volatile() -> TestServer {
        Self::start_with(false).await
    }

    /// Like [`TestServer::start`], with the demo network of `samenop-server
    /// dev` registered and its `demo-network.json` written beside the PKI,
    /// for the tools that use it.
    pub async fn start_demo() -> TestServer {
        let mut server = Self::start_with(true).await;
        server.stop().await;
        {
            let directory =
                samenop_server::store::directory::Directory::new(server.offline_store().await);
            let people = samenop_server::bootstrap::seed_demo_network(
                &directory,
                DEMO_ORGANISATIONS,
                server.clock_now(),
            )
            .await
            .expect("the demo network");
            samenop_server::dev::write_network(&server.pki, server.addr, None, &people)
                .expect("demo-network.json");
        }
        server.launch().await;
        server
    }

    async fn start_with(durable: bool) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = PkiPaths::new(dir.path().join("pki"));
        let mut orgs = DEMO_ORGANISATIONS.to_vec();
        orgs.push(NOT_ALLOWED);
        samenop_certs_dev::generate(&pki, &orgs).expect("PKI");
        let admins = DEMO_ORGANISATIONS
            .iter()
            .map(|org| (org.slug, Uuid::now_v7()))
            .collect();
        let mut server = TestServer {
            data_dir: dir.path().join("data"),
            dir,
            pki,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            clock: ManualClock::new(SystemTime::now()),
            admins,
            held: Vec::new(),
            removed: Vec::new(),
            durable,
            postgres: None,
            stop: None,
            task: None,
        };
        if on_postgres() {
            server.postgres = Some(
                samenop_server::store::postgres::throwaway::open()
                    .await
                    .expect("a PostgreSQL database")
                    .expect("PostgreSQL is installed, or SAMENOP_TEST_POSTGRES_URL set"),
            );
        }
        server.launch().await;
        server
    }

    /// The server's store, opened as a tool with the disk (or the database)
    /// would: the embedded one once the stopped server has released it.
    pub async fn offline_store(&self) -> Arc<dyn samenop_server::store::Store> {
        match &self.postgres {
            Some(db) => Arc::new(
                samenop_server::store::postgres::PostgresStore::connect(&db.config())
                    .await
                    .expect("the database"),
            ),
            None => Arc::new(
                open_when_released(|| samenop_server::store::redb::RedbStore::open(&self.data_dir))
                    .await,
            ),
        }
    }

    /// Whether the server's stored data (its files, or its database's
    /// rows) holds `needle` anywhere.
    pub async fn stores(&self, needle: &[u8]) -> bool {
        if !files_containing(&self.data_dir, needle).is_empty() {
            return true;
        }
        if self.postgres.is_none() {
            return false;
        }
        let store = self.offline_store().await;
        for space in samenop_server::store::Keyspace::ALL {
            let entries = samenop_server::store::scan_all(store.as_ref(), space, b"")
                .await
                .expect("scan");
            if entries.iter().any(|(key, value)| {
                [key, value]
                    .iter()
                    .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            }) {
                return true;
            }
        }
        false
    }

    /// The server's configuration, as a file would give it.
    pub fn config(&self) -> Config {
        let file = FileConfig {
            listen: Some("127.0.0.1:0".into()),
            // Bound by `launch` on a free port (see `admin_addr`).
            admin_listen: Some("off".into()),
            data_dir: Some(self.data_dir.clone()),
            store: None,
            postgres: None,
            shutdown_grace_seconds: Some(5),
            handshake_timeout_seconds: Some(5),
            sweep_interval_seconds: None,
            audit_key: None,
            audit_checkpoint_interval_seconds: None,
            checkpoint_kib: None,
            retention: Default::default(),
            tls: FileTls {
                certificate: self.pki.server_cert(),
                private_key: self.pki.server_key(),
                client_ca: vec![self.pki.ca_cert()],
                crls: vec![self.pki.crl()],
            },
            limits: Default::default(),
            organisations: DEMO_ORGANISATIONS
                .iter()
                .filter(|org| !self.removed.contains(&org.slug))
                .map(|org| FileOrganisation {
                    oin: org.oin.into(),
                    name: org.name.into(),
                    bootstrap_admin: Some(self.admins[org.slug].to_string()),
                    bootstrap_admin_name: Some(format!("Admin {}", org.slug)),
                })
                .collect(),
        };
        let mut config = file
            .check(Overrides::default(), self.dir.path())
            .expect("valid config");
        // Sweeps often, so what the manual clock makes due is swept (and
        // told) at once; what is due is still decided by the clock alone.
        config.sweep_interval = std::time::Duration::from_millis(50);
        config.audit_checkpoint_interval = std::time::Duration::from_millis(50);
        config.retention.interval = std::time::Duration::from_millis(50);
        config
    }

    /// Starts the server (again) on its data directory, after [`Self::stop`].
    pub async fn launch(&mut self) {
        let config = self.config();
        // The same ports at every launch, so clients reconnect by
        // themselves: held from the first launch on.
        if self.held.is_empty() {
            let main = hold(self.addr).expect("a port for the server");
            let admin = hold(self.admin_addr).expect("a port for the admin listener");
            self.addr = main.local_addr().expect("local addr");
            self.admin_addr = admin.local_addr().expect("local addr");
            self.held = vec![main, admin];
        }
        let listener = listen_again(self.addr, "the server's held port").await;
        let admin = listen_again(self.admin_addr, "the admin listener's held port").await;
        let durable = self.durable;
        let store = match &self.postgres {
            Some(_) => {
                samenop_server::create_durably(&config.data_dir).expect("the data directory");
                self.offline_store().await
            }
            None => {
                open_when_released(|| {
                    samenop_server::create_durably(&config.data_dir)?;
                    samenop_server::store::redb::RedbStore::open_with(&config.data_dir, durable)
                        .map(|s| Arc::new(s) as Arc<dyn samenop_server::store::Store>)
                })
                .await
            }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let clock = Arc::new(self.clock.clone());
        self.task = Some(tokio::spawn(samenop_server::serve(
            config,
            store,
            clock,
            listener,
            Some(admin),
            async {
                let _ = stopped.await;
            },
        )));
        self.stop = Some(stop);
    }

    /// Stops the server gracefully and waits until it has flushed its store.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    /// Takes organisation `slug` out of the server's configuration from its
    /// next launch on, as an operator who ends its membership of the
    /// network: its professionals stay in the directory.
    pub fn remove_organisation(&mut self, slug: &'static str) {
        self.removed.push(slug);
    }

    /// Stops the server and starts it again on the same data directory
    /// (on the same port when it is free).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// The client configuration for a certificate and key of the PKI.
    pub fn client_config(&self, cert: PathBuf, key: PathBuf) -> ClientConfig {
        let mut config = ClientConfig::from_files(self.endpoint(), self.pki.ca_cert(), cert, key)
            .expect("PEM files");
        config.server_name = Some("localhost".into());
        config
    }

    /// The server's https endpoint.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// A connection with the certificate of organisation `slug`, acting for
    /// no one yet.
    pub async fn connect(&self, slug: &str) -> Client {
        let config = self.client_config(self.pki.org_cert(slug), self.pki.org_key(slug));
        Client::connect(config).await.expect("connect")
    }

    /// A connection of organisation `slug` acting as its bootstrap admin.
    pub async fn admin(&self, slug: &str) -> Client {
        self.connect(slug).await.acting_as(self.admins[slug])
    }

    /// Registers a professional in organisation `slug` (through its admin)
    /// and returns a connection acting as them.
    pub async fn professional(
        &self,
        slug: &str,
        name: &str,
        roles: &[samenop_client::Role],
        expertise: &[samenop_client::Expertise],
    ) -> Client {
        let admin = self.admin(slug).await;
        let registered = admin
            .register_professional(name, roles, expertise)
            .await
            .expect("register professional");
        admin.acting_as(registered.id)
    }

    /// The last audit sequence the stopped server recorded.
    pub async fn audit_head(&self) -> u64 {
        use samenop_server::store::audit::Trail;
        Trail::new(self.offline_store().await)
            .head()
            .await
            .expect("the audit head")
            .sequence
    }

    /// The server's current (controllable) time.
    pub fn clock_now(&self) -> SystemTime {
        samenop_server::clock::Clock::now(&self.clock)
    }

    /// The OIN of organisation `slug`.
    pub fn oin(slug: &str) -> &'static str {
        DEMO_ORGANISATIONS
            .iter()
            .chain([&NOT_ALLOWED])
            .find(|org| org.slug == slug)
            .map(|org| org.oin)
            .expect("known organisation")
    }
}

/// A socket bound to `addr` (port 0: a free one) and not listening, with
/// SO_REUSEADDR: a listener with it may bind the same port, and no other
/// socket is given the port while it lives (see `TestServer::held`).
fn hold(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// A listener on `addr`, beside the socket that holds its port.
fn listen_on(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A listener on `addr` (`what`), once the stopped server's listener there
/// is closed: its admin listener is closed by a task aborted when the
/// server stops, which may end just after `stop` returned.
async fn listen_again(addr: SocketAddr, what: &str) -> tokio::net::TcpListener {
    let mut tries = 0;
    loop {
        match listen_on(addr) {
            Ok(listener) => return listener,
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse && tries < 500 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(err) => panic!("{what}: {err}"),
        }
    }
}

/// The longest any test waits for an event, a message or a state: long
/// enough for a loaded 2-core machine, short enough that a broken delivery
/// fails within seconds instead of hanging the suite.
pub const WAIT: Duration = Duration::from_secs(20);

/// Awaits `future` for at most [`WAIT`]; past that, fails the test saying
/// what it was waiting for.
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("waited {WAIT:?} in vain for {what}"),
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Changes one byte of the stored audit event `sequence` in the data
/// directory of a stopped server, as someone with access to the disk might:
/// the event's recorded hash is left as it was.
pub async fn tamper_with_audit_event(server: &TestServer, sequence: u64) {
    use prost::Message;
    use samenop_server::store::{Batch, Keyspace, audit::AuditEntry};
    let store = server.offline_store().await;
    let key = sequence.to_be_bytes();
    let raw = store
        .get(Keyspace::Audit, &key)
        .await
        .expect("read")
        .expect("the event exists");
    let mut entry = AuditEntry::decode(raw.as_slice()).expect("an entry");
    let middle = entry.body.len() / 2;
    entry.body[middle] ^= 0x20;
    let mut batch = Batch::new();
    batch.put(Keyspace::Audit, key.to_vec(), entry.encode_to_vec());
    store.commit(batch).await.expect("write");
}

/// Removes the audit events after `keep` from the data directory of a
/// stopped server, and rewrites the recorded head to match, as an attacker
/// with the disk who covers their tracks would.
pub async fn truncate_audit(server: &TestServer, keep: u64) {
    use samenop_server::store::{
        Batch, Keyspace,
        audit::{AuditEntry, HEAD_KEY, Head},
    };
    let store = server.offline_store().await;
    let raw = store
        .get(Keyspace::Audit, &keep.to_be_bytes())
        .await
        .expect("read")
        .expect("the event kept last exists");
    let entry: AuditEntry = prost::Message::decode(raw.as_slice()).expect("an entry");
    let mut batch = Batch::new();
    for (key, _) in store
        .scan(Keyspace::Audit, b"", Some(&keep.to_be_bytes()), usize::MAX)
        .await
        .expect("scan")
    {
        batch.delete(Keyspace::Audit, key);
    }
    let head = Head {
        sequence: keep,
        hash: entry.hash.as_slice().try_into().expect("32 bytes"),
    };
    batch.put(Keyspace::Meta, HEAD_KEY.to_vec(), head.encode());
    store.commit(batch).await.expect("write");
}

/// Removes the audit indexes and the schema version from the data directory
/// of a stopped server, leaving the store as a server before the indexes
/// wrote it.
pub async fn forget_audit_indexes(server: &TestServer) {
    use samenop_server::store::{Batch, Keyspace, audit_index::SCHEMA_KEY, scan_all};
    let store = server.offline_store().await;
    let mut batch = Batch::new();
    for space in [
        Keyspace::AuditIndex,
        Keyspace::AuditConsultFamily,
        Keyspace::AuditFamilyConsults,
    ] {
        let entries = scan_all(store.as_ref(), space, b"").await.expect("scan");
        assert!(!entries.is_empty(), "{space:?} was written");
        for (key, _) in entries {
            batch.delete(space, key);
        }
    }
    batch.delete(Keyspace::Meta, SCHEMA_KEY.to_vec());
    store.commit(batch).await.expect("write");
}

/// Leaves in the data directory of a stopped server what an upload cut off
/// by a crash leaves: its mark, begun at `at`, and `chunks` chunks of bytes.
pub async fn leave_upload_behind(
    server: &TestServer,
    consult: Uuid,
    attachment: Uuid,
    at: SystemTime,
    chunks: u64,
) {
    use samenop_server::store::{Batch, Keyspace, records::to_millis};
    let store = server.offline_store().await;
    let mut batch = Batch::new();
    batch.put(
        Keyspace::Uploads,
        [
            to_millis(at).to_be_bytes().as_slice(),
            attachment.as_bytes(),
        ]
        .concat(),
        consult.as_bytes().to_vec(),
    );
    for index in 0..chunks {
        batch.put(
            Keyspace::AttachmentChunks,
            [attachment.as_bytes().as_slice(), &index.to_be_bytes()].concat(),
            vec![7; 1024],
        );
    }
    store.commit(batch).await.expect("write");
}

/// Changes the stored thread entry `sequence` of `consult` in the data
/// directory of a stopped server, as an attacker with the server's disk
/// might.
pub async fn alter_thread_entry(
    server: &TestServer,
    consult: Uuid,
    sequence: u64,
    change: impl FnOnce(&mut samenop_proto::v1::ThreadEntry),
) {
    use prost::Message;
    use samenop_server::store::{Batch, Keyspace};
    let store = server.offline_store().await;
    let key = [consult.as_bytes().as_slice(), &sequence.to_be_bytes()].concat();
    let raw = store
        .get(Keyspace::ThreadEntries, &key)
        .await
        .expect("read")
        .expect("the entry exists");
    let mut entry = samenop_proto::v1::ThreadEntry::decode(raw.as_slice()).expect("an entry");
    change(&mut entry);
    let mut batch = Batch::new();
    batch.put(Keyspace::ThreadEntries, key, entry.encode_to_vec());
    store.commit(batch).await.expect("write");
}

/// Changes stored chunk `index` of an attachment's encrypted bytes, as an
/// attacker with the server's disk could (the server must be stopped).
pub async fn alter_attachment_chunk(
    server: &TestServer,
    attachment: Uuid,
    index: u64,
    change: impl FnOnce(&mut Vec<u8>),
) {
    use samenop_server::store::{Batch, Keyspace};
    let store = server.offline_store().await;
    let key = [attachment.as_bytes().as_slice(), &index.to_be_bytes()].concat();
    let mut raw = store
        .get(Keyspace::AttachmentChunks, &key)
        .await
        .expect("read")
        .expect("the chunk exists");
    change(&mut raw);
    let mut batch = Batch::new();
    batch.put(Keyspace::AttachmentChunks, key, raw);
    store.commit(batch).await.expect("write");
}

/// A request acting for `client`'s professional.
pub fn acting<T>(client: &Client, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        samenop_proto::PROFESSIONAL_METADATA_KEY,
        client.professional().unwrap().to_string().parse().unwrap(),
    );
    request
}

/// The raw entries of a consult's thread (up to 500), as `client`'s
/// `device` fetches them.
pub async fn thread_entries(
    client: &Client,
    device: Uuid,
    consult: Uuid,
) -> Vec<samenop_proto::v1::ThreadEntry> {
    use samenop_proto::v1;
    let request = v1::FetchThreadRequest {
        consult_id: consult.to_string(),
        device_id: device.to_string(),
        from_sequence: 1,
        page_size: 500,
    };
    v1::thread_service_client::ThreadServiceClient::new(client.channel())
        .fetch_thread(acting(client, request))
        .await
        .unwrap()
        .into_inner()
        .entries
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path);
                }
            }
        }
    }
    found
}

/// Opens a store whose previous handle in this process was just dropped:
/// the store's file lock is released once its writer thread has ended,
/// which under load can take a moment.
async fn open_when_released<S, E: std::fmt::Display>(open: impl Fn() -> Result<S, E>) -> S {
    let mut attempts = 0;
    loop {
        match open() {
            Ok(store) => return store,
            Err(err) if attempts < 250 => {
                attempts += 1;
                let _ = err;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(err) => panic!("cannot open the store: {err}"),
        }
    }
}

/// A household of a parent or carer (16 or older) and a child under 12.
pub fn parent_and_young_child() -> Vec<NewMember> {
    vec![
        NewMember {
            role: MemberRole::ParentOrCarer,
            age: MemberAge::Band(AgeBand::From16),
        },
        NewMember {
            role: MemberRole::Child,
            age: MemberAge::Band(AgeBand::Under12),
        },
    ]
}

/// The parent's consent, for the child of a [`parent_and_young_child`]
/// family, to consult child-abuse expertise (at `organisations`, or
/// anywhere when empty), valid for `valid` from the server's now.
pub fn abuse_consent(
    family: &Family,
    server: &TestServer,
    organisations: Vec<String>,
    valid: Duration,
) -> ConsentRequest {
    ConsentRequest {
        concerned: vec![family.members[1].id],
        given_by: vec![family.members[0].id],
        expertise: vec![Expertise::Violence(ViolenceType::ChildAbuse)],
        organisations,
        valid_from: None,
        valid_until: server.clock_now() + valid,
        evidence_reference: "TOESTEMMING-1".into(),
    }
}

/// Registers a [`parent_and_young_child`] family as `contact`, with an
/// [`abuse_consent`] valid for 90 days; returns it and the consent's id.
pub async fn family_with_consent(server: &TestServer, contact: &Client) -> (Family, Uuid) {
    let family = contact
        .register_family(&parent_and_young_child())
        .await
        .expect("register family");
    let consent = contact
        .record_consent(
            family.id,
            &abuse_consent(
                &family,
                server,
                Vec::new(),
                Duration::from_secs(90 * 24 * 3600),
            ),
        )
        .await
        .expect("record consent");
    (family, consent.id)
}

/// An anonymous consult of `owner` addressed to `specialist` for
/// child-abuse expertise, accepted by them; its id.
pub async fn accepted_anonymous_consult(owner: &Client, specialist: &Client) -> Uuid {
    use samenop_client::consult::{About, NewConsult, Urgency};
    let consult = owner
        .open_consult(&NewConsult {
            about: About::Anonymous,
            question: "Hoe wegen wij deze signalen?".into(),
            expertise: Expertise::Violence(ViolenceType::ChildAbuse),
            urgency: Urgency::Normal,
            respond_by: None,
            specialist: specialist.professional(),
        })
        .await
        .expect("open")
        .id;
    specialist.accept_consult(consult).await.expect("accept");
    consult
}

/// How many entries the stopped server's data directory holds in `space`
/// under `prefix`.
pub async fn stored_under(
    server: &TestServer,
    space: samenop_server::store::Keyspace,
    prefix: &[u8],
) -> usize {
    use samenop_server::store::scan_all;
    let store = server.offline_store().await;
    scan_all(store.as_ref(), space, prefix)
        .await
        .expect("scan")
        .len()
}

/// A family consult of Sanne (contact person, org A) on consent, accepted
/// by Eva (child-abuse specialist, org B), whose thread holds one message
/// with a 4000-byte attachment; with org A's privacy officer Pim and a
/// device (state on disk) for Sanne and Eva.
pub struct ThreadedConsult {
    /// The server.
    pub server: TestServer,
    /// The contact person.
    pub sanne: Client,
    /// Org A's privacy officer.
    pub officer: Client,
    /// The specialist.
    pub eva: Client,
    /// The family.
    pub family: Family,
    /// Its consent.
    pub consent: Uuid,
    /// The consult.
    pub consult: Uuid,
    /// Sanne's device.
    pub sanne_device: samenop_client::mls::Messenger,
    /// Eva's device.
    pub eva_device: samenop_client::mls::Messenger,
    /// The devices' state directories (keep them while using the devices).
    pub state_dirs: (TempDir, TempDir),
}

/// Sets up a [`ThreadedConsult`].
pub async fn threaded_consult() -> ThreadedConsult {
    use samenop_client::{
        Role,
        consult::{About, LegalBasis, NewConsult, Urgency},
        mls::{Messenger, NewAttachment},
    };
    let abuse = Expertise::Violence(ViolenceType::ChildAbuse);
    let server = TestServer::start().await;
    let sanne = server
        .professional(ORG_A, "Sanne", &[Role::ContactPerson], &[])
        .await;
    let officer = server
        .professional(ORG_A, "Pim", &[Role::PrivacyOfficer], &[])
        .await;
    let eva = server
        .professional(ORG_B, "Eva", &[Role::Specialist], &[abuse])
        .await;
    let (family, consent) = family_with_consent(&server, &sanne).await;
    let consult = sanne
        .open_consult(&NewConsult {
            about: About::Family {
                family: family.id,
                concerned: vec![family.members[1].id],
                basis: LegalBasis::consent(consent),
            },
            question: "Hoe wegen wij deze signalen?".into(),
            expertise: abuse,
            urgency: Urgency::Normal,
            respond_by: None,
            specialist: Some(eva.professional().expect("eva")),
        })
        .await
        .expect("open")
        .id;
    eva.accept_consult(consult).await.expect("accept");
    let dirs = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let sanne_device = Messenger::open(&sanne, dirs.0.path(), "werkplek")
        .await
        .expect("device");
    let eva_device = Messenger::open(&eva, dirs.1.path(), "laptop")
        .await
        .expect("device");
    sanne_device.create_thread(consult).await.expect("create");
    sanne_device.sync_members(consult).await.expect("sync");
    sanne_device
        .send_with(
            consult,
            "Het verslag",
            None,
            &[NewAttachment {
                name: "verslag.pdf",
                media_type: "application/pdf",
                bytes: &[7u8; 4000],
            }],
        )
        .await
        .expect("send");
    ThreadedConsult {
        server,
        sanne,
        officer,
        eva,
        family,
        consent,
        consult,
        sanne_device,
        eva_device,
        state_dirs: dirs,
    }
}
