//! End-to-end encrypted consult threads: MLS (RFC 9420) through OpenMLS,
//! one group per consult, the server only ordering and delivering.
//!
//! A [`Messenger`] is one device of one professional. It keeps its signature
//! key, key packages and group state on local disk (module `state`), registers
//! itself in the directory, keeps key packages topped up, and applies the
//! thread's messages strictly in the server's order:
//!
//! - the contact person's device creates a consult's group
//!   ([`Messenger::create_thread`]) and brings its membership in line with
//!   the consult's participants ([`Messenger::sync_members`]): every active
//!   device of every active participant in, everyone else out;
//! - every member checks each device that joins against the directory (its
//!   signature key must be the listed key of an active device of an active
//!   participant): a mismatch is [`ClientError::GroupMismatch`];
//! - a message that fails decryption or verification, or whose sender's
//!   count shows it dropped, replayed or moved, is
//!   [`ClientError::Rejected`] and the thread stops there;
//! - an ABORTED post (the thread moved to a newer epoch) is retried after
//!   catching up, so no message is lost.

mod attachment;
mod state;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
    sync::{Arc, PoisonError},
};

use openmls::prelude::{
    BasicCredential, Capabilities, Ciphersuite, CredentialWithKey, ExtensionType, GroupId,
    KeyPackage, KeyPackageIn, MlsGroup, MlsGroupCreateConfig, MlsGroupJoinConfig, MlsMessageBodyIn,
    MlsMessageIn, MlsMessageOut, ProcessedMessageContent, ProtocolVersion, StagedWelcome,
    tls_codec::{DeserializeBytes, Serialize as _},
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::{OpenMlsProvider, types::SignatureScheme};
use prost::Message as _;
use samenop_proto::v1::{self, thread_service_client::ThreadServiceClient};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Client, ClientError, Result, consult::ParticipantStatus};
pub use attachment::{Attachment, NewAttachment, Progress};
use state::DurableState;

/// The ciphersuite of every consult group.
pub const CIPHERSUITE: Ciphersuite =
    Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;
/// One-time key packages a device keeps on the server.
const KEY_PACKAGES_TARGET: u32 = 20;
/// Below this many the device uploads more.
const KEY_PACKAGES_LOW: u32 = 10;
/// How often a post is retried after catching up with a newer epoch.
const POST_ATTEMPTS: usize = 8;
/// The content layout this library writes and reads.
const CONTENT_VERSION: u32 = 1;

fn local(what: &str, err: impl std::fmt::Display) -> ClientError {
    ClientError::LocalState(format!("{what}: {err}"))
}

/// This device as registered.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeviceRecord {
    /// Its id in the directory.
    device: Uuid,
    /// Its owner.
    professional: Uuid,
    /// Its public signature key.
    public_key: Vec<u8>,
}

/// Where this device stands in one thread.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ThreadRecord {
    /// The next sequence to apply.
    next_sequence: u64,
    /// Messages this device sent in the thread.
    sent: u64,
    /// Per sending device, the last counter applied.
    received: BTreeMap<Uuid, u64>,
    /// Whether this device was removed from the group.
    removed: bool,
    /// Whether this device has been in the group since before anyone sent
    /// a message (it created it, or joined by the thread's first commit):
    /// then every sender's count must start at 1. A device that joined
    /// later takes the first count it sees of each sender as the start.
    #[serde(default)]
    from_start: bool,
    /// The professional of each device this device has read in the
    /// thread, as the directory listed it.
    #[serde(default)]
    senders: BTreeMap<Uuid, Uuid>,
    /// The message being sent: kept with its request id until the server
    /// answers, so one whose answer was lost is posted again under the same
    /// id (and stored once) before anything else is sent.
    #[serde(default)]
    outbox: Option<Outbox>,
}

/// Devices by id: owner professional and listed signature key.
type Listed = HashMap<Uuid, (Uuid, Vec<u8>)>;

/// What the directory says of a consult's group, read from the server.
struct Roster {
    /// The consult's owner now.
    owner: Uuid,
    /// The active devices of its active participants: exactly who must be
    /// in the group.
    current: Listed,
    /// Every listed device (revoked ones too) of everyone who takes or took
    /// part, past owners included: who an earlier commit may have added.
    /// A commit is checked against these, not against `current`, because
    /// it is read later than it was made: a device revoked (or a specialist
    /// gone) since was rightly added then, and the owner's next commit
    /// removes it. The server sent that device its Welcome only while it
    /// was current.
    known: Listed,
}

/// A message on its way to the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outbox {
    /// The request id every attempt carries.
    request_id: Uuid,
    /// The encoded `ThreadContent`, with its sender count.
    content: Vec<u8>,
    /// The MLS message of `content` as last encrypted (and durable with
    /// the ratchet step that made it): posted again as it is after a lost
    /// answer or a crash, encrypted anew only when the server refused it
    /// for a newer epoch. Absent in outboxes of earlier versions.
    #[serde(default)]
    sealed: Option<Vec<u8>>,
}

/// The client's own records one write puts (key, value) or removes (key,
/// `None`).
type Records = Vec<(String, Option<Vec<u8>>)>;

/// The device's signature key, as OpenMLS signs with it: the key pair as
/// OpenMLS stores it, and the same key made ready once with ring, whose
/// Ed25519 signatures are the same bytes (Ed25519 is deterministic).
/// `openmls_basic_credential` rebuilds the signing key from its seed for
/// every signature, which cost a send as much as its encryption.
struct DeviceSigner {
    /// The stored key pair (its seed and public key).
    pair: SignatureKeyPair,
    /// The same key, expanded once.
    ready: ring::signature::Ed25519KeyPair,
}

impl DeviceSigner {
    fn new(pair: SignatureKeyPair) -> Result<Self> {
        // The seed is reachable only through the pair's own serde form
        // (its accessor is for OpenMLS's tests): read it there, once.
        let unusable =
            |e: &dyn std::fmt::Display| local("the device's signature key is unusable", e);
        let form = serde_json::to_value(&pair).map_err(|e| unusable(&e))?;
        let seed: Vec<u8> = form
            .get("private")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| unusable(&e))?
            .ok_or_else(|| unusable(&"no private key in it"))?;
        let ready = ring::signature::Ed25519KeyPair::from_seed_and_public_key(&seed, pair.public())
            .map_err(|e| unusable(&e))?;
        Ok(DeviceSigner { pair, ready })
    }
}

impl openmls_traits::signatures::Signer for DeviceSigner {
    fn sign(
        &self,
        payload: &[u8],
    ) -> std::result::Result<Vec<u8>, openmls_traits::signatures::SignerError> {
        Ok(self.ready.sign(payload).as_ref().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        self.pair.signature_scheme()
    }
}

/// A message a send puts into the outbox.
struct NewMessage<'a> {
    /// Its text.
    text: &'a str,
    /// The sequence it answers.
    reply_to: Option<u64>,
    /// Its attachments, uploaded.
    attachments: &'a [Attachment],
}

/// Whether a post refused with `code` was certainly not stored (a post that
/// was stored always gets its answer again, whatever changed since).
fn not_stored(code: tonic::Code) -> bool {
    use tonic::Code as C;
    matches!(
        code,
        C::InvalidArgument
            | C::FailedPrecondition
            | C::NotFound
            | C::PermissionDenied
            | C::ResourceExhausted
            | C::Unauthenticated
            | C::OutOfRange
            | C::Unimplemented
    )
}

/// A message of a thread, decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadMessage {
    /// The consult.
    pub consult: Uuid,
    /// Its place in the thread.
    pub sequence: u64,
    /// The device that sent it.
    pub sender_device: Uuid,
    /// The professional who sent it.
    pub sender_professional: Uuid,
    /// The text.
    pub text: String,
    /// The sequence of the message it answers.
    pub reply_to: Option<u64>,
    /// Its attachments; open each with [`Messenger::open_attachment`].
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Whether this device sent it.
    pub own: bool,
    /// When the server stored it (from the thread entry; for this
    /// device's own messages, when the server answered).
    #[serde(default)]
    pub posted_at: Option<std::time::SystemTime>,
}

/// What [`Messenger::sync_members`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipChange {
    /// Devices added to the group.
    pub added: Vec<Uuid>,
    /// Devices removed from the group.
    pub removed: Vec<Uuid>,
}

/// An event delivered to this device.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Where to resume after this event.
    pub cursor: String,
    /// What happened.
    pub kind: EventKind,
    /// The event as the server sent it.
    wire: v1::SubscribeResponse,
}

impl Event {
    /// The event as the server sent it, for relaying it on unchanged (the
    /// agent passes consult events to its callers so).
    pub fn wire(&self) -> &v1::SubscribeResponse {
        &self.wire
    }
}

/// What an [`Event`] carries.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// A message was stored in a thread this device takes part in; apply it
    /// with [`Messenger::apply`].
    ThreadEntry(v1::ThreadEntry),
    /// This device was added to a consult's group.
    Welcome {
        /// The consult.
        consult: Uuid,
        /// The commit that added it.
        commit_sequence: u64,
    },
    /// A consult changed (or a request arrived).
    Consult(crate::consult::ConsultEvent),
    /// An event this version of the library does not know (a newer
    /// server's): skip it and go on; [`Event::wire`] holds it as sent.
    Unknown,
}

/// A device's live event stream.
pub struct Events {
    /// The server stream.
    stream: tonic::Streaming<v1::SubscribeResponse>,
}

impl Events {
    /// The next event; `None` when the server ended the stream.
    ///
    /// # Errors
    /// [`ClientError`] when the stream broke (resume from the last cursor).
    pub async fn next(&mut self) -> Result<Option<Event>> {
        let Some(message) = self.stream.message().await? else {
            return Ok(None);
        };
        let wire = message.clone();
        let kind = match message.event {
            Some(v1::subscribe_response::Event::ThreadEntry(entry)) => {
                EventKind::ThreadEntry(entry)
            }
            Some(v1::subscribe_response::Event::Welcome(welcome)) => EventKind::Welcome {
                consult: crate::types::uuid("consult_id", &welcome.consult_id)?,
                commit_sequence: welcome.commit_sequence,
            },
            Some(v1::subscribe_response::Event::Consult(change)) => match change.try_into() {
                Ok(change) => EventKind::Consult(change),
                // A change or state a newer server added.
                Err(err) => {
                    tracing::warn!(error = %err, "a consult event this version does not know");
                    EventKind::Unknown
                }
            },
            // A kind of event a newer server added.
            None => EventKind::Unknown,
        };
        Ok(Some(Event {
            cursor: message.cursor,
            kind,
            wire,
        }))
    }
}

/// The MLS side of a device, behind one lock: one MLS operation at a time.
struct Inner {
    /// The provider and its durable copy.
    state: DurableState,
    /// The device's signature key pair.
    signer: DeviceSigner,
    /// The device's MLS credential with its key.
    credential: CredentialWithKey,
    /// The device.
    device: DeviceRecord,
}

/// One device of one professional: end-to-end encrypted threads.
pub struct Messenger {
    /// Acting as the device's professional.
    client: Client,
    /// The device's id.
    device: Uuid,
    /// The MLS state.
    inner: tokio::sync::Mutex<Inner>,
    /// One queue per consult for what this device writes in a thread:
    /// sends and commits. A thread has one outbox slot, so a send holds
    /// its consult's queue from the outbox's first write to its answer; a
    /// commit (sync_members, update_keys) holds it from its catch-up to the
    /// merge of what the server stored, as a second commit begun meanwhile
    /// would clear the first one's pending state while the server has it.
    /// Concurrent writers of one consult go one after another, in the order
    /// they came (tokio's mutex is fair), each with its own outcome.
    sending: std::sync::Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

fn not_member(consult: Uuid) -> ClientError {
    ClientError::FailedPrecondition(format!("this device is not in consult {consult}'s group"))
}

fn group_id(consult: Uuid) -> GroupId {
    GroupId::from_slice(consult.to_string().as_bytes())
}

fn thread_key(consult: Uuid) -> String {
    format!("thread/{consult}")
}

fn message_key(consult: Uuid, sequence: u64) -> String {
    format!("message/{consult}/{sequence:020}")
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| local("cannot encode a record", e))
}

fn from_json<T: for<'de> Deserialize<'de>>(raw: &[u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| local("a stored record is corrupt", e))
}

fn serialize(message: &MlsMessageOut) -> Result<Vec<u8>> {
    message
        .tls_serialize_detached()
        .map_err(|e| local("cannot serialise an MLS message", e))
}

fn rejected(consult: Uuid, sequence: u64, why: impl std::fmt::Display) -> ClientError {
    ClientError::Rejected(format!(
        "message {sequence} of consult {consult} was rejected: {why}"
    ))
}

/// The device id a member's credential names.
fn member_device(credential: &openmls::prelude::Credential) -> Option<Uuid> {
    let basic = BasicCredential::try_from(credential.clone()).ok()?;
    Uuid::from_slice(basic.identity()).ok()
}

impl Inner {
    fn load_group(&self, consult: Uuid) -> Result<Option<MlsGroup>> {
        MlsGroup::load(self.state.provider().storage(), &group_id(consult))
            .map_err(|e| local("cannot load a group", e))
    }

    /// The group, caught up, to build a new commit on: a commit still
    /// pending after catching up was never stored, and is dropped.
    fn group_to_commit(&mut self, consult: Uuid) -> Result<MlsGroup> {
        let mut group = self
            .load_group(consult)?
            .ok_or_else(|| not_member(consult))?;
        if group.pending_commit().is_some() {
            group
                .clear_pending_commit(self.state.provider().storage())
                .map_err(|e| local("cannot drop a pending commit", e))?;
        }
        Ok(group)
    }

    fn thread(&self, consult: Uuid) -> Result<ThreadRecord> {
        match self.state.get(&thread_key(consult))? {
            Some(raw) => from_json(&raw),
            None => Ok(ThreadRecord {
                next_sequence: 1,
                ..ThreadRecord::default()
            }),
        }
    }

    /// Persists the MLS changes with `thread` and `extra` records; on
    /// failure, undoes the MLS changes.
    fn persist(&mut self, consult: Uuid, thread: &ThreadRecord, extra: Records) -> Result<()> {
        self.persist_with(consult, thread, extra, true)
    }

    /// Like [`Inner::persist`], without waiting for the disk: for what can
    /// be found again after a power cut (see `deliver_outbox_with`). The
    /// next durable write carries it.
    fn persist_lazily(
        &mut self,
        consult: Uuid,
        thread: &ThreadRecord,
        extra: Records,
    ) -> Result<()> {
        self.persist_with(consult, thread, extra, false)
    }

    fn persist_with(
        &mut self,
        consult: Uuid,
        thread: &ThreadRecord,
        extra: Records,
        durable: bool,
    ) -> Result<()> {
        let mut own = vec![(thread_key(consult), Some(json(thread)?))];
        own.extend(extra);
        let result = self.state.persist_with(&own, durable);
        if result.is_err() {
            self.state.roll_back();
        }
        result
    }

    fn key_package(&mut self, last_resort: bool) -> Result<Vec<u8>> {
        let mut builder = KeyPackage::builder();
        if last_resort {
            // A key package's extensions must be among its leaf's
            // capabilities, or every member refuses it when it is used.
            builder = builder.mark_as_last_resort().leaf_node_capabilities(
                Capabilities::builder()
                    .extensions(vec![ExtensionType::LastResort])
                    .build(),
            );
        }
        let bundle = builder
            .build(
                CIPHERSUITE,
                self.state.provider(),
                &self.signer,
                self.credential.clone(),
            )
            .map_err(|e| local("cannot make a key package", e))?;
        serialize(&MlsMessageOut::from(bundle.key_package().clone()))
    }
}

impl Messenger {
    /// Opens the device whose state is in `dir`, or makes a new one there:
    /// a signature key pair made locally, registered in the directory under
    /// `label`, with key packages uploaded. `client` acts as the device's
    /// professional.
    ///
    /// # Errors
    /// [`ClientError::LocalState`] when the state cannot be read or written,
    /// [`ClientError::Config`] when it belongs to another professional, and
    /// the server's refusals.
    pub async fn open(client: &Client, dir: &Path, label: &str) -> Result<Self> {
        let professional = client.professional().ok_or(ClientError::NoProfessional)?;
        let mut state = DurableState::open(dir)?;
        let storage = state.provider().storage();
        let (device, signer) = match state.get("device")? {
            Some(raw) => {
                let device: DeviceRecord = from_json(&raw)?;
                if device.professional != professional {
                    return Err(ClientError::Config(format!(
                        "the device state in {} belongs to another professional",
                        dir.display()
                    )));
                }
                let signer = SignatureKeyPair::read(
                    storage,
                    &device.public_key,
                    SignatureScheme::ED25519,
                )
                .ok_or_else(|| local("the device's signature key is missing", "not stored"))?;
                (device, signer)
            }
            None => {
                // The key pair is kept before it is registered, so a crash
                // in between registers the same key on the next start.
                let signer = match state.get("pending-key")? {
                    Some(public) => {
                        SignatureKeyPair::read(storage, &public, SignatureScheme::ED25519)
                            .ok_or_else(|| {
                                local("the pending signature key is missing", "not stored")
                            })?
                    }
                    None => {
                        let signer = SignatureKeyPair::new(SignatureScheme::ED25519)
                            .map_err(|e| local("cannot make a signature key", e))?;
                        signer
                            .store(storage)
                            .map_err(|e| local("cannot keep the signature key", e))?;
                        state.persist(&[("pending-key".into(), Some(signer.to_public_vec()))])?;
                        signer
                    }
                };
                let device = register(client, professional, &signer, label).await?;
                let record = DeviceRecord {
                    device,
                    professional,
                    public_key: signer.to_public_vec(),
                };
                state.persist(&[
                    ("device".into(), Some(json(&record)?)),
                    ("pending-key".into(), None),
                ])?;
                (record, signer)
            }
        };
        let credential = CredentialWithKey {
            credential: BasicCredential::new(device.device.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        let signer = DeviceSigner::new(signer)?;
        let messenger = Messenger {
            client: client.clone(),
            device: device.device,
            inner: tokio::sync::Mutex::new(Inner {
                state,
                signer,
                credential,
                device,
            }),
            sending: std::sync::Mutex::default(),
        };
        if messenger
            .inner
            .lock()
            .await
            .state
            .get("key-packages")?
            .is_none()
        {
            messenger.top_up_key_packages().await?;
        }
        Ok(messenger)
    }

    /// This device's id.
    pub fn device(&self) -> Uuid {
        self.device
    }

    /// This device's public signature key.
    pub async fn signature_key(&self) -> Vec<u8> {
        self.inner.lock().await.device.public_key.clone()
    }

    fn threads(&self) -> ThreadServiceClient<tonic::transport::Channel> {
        ThreadServiceClient::new(self.client.channel())
    }

    /// Uploads key packages until the server holds at least the target
    /// (and a last-resort one the first time). Returns how many it holds.
    ///
    /// # Errors
    /// [`ClientError`] when the state or the server fails.
    pub async fn top_up_key_packages(&self) -> Result<u32> {
        let mut inner = self.inner.lock().await;
        let first = inner.state.get("key-packages")?.is_none();
        let mut available = match self.upload_key_packages(&mut inner, 1, first).await {
            Ok(available) => available,
            // The server holds as many as it keeps: nothing to top up.
            Err(ClientError::ResourceExhausted(_)) => return Ok(KEY_PACKAGES_TARGET),
            Err(other) => return Err(other),
        };
        if available < KEY_PACKAGES_LOW {
            available = self
                .upload_key_packages(&mut inner, KEY_PACKAGES_TARGET - available, false)
                .await?;
        }
        Ok(available)
    }

    async fn upload_key_packages(
        &self,
        inner: &mut Inner,
        count: u32,
        last_resort: bool,
    ) -> Result<u32> {
        let mut packages = Vec::new();
        for _ in 0..count {
            packages.push(inner.key_package(false)?);
        }
        let last = if last_resort {
            inner.key_package(true)?
        } else {
            Vec::new()
        };
        // Private keys are on disk before the server can hand out their key
        // packages.
        inner
            .state
            .persist(&[("key-packages".into(), Some(b"1".to_vec()))])?;
        let request = v1::UploadKeyPackagesRequest {
            device_id: self.device.to_string(),
            key_packages: packages,
            last_resort_key_package: last,
        };
        let answer = self
            .client
            .directory()
            .upload_key_packages(self.client.request(request)?)
            .await?;
        Ok(answer.into_inner().available)
    }

    /// Creates the group of a consult this device's professional owns, at
    /// epoch 0, before anything is posted in its thread.
    ///
    /// # Errors
    /// [`ClientError::FailedPrecondition`] when the thread already started.
    pub async fn create_thread(&self, consult: Uuid) -> Result<()> {
        let mut inner = self.inner.lock().await;
        if inner.load_group(consult)?.is_some() {
            return Ok(());
        }
        let page = self.fetch(consult, 1).await?;
        if page.latest_sequence != 0 {
            return Err(ClientError::FailedPrecondition(format!(
                "the thread of consult {consult} already started"
            )));
        }
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .use_ratchet_tree_extension(true)
            .build();
        let credential = inner.credential.clone();
        MlsGroup::new_with_group_id(
            inner.state.provider(),
            &inner.signer,
            &config,
            group_id(consult),
            credential,
        )
        .map_err(|e| local("cannot create the group", e))?;
        let thread = ThreadRecord {
            from_start: true,
            ..inner.thread(consult)?
        };
        inner.persist(consult, &thread, Vec::new())
    }

    async fn fetch(&self, consult: Uuid, from: u64) -> Result<v1::FetchThreadResponse> {
        let request = v1::FetchThreadRequest {
            consult_id: consult.to_string(),
            device_id: self.device.to_string(),
            from_sequence: from,
            page_size: 0,
        };
        Ok(self
            .threads()
            .fetch_thread(self.client.request(request)?)
            .await?
            .into_inner())
    }

    /// The active devices of the consult's active participants, with their
    /// listed signature keys, and every device that may have been added by
    /// an earlier commit (see [`Roster`]).
    async fn roster(&self, consult: Uuid) -> Result<Roster> {
        let c = self.client.consult(consult).await?;
        let mut roster = Roster {
            owner: c.owner,
            current: HashMap::new(),
            known: HashMap::new(),
        };
        // A consult whose basis ended (suspended) or that ended keeps only
        // its owner in the group: nobody else may read what follows.
        let open = matches!(
            c.state,
            crate::consult::ConsultState::Requested | crate::consult::ConsultState::Accepted
        );
        let active: BTreeSet<Uuid> = c
            .participants
            .iter()
            .filter(|p| open && p.status == ParticipantStatus::Active)
            .map(|p| p.professional)
            .chain([c.owner])
            .collect();
        let everyone: BTreeSet<Uuid> = c
            .participants
            .iter()
            .map(|p| p.professional)
            .chain([c.owner])
            .collect();
        for professional in everyone {
            let (_, listed) = self.client.professional_with_devices(professional).await?;
            for device in listed {
                let entry = (professional, device.signature_public_key);
                if device.revoked_at.is_none() && active.contains(&professional) {
                    roster.current.insert(device.id, entry.clone());
                }
                roster.known.insert(device.id, entry);
            }
        }
        Ok(roster)
    }

    /// Checks that every member of `group` not in `known` is one of
    /// `listed`, with the listed key.
    fn check_new_members(
        consult: Uuid,
        group: &MlsGroup,
        known: &BTreeSet<Vec<u8>>,
        listed: &Listed,
    ) -> Result<()> {
        for member in group.members() {
            if known.contains(&member.signature_key) {
                continue;
            }
            let device = member_device(&member.credential).ok_or_else(|| {
                ClientError::GroupMismatch(format!(
                    "a member of consult {consult}'s group has a credential that names no device"
                ))
            })?;
            match listed.get(&device) {
                Some((_, key)) if *key == member.signature_key => {}
                Some(_) => {
                    return Err(ClientError::GroupMismatch(format!(
                        "device {device} in consult {consult}'s group has another signature key \
                         than the directory lists for it"
                    )));
                }
                None => {
                    return Err(ClientError::GroupMismatch(format!(
                        "device {device} in consult {consult}'s group is not a device of a \
                         participant of the consult"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks who a commit by `sender` removed (members `before` it and
    /// not in `group` now): only the owner's devices remove a device that
    /// must stay (an active device of an active participant); anyone may
    /// remove one that no longer belongs, as the specialists do after a
    /// handover.
    fn check_removals(
        consult: Uuid,
        group: &MlsGroup,
        before: &BTreeMap<Vec<u8>, Option<Uuid>>,
        sender: Uuid,
        roster: &Roster,
    ) -> Result<()> {
        let by_owner = roster
            .known
            .get(&sender)
            .is_some_and(|(professional, _)| *professional == roster.owner);
        if by_owner {
            return Ok(());
        }
        let after: BTreeSet<Vec<u8>> = group.members().map(|m| m.signature_key).collect();
        for (key, device) in before {
            if !after.contains(key)
                && let Some(device) = device
                && roster.current.contains_key(device)
            {
                return Err(ClientError::GroupMismatch(format!(
                    "device {sender}, not the owner's, removed device {device} of a participant \
                     from consult {consult}'s group"
                )));
            }
        }
        Ok(())
    }

    /// Checks that the group's members are exactly the active devices of
    /// the consult's active participants, each with its listed key.
    ///
    /// # Errors
    /// [`ClientError::GroupMismatch`] naming the first difference.
    pub async fn verify_members(&self, consult: Uuid) -> Result<()> {
        let listed = self.roster(consult).await?.current;
        let inner = self.inner.lock().await;
        let group = inner
            .load_group(consult)?
            .ok_or_else(|| not_member(consult))?;
        Self::check_new_members(consult, &group, &BTreeSet::new(), &listed)?;
        let members: BTreeSet<Uuid> = group
            .members()
            .filter_map(|m| member_device(&m.credential))
            .collect();
        if let Some(missing) = listed.keys().find(|d| !members.contains(d)) {
            return Err(ClientError::GroupMismatch(format!(
                "device {missing} of a participant is not in consult {consult}'s group yet"
            )));
        }
        Ok(())
    }

    /// Keeps a consult's group in line with what a consult event says
    /// changed, when this device is the one to do it; returns what it
    /// changed, or `None` when it had nothing to do.
    ///
    /// The owner's devices add a specialist who accepted and remove one who
    /// left or was removed. When the consult's basis ends (suspended) or the
    /// consult is closed, they remove every device but the owner's, so no
    /// one whose basis ended reads anything sent later (a new basis adds
    /// the specialists again, with a new Welcome). After a handover the new
    /// owner is not in the group yet, so the specialists' devices remove the
    /// previous owner's devices and add the new owner's (whoever commits
    /// first does it; the others find nothing left to do).
    ///
    /// # Errors
    /// As [`Messenger::sync_members`].
    pub async fn follow(
        &self,
        event: &crate::consult::ConsultEvent,
    ) -> Result<Option<MembershipChange>> {
        use crate::consult::{ConsultChange as C, ConsultState as S};
        let Some(view) = &event.view else {
            return Ok(None);
        };
        let me = self
            .client
            .professional()
            .ok_or(ClientError::NoProfessional)?;
        let open = matches!(view.state, S::Requested | S::Accepted);
        let duty = match event.change {
            C::Accepted | C::ParticipantLeft | C::ParticipantRemoved | C::LegalBasisChanged => {
                view.owner == me && open
            }
            // The basis ended, or the consult did: the owner's devices take
            // everyone else out.
            C::Suspended | C::Closed => view.owner == me && !open,
            C::OwnerChanged => open,
            _ => false,
        };
        if !duty || !self.joined(event.consult).await? {
            return Ok(None);
        }
        self.sync_members(event.consult).await.map(Some)
    }

    /// Brings the group's members in line with the consult's participants:
    /// removes devices of professionals who no longer take part (or revoked
    /// devices), then adds every active device of every active participant
    /// that is missing, with key packages claimed from the server. For the
    /// consult's owner, and for a specialist after a handover (see
    /// [`Messenger::follow`]).
    ///
    /// # Errors
    /// [`ClientError`] when a step fails; what was committed stays.
    pub async fn sync_members(&self, consult: Uuid) -> Result<MembershipChange> {
        let queue = self.send_queue(consult);
        let _turn = queue.lock().await;
        let mut change = MembershipChange::default();
        for _ in 0..POST_ATTEMPTS {
            self.catch_up(consult).await?;
            let listed = self.roster(consult).await?.current;
            let mut inner = self.inner.lock().await;
            let mut group = inner.group_to_commit(consult)?;
            let members: Vec<(openmls::prelude::LeafNodeIndex, Option<Uuid>)> = group
                .members()
                .map(|m| (m.index, member_device(&m.credential)))
                .collect();
            let stale: Vec<_> = members
                .iter()
                .filter(|(index, device)| {
                    *index != group.own_leaf_index()
                        && device.is_none_or(|d| !listed.contains_key(&d))
                })
                .collect();
            if !stale.is_empty() {
                let leaves: Vec<_> = stale.iter().map(|(index, _)| *index).collect();
                let (commit, _, _) = group
                    .remove_members(inner.state.provider(), &inner.signer, &leaves)
                    .map_err(|e| local("cannot make the removal commit", e))?;
                let removed: Vec<Uuid> = stale.iter().filter_map(|(_, d)| *d).collect();
                if self
                    .post_commit(&mut inner, consult, &mut group, &commit, Vec::new())
                    .await?
                {
                    change.removed.extend(removed);
                }
                continue;
            }
            let present: BTreeSet<Uuid> = members.iter().filter_map(|(_, d)| *d).collect();
            let missing: BTreeSet<Uuid> = listed
                .iter()
                .filter(|(device, _)| !present.contains(device))
                .map(|(_, (professional, _))| *professional)
                .collect();
            if missing.is_empty() {
                return Ok(change);
            }
            let mut packages = Vec::new();
            let mut added = Vec::new();
            for professional in missing {
                for claimed in self.claim(consult, professional).await? {
                    let device = crate::types::uuid("device_id", &claimed.device_id)?;
                    if present.contains(&device) {
                        continue;
                    }
                    let package = validate_key_package(&inner, device, &claimed.key_package)?;
                    let credential = package.leaf_node().credential();
                    let listed_key = listed.get(&device).map(|(_, key)| key.as_slice());
                    if member_device(credential) != Some(device)
                        || listed_key != Some(package.leaf_node().signature_key().as_slice())
                    {
                        return Err(ClientError::GroupMismatch(format!(
                            "the key package claimed for device {device} is not signed with its \
                             listed key"
                        )));
                    }
                    packages.push(package);
                    added.push(device);
                }
            }
            if packages.is_empty() {
                return Ok(change);
            }
            let (commit, welcome, _) = group
                .add_members(inner.state.provider(), &inner.signer, &packages)
                .map_err(|e| local("cannot make the add commit", e))?;
            let welcomes = vec![v1::WelcomeDelivery {
                welcome: serialize(&welcome)?,
                device_ids: added.iter().map(Uuid::to_string).collect(),
            }];
            if self
                .post_commit(&mut inner, consult, &mut group, &commit, welcomes)
                .await?
            {
                drop(inner);
                self.catch_up(consult).await?;
                change.added.extend(added);
                return Ok(change);
            }
        }
        Err(ClientError::Aborted(format!(
            "the thread of consult {consult} kept moving; sync again"
        )))
    }

    async fn claim(&self, consult: Uuid, professional: Uuid) -> Result<Vec<v1::ClaimedKeyPackage>> {
        let request = v1::ClaimKeyPackagesRequest {
            consult_id: consult.to_string(),
            professional_id: professional.to_string(),
        };
        Ok(self
            .client
            .directory()
            .claim_key_packages(self.client.request(request)?)
            .await?
            .into_inner()
            .key_packages)
    }

    /// Posts a pending commit; merges it when accepted (`true`), drops it
    /// when the thread moved on (`false`: catch up and try again).
    async fn post_commit(
        &self,
        inner: &mut Inner,
        consult: Uuid,
        group: &mut MlsGroup,
        commit: &MlsMessageOut,
        welcomes: Vec<v1::WelcomeDelivery>,
    ) -> Result<bool> {
        let mut thread = inner.thread(consult)?;
        // The pending commit is on disk before it can be accepted: after a
        // crash, catching up finds it in the thread and merges it.
        inner.persist(consult, &thread, Vec::new())?;
        let request = v1::PostCommitRequest {
            consult_id: consult.to_string(),
            device_id: self.device.to_string(),
            epoch: group.epoch().as_u64(),
            commit: serialize(commit)?,
            welcomes,
            request_id: Uuid::new_v4().to_string(),
        };
        match self
            .threads()
            .post_commit(self.client.request(request)?)
            .await
        {
            Ok(answer) => {
                // Messages stored before the commit were made in the old
                // epoch: while some are unread, the commit stays pending and
                // catching up merges it when it reaches it.
                if answer.into_inner().sequence == thread.next_sequence {
                    group
                        .merge_pending_commit(inner.state.provider())
                        .map_err(|e| local("cannot merge the commit", e))?;
                    thread.next_sequence += 1;
                    inner.persist(consult, &thread, Vec::new())?;
                }
                Ok(true)
            }
            Err(status) if status.code() == tonic::Code::Aborted => {
                group
                    .clear_pending_commit(inner.state.provider().storage())
                    .map_err(|e| local("cannot drop the commit", e))?;
                inner.persist(consult, &thread, Vec::new())?;
                Ok(false)
            }
            Err(status) => {
                // A refusal voids the commit; a lost answer leaves it pending:
                // catching up merges it if the server stored it, and the next
                // commit drops it if not.
                if !matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::Unknown
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                        | tonic::Code::Internal
                ) {
                    group
                        .clear_pending_commit(inner.state.provider().storage())
                        .map_err(|e| local("cannot drop the commit", e))?;
                    inner.persist(consult, &thread, Vec::new())?;
                }
                Err(status.into())
            }
        }
    }

    /// Renews this device's key material in a consult's group with a
    /// commit (post-compromise security). Retried after catching up when
    /// another member committed first.
    ///
    /// # Errors
    /// [`ClientError`] when the state or the server fails.
    pub async fn update_keys(&self, consult: Uuid) -> Result<u64> {
        let queue = self.send_queue(consult);
        let _turn = queue.lock().await;
        for _ in 0..POST_ATTEMPTS {
            self.catch_up(consult).await?;
            let mut inner = self.inner.lock().await;
            let mut group = inner.group_to_commit(consult)?;
            let bundle = group
                .self_update(
                    inner.state.provider(),
                    &inner.signer,
                    openmls::prelude::LeafNodeParameters::default(),
                )
                .map_err(|e| local("cannot make the update commit", e))?;
            let commit = bundle.into_commit();
            if self
                .post_commit(&mut inner, consult, &mut group, &commit, Vec::new())
                .await?
            {
                drop(inner);
                self.catch_up(consult).await?;
                return Ok(self.epoch(consult).await?.unwrap_or_default());
            }
        }
        Err(ClientError::Aborted(format!(
            "the thread of consult {consult} kept moving; update again"
        )))
    }

    /// Encrypts and posts a message; returns its sequence. Catches up and
    /// encrypts again when the thread moved to a newer epoch meanwhile.
    ///
    /// # Errors
    /// [`ClientError::FailedPrecondition`] when the consult refuses posts
    /// (suspended or closed: the message says why).
    pub async fn send(&self, consult: Uuid, text: &str, reply_to: Option<u64>) -> Result<u64> {
        self.send_with(consult, text, reply_to, &[]).await
    }

    /// Like [`Messenger::send`], with attachments: each is encrypted with a
    /// fresh key and uploaded first, and the message carries the keys.
    ///
    /// # Errors
    /// As [`Messenger::send`]; ResourceExhausted for an attachment over the
    /// server's limit.
    pub async fn send_with(
        &self,
        consult: Uuid,
        text: &str,
        reply_to: Option<u64>,
        attachments: &[NewAttachment<'_>],
    ) -> Result<u64> {
        self.send_reporting(consult, text, reply_to, attachments, None)
            .await
    }

    /// Like [`Messenger::send_with`], telling `progress` how each
    /// attachment's upload goes.
    ///
    /// # Errors
    /// As [`Messenger::send_with`].
    pub async fn send_reporting(
        &self,
        consult: Uuid,
        text: &str,
        reply_to: Option<u64>,
        attachments: &[NewAttachment<'_>],
        progress: Option<Progress>,
    ) -> Result<u64> {
        let queue = self.send_queue(consult);
        let _turn = queue.lock().await;
        {
            // One read of the group for both checks: loading it decodes
            // the whole group state.
            let inner = self.inner.lock().await;
            let group = inner
                .load_group(consult)?
                .ok_or_else(|| not_member(consult))?;
            if inner.thread(consult)?.removed || !group.is_active() {
                return Err(ClientError::FailedPrecondition(format!(
                    "this device was removed from consult {consult}'s group"
                )));
            }
        }
        // A message whose answer was lost goes first, under its own id. If
        // the server now refuses it for good (the outbox is empty again),
        // this message may still go; any other failure stops it here.
        if let Err(err) = self.deliver_outbox(consult).await {
            if self.inner.lock().await.thread(consult)?.outbox.is_some() {
                return Err(err);
            }
            tracing::warn!(error = %err, "an earlier message whose answer was lost was refused");
        }
        let attachments = self
            .upload_attachments(consult, attachments, progress)
            .await?;
        let message = NewMessage {
            text,
            reply_to,
            attachments: &attachments,
        };
        // Only a send holding this consult's queue fills or empties the
        // outbox, so the message delivered here is this send's own.
        self.deliver_outbox_with(consult, Some(message))
            .await?
            .ok_or_else(|| local("the message to send", "it left the outbox unsent"))
    }

    /// Posts the message a failed send left in `consult`'s outbox (the
    /// server could not be reached, or its answer was lost) under the
    /// request id it was first sent with, so the server stores it once
    /// however often this is tried; returns its sequence, or `None` when no
    /// message waits.
    ///
    /// # Errors
    /// As [`Messenger::send`]; the message stays in the outbox unless the
    /// server refused it for good.
    pub async fn deliver_pending(&self, consult: Uuid) -> Result<Option<u64>> {
        let queue = self.send_queue(consult);
        let _turn = queue.lock().await;
        self.deliver_outbox(consult).await
    }

    /// Whether a message waits in `consult`'s outbox for
    /// [`Messenger::deliver_pending`] (or the next send, which delivers it
    /// first).
    ///
    /// # Errors
    /// [`ClientError::LocalState`] when the device's state cannot be read.
    pub async fn pending(&self, consult: Uuid) -> Result<bool> {
        let queue = self.send_queue(consult);
        let _turn = queue.lock().await;
        Ok(self.inner.lock().await.thread(consult)?.outbox.is_some())
    }

    /// `texts` encrypted as application messages of `consult`'s group at
    /// its current epoch, in the thread's content layout, and not posted:
    /// for a load generator that posts ciphertexts made before it starts
    /// timing, so that it measures the server's cost and not its own
    /// (samenop-bench). The ratchet steps are on disk when this returns, as
    /// for a send, in one write. The device never learns what becomes of
    /// them: use a device made for the load, not one whose thread is read.
    /// They take the device's next sender counts, so other members read
    /// them as its messages when they are posted in the order given.
    ///
    /// # Errors
    /// NotFound when this device is not in the group;
    /// [`ClientError::LocalState`] when its state cannot be read or written.
    pub async fn seal_unsent(&self, consult: Uuid, texts: &[&str]) -> Result<Vec<Vec<u8>>> {
        let queue = self.send_queue(consult);
        let _turn = queue.lock().await;
        let mut inner = self.inner.lock().await;
        let mut thread = inner.thread(consult)?;
        let mut group = inner
            .load_group(consult)?
            .ok_or_else(|| not_member(consult))?;
        let mut sealed = Vec::with_capacity(texts.len());
        for text in texts {
            thread.sent += 1;
            let content = v1::ThreadContent {
                version: CONTENT_VERSION,
                sender_counter: thread.sent,
                text: (*text).to_owned(),
                ..v1::ThreadContent::default()
            };
            let encrypted = group
                .create_message(
                    inner.state.provider(),
                    &inner.signer,
                    &content.encode_to_vec(),
                )
                .map_err(|e| local("cannot encrypt the message", e))?;
            sealed.push(serialize(&encrypted)?);
        }
        inner.persist(consult, &thread, Vec::new())?;
        Ok(sealed)
    }

    /// The send queue of `consult` (see the `sending` field).
    fn send_queue(&self, consult: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut queues = self.sending.lock().unwrap_or_else(PoisonError::into_inner);
        // Queues no send holds or waits for are dropped, so the map holds
        // only the consults being sent to now.
        queues.retain(|_, queue| Arc::strong_count(queue) > 1);
        queues.entry(consult).or_default().clone()
    }

    /// Posts the message waiting in a thread's outbox, if any; returns its
    /// sequence (see [`Messenger::deliver_outbox_with`]).
    async fn deliver_outbox(&self, consult: Uuid) -> Result<Option<u64>> {
        self.deliver_outbox_with(consult, None).await
    }

    /// Posts the message waiting in a thread's outbox (first putting
    /// `message` there, when given), catching up and encrypting it again
    /// when the thread moved to a newer epoch; returns its sequence. A
    /// refusal that certainly stored nothing empties the outbox; any other
    /// failure leaves it for the next send.
    ///
    /// One durable write per attempt: the outbox with the message's
    /// ciphertext and the ratchet step that made it, before the ciphertext
    /// leaves. What the answer changes (the outbox emptied, the message
    /// kept as the device's own) is written without waiting for the disk:
    /// the next durable write carries it, and if a power cut takes it
    /// first, the outbox still holds the ciphertext under its request id,
    /// which the server answers with the same sequence when it is posted
    /// again, or which reading the thread finds stored (see `apply_one`).
    /// The device's lock is not held while the server answers, so sends to
    /// other consults go on meanwhile; this consult's queue keeps its own
    /// sends in order.
    async fn deliver_outbox_with(
        &self,
        consult: Uuid,
        mut message: Option<NewMessage<'_>>,
    ) -> Result<Option<u64>> {
        // Whether the server refused the last ciphertext for a newer epoch.
        let mut stale = false;
        // Whether the waiting message was posted before this call (its
        // answer lost, or a crash took what the answer wrote): it may be
        // stored, whatever the server says now.
        let mut posted_before = None;
        for attempt in 0..POST_ATTEMPTS {
            if attempt > 0 {
                self.catch_up(consult).await?;
            }
            let (request, request_id) = {
                let mut inner = self.inner.lock().await;
                let mut thread = inner.thread(consult)?;
                if let Some(new) = message.take() {
                    let content = v1::ThreadContent {
                        version: CONTENT_VERSION,
                        sender_counter: thread.sent + 1,
                        text: new.text.to_owned(),
                        reply_to_sequence: new.reply_to.unwrap_or(0),
                        attachments: new
                            .attachments
                            .iter()
                            .map(Attachment::to_reference)
                            .collect(),
                    };
                    thread.outbox = Some(Outbox {
                        request_id: Uuid::new_v4(),
                        content: content.encode_to_vec(),
                        sealed: None,
                    });
                }
                let Some(mut outbox) = thread.outbox.clone() else {
                    return Ok(None);
                };
                posted_before.get_or_insert(outbox.sealed.is_some());
                let sealed = match outbox.sealed.take() {
                    Some(sealed) if !stale => sealed,
                    _ => {
                        let mut group = inner
                            .load_group(consult)?
                            .ok_or_else(|| not_member(consult))?;
                        let encrypted = group
                            .create_message(inner.state.provider(), &inner.signer, &outbox.content)
                            .map_err(|e| local("cannot encrypt the message", e))?;
                        let sealed = serialize(&encrypted)?;
                        outbox.sealed = Some(sealed.clone());
                        thread.outbox = Some(outbox.clone());
                        // The ratchet's step is on disk before the
                        // ciphertext leaves.
                        inner.persist(consult, &thread, Vec::new())?;
                        sealed
                    }
                };
                let request = v1::PostMessageRequest {
                    consult_id: consult.to_string(),
                    device_id: self.device.to_string(),
                    mls_message: sealed,
                    request_id: outbox.request_id.to_string(),
                };
                (self.client.request(request)?, outbox.request_id)
            };
            match self.threads().post_message(request).await {
                Ok(answer) => {
                    let sequence = answer.into_inner().sequence;
                    let mut inner = self.inner.lock().await;
                    let mut thread = inner.thread(consult)?;
                    return match thread.outbox.take() {
                        Some(outbox) if outbox.request_id == request_id => {
                            let (thread, extra) =
                                self.posted(&inner, consult, thread, outbox, sequence)?;
                            inner.persist_lazily(consult, &thread, extra)?;
                            Ok(Some(sequence))
                        }
                        // Reading the thread found it stored meanwhile and
                        // completed it.
                        _ => Ok(Some(sequence)),
                    };
                }
                Err(status) if status.code() == tonic::Code::Aborted => stale = true,
                Err(status) if not_stored(status.code()) => {
                    // A message posted before and refused now for who the
                    // caller is (the device revoked, its professional no
                    // longer taking part) may be stored all the same: the
                    // server checks the caller before the request id. It
                    // stays in the outbox rather than be forgotten.
                    let who = matches!(
                        status.code(),
                        tonic::Code::NotFound
                            | tonic::Code::PermissionDenied
                            | tonic::Code::FailedPrecondition
                            | tonic::Code::Unauthenticated
                    );
                    if posted_before == Some(true) && who {
                        return Err(status.into());
                    }
                    let mut inner = self.inner.lock().await;
                    let mut thread = inner.thread(consult)?;
                    if thread
                        .outbox
                        .as_ref()
                        .is_some_and(|o| o.request_id == request_id)
                    {
                        thread.outbox = None;
                        inner.persist(consult, &thread, Vec::new())?;
                    }
                    return Err(status.into());
                }
                Err(status) => return Err(status.into()),
            }
        }
        Err(ClientError::Aborted(format!(
            "the thread of consult {consult} kept moving; send again"
        )))
    }

    /// `thread` once `outbox`'s message is stored at `sequence`: the
    /// outbox emptied, the sender count moved on, and the message's record
    /// as this device's own, to be written with it.
    fn posted(
        &self,
        inner: &Inner,
        consult: Uuid,
        mut thread: ThreadRecord,
        outbox: Outbox,
        sequence: u64,
    ) -> Result<(ThreadRecord, Records)> {
        let content = v1::ThreadContent::decode(outbox.content.as_slice())
            .map_err(|e| local("the outbox", e))?;
        thread.sent = thread.sent.max(content.sender_counter);
        thread.outbox = None;
        if sequence == thread.next_sequence {
            thread.next_sequence += 1;
        }
        let attachments = content
            .attachments
            .into_iter()
            .map(Attachment::from_reference)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| local("the outbox", e))?;
        let message = ThreadMessage {
            consult,
            sequence,
            sender_device: self.device,
            sender_professional: inner.device.professional,
            text: content.text,
            reply_to: (content.reply_to_sequence != 0).then_some(content.reply_to_sequence),
            attachments,
            own: true,
            posted_at: Some(std::time::SystemTime::now()),
        };
        Ok((
            thread,
            vec![(message_key(consult, sequence), Some(json(&message)?))],
        ))
    }

    /// Reads what is new in a consult's thread (joining its group first when
    /// a Welcome waits), applies it in order and returns the new messages of
    /// others.
    ///
    /// # Errors
    /// [`ClientError::Rejected`] for a message that fails decryption or
    /// verification; the thread stays at that message.
    pub async fn catch_up(&self, consult: Uuid) -> Result<Vec<ThreadMessage>> {
        let mut received = Vec::new();
        loop {
            let (from, standing) = {
                let inner = self.inner.lock().await;
                let thread = inner.thread(consult)?;
                let standing = inner
                    .load_group(consult)?
                    .map(|group| group.is_active() && !thread.removed);
                (thread.next_sequence, standing)
            };
            let page = self.fetch(consult, from).await?;
            // Not in the group, or added again after a removal (seen or
            // not): the Welcome that added this device (again) is where it
            // starts. The Welcome of the current membership lies behind.
            let welcome = match standing {
                None => page.welcomes.first(),
                Some(_) => page.welcomes.first().filter(|w| w.commit_sequence >= from),
            };
            if let Some(welcome) = welcome {
                self.join(consult, welcome).await?;
                continue;
            }
            if standing.is_none() {
                return Ok(received);
            }
            if standing == Some(true)
                && let Some(first) = page.entries.first()
                && first.sequence > from
            {
                return Err(ClientError::FailedPrecondition(format!(
                    "consult {consult}'s thread is not available to this device from sequence \
                     {from}; the consult's owner must add it again"
                )));
            }
            let done = page.next_sequence > page.latest_sequence || page.entries.is_empty();
            received.extend(self.apply(consult, page.entries).await?);
            if done {
                return Ok(received);
            }
        }
    }

    /// Whether this device holds the consult's group: it made it, or
    /// joined it from a Welcome.
    ///
    /// # Errors
    /// [`ClientError::LocalState`] when the state cannot be read.
    pub async fn joined(&self, consult: Uuid) -> Result<bool> {
        Ok(self.inner.lock().await.load_group(consult)?.is_some())
    }

    async fn join(&self, consult: Uuid, welcome: &v1::WelcomeMessage) -> Result<()> {
        let listed = self.roster(consult).await?.known;
        let mut inner = self.inner.lock().await;
        let message = MlsMessageIn::tls_deserialize_exact_bytes(&welcome.welcome)
            .map_err(|e| rejected(consult, welcome.commit_sequence, e))?;
        let MlsMessageBodyIn::Welcome(body) = message.extract() else {
            return Err(rejected(consult, welcome.commit_sequence, "not a Welcome"));
        };
        let config = MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .build();
        // A group this device was removed from gives way to the new one;
        // its own sender count goes on, so others see no repeat.
        let before = inner.thread(consult)?;
        // Another task of this device joined from this Welcome (or a later
        // one) while the lock was free: the group it made stands.
        if !before.removed
            && before.next_sequence > welcome.commit_sequence
            && inner.load_group(consult)?.is_some_and(|g| g.is_active())
        {
            return Ok(());
        }
        if let Some(mut old) = inner.load_group(consult)? {
            old.delete(inner.state.provider().storage())
                .map_err(|e| local("cannot drop the group it was removed from", e))?;
        }
        let group = StagedWelcome::new_from_welcome(inner.state.provider(), &config, body, None)
            .and_then(|staged| staged.into_group(inner.state.provider()))
            .map_err(|e| rejected(consult, welcome.commit_sequence, e));
        let group = match group {
            Ok(group) => group,
            Err(err) => {
                inner.state.roll_back();
                return Err(err);
            }
        };
        if group.group_id() != &group_id(consult) {
            inner.state.roll_back();
            return Err(rejected(
                consult,
                welcome.commit_sequence,
                "a Welcome for another group",
            ));
        }
        if let Err(err) = Self::check_new_members(consult, &group, &BTreeSet::new(), &listed) {
            inner.state.roll_back();
            return Err(err);
        }
        // The outbox stays: a message waiting to be sent goes in the new
        // group (one already stored gets its answer again by its id).
        let thread = ThreadRecord {
            next_sequence: welcome.commit_sequence + 1,
            from_start: welcome.commit_sequence == 1,
            sent: before.sent,
            outbox: before.outbox,
            ..ThreadRecord::default()
        };
        inner.persist(consult, &thread, Vec::new())?;
        drop(inner);
        // The Welcome used one of this device's key packages. The join
        // stands whether or not the top-up gets through now; the next
        // join tries again.
        if let Err(err) = self.top_up_key_packages().await {
            tracing::warn!(error = %err, "key packages not topped up after joining a group");
        }
        Ok(())
    }

    /// Applies thread entries (from [`Messenger::catch_up`] or from
    /// [`Event`]s) in order; entries already applied are skipped, and a gap
    /// before them is fetched first. Returns the new messages of others.
    ///
    /// # Errors
    /// [`ClientError::Rejected`] for a message that fails decryption or
    /// verification, or that is out of its sender's order.
    pub async fn apply(
        &self,
        consult: Uuid,
        entries: Vec<v1::ThreadEntry>,
    ) -> Result<Vec<ThreadMessage>> {
        let applied = self.apply_entries(consult, entries).await;
        // Each entry was written without waiting for the disk; one sync
        // makes them all durable (and whatever another task of this device
        // applied meanwhile) before any of them is handed out. A crash
        // before it loses only what nobody was given: the device reads it
        // again, with the keys it then still holds. A refusal of an entry
        // is reported as it is, whatever the sync says.
        let synced = self.inner.lock().await.state.sync();
        let received = applied?;
        synced?;
        Ok(received)
    }

    /// The work of [`Messenger::apply`], each entry written lazily.
    async fn apply_entries(
        &self,
        consult: Uuid,
        entries: Vec<v1::ThreadEntry>,
    ) -> Result<Vec<ThreadMessage>> {
        let mut received = Vec::new();
        for entry in entries {
            let next = self.inner.lock().await.thread(consult)?.next_sequence;
            if entry.sequence < next {
                continue;
            }
            if entry.sequence > next {
                received.extend(Box::pin(self.catch_up(consult)).await?);
                continue;
            }
            if entry.consult_id != consult.to_string() {
                return Err(rejected(
                    consult,
                    entry.sequence,
                    "an entry of another thread",
                ));
            }
            let sender = crate::types::uuid("sender_device_id", &entry.sender_device_id)?;
            let committed_by_other =
                entry.kind == v1::ThreadEntryKind::Commit as i32 && sender != self.device;
            // A sender's professional is checked against the directory the
            // first time this device reads that sender in this thread.
            let unknown_sender = sender != self.device
                && !self
                    .inner
                    .lock()
                    .await
                    .thread(consult)?
                    .senders
                    .contains_key(&sender);
            // Who may join is read before the commit is applied. A device
            // no longer allowed to read the consult cannot read it; a commit
            // that removes it still applies (and ends its membership).
            let listed = if committed_by_other || unknown_sender {
                match self.roster(consult).await {
                    Ok(listed) => Some(listed),
                    Err(ClientError::NotFound(_)) => None,
                    Err(other) => return Err(other),
                }
            } else {
                None
            };
            let mut inner = self.inner.lock().await;
            // Another task of this device may have applied it (or more)
            // while the lock was free: its keys are gone, so it must not be
            // decrypted twice.
            let next = inner.thread(consult)?.next_sequence;
            if entry.sequence != next {
                drop(inner);
                if entry.sequence > next {
                    received.extend(Box::pin(self.catch_up(consult)).await?);
                }
                continue;
            }
            let result = self.apply_one(&mut inner, consult, &entry, listed.as_ref());
            match result {
                Ok(message) => received.extend(message),
                Err(err) => {
                    inner.state.roll_back();
                    return Err(err);
                }
            }
        }
        Ok(received)
    }

    fn apply_one(
        &self,
        inner: &mut Inner,
        consult: Uuid,
        entry: &v1::ThreadEntry,
        listed: Option<&Roster>,
    ) -> Result<Option<ThreadMessage>> {
        let sequence = entry.sequence;
        let mut thread = inner.thread(consult)?;
        let mut group = inner
            .load_group(consult)?
            .ok_or_else(|| not_member(consult))?;
        if thread.removed || !group.is_active() {
            return Err(ClientError::FailedPrecondition(format!(
                "this device was removed from consult {consult}'s group"
            )));
        }
        let sender = crate::types::uuid("sender_device_id", &entry.sender_device_id)?;
        let sender_professional =
            crate::types::uuid("sender_professional_id", &entry.sender_professional_id)?;
        if sender == self.device {
            // The message in the outbox, stored although its answer was
            // lost (or a power cut took what the answer wrote): kept as
            // this device's own now, as the answer would have.
            if entry.kind == v1::ThreadEntryKind::Application as i32
                && let Some(outbox) = thread
                    .outbox
                    .clone()
                    .filter(|o| o.sealed.as_deref() == Some(entry.mls_message.as_slice()))
            {
                let (thread, extra) = self.posted(inner, consult, thread, outbox, sequence)?;
                inner.persist_lazily(consult, &thread, extra)?;
                return Ok(None);
            }
            // Our own message or commit: a commit still pending (posted
            // before a crash) is merged now.
            if entry.kind == v1::ThreadEntryKind::Commit as i32 {
                if group.pending_commit().is_none() {
                    // Posted, given up on, and stored after all: this device
                    // no longer holds what the commit moved the group to.
                    return Err(rejected(
                        consult,
                        sequence,
                        "it is this device's own commit, which it had given up on; the \
                         consult's owner must remove this device and add it again",
                    ));
                }
                group
                    .merge_pending_commit(inner.state.provider())
                    .map_err(|e| rejected(consult, sequence, e))?;
            }
            thread.next_sequence += 1;
            inner.persist_lazily(consult, &thread, Vec::new())?;
            return Ok(None);
        }
        let message = MlsMessageIn::tls_deserialize_exact_bytes(&entry.mls_message)
            .map_err(|e| rejected(consult, sequence, e))?;
        let protocol = message
            .try_into_protocol_message()
            .map_err(|e| rejected(consult, sequence, e))?;
        // Another member's commit won the epoch: ours, if pending, is void.
        if entry.kind == v1::ThreadEntryKind::Commit as i32 && group.pending_commit().is_some() {
            group
                .clear_pending_commit(inner.state.provider().storage())
                .map_err(|e| local("cannot drop a pending commit", e))?;
        }
        let processed = group
            .process_message(inner.state.provider(), protocol)
            .map_err(|e| rejected(consult, sequence, e))?;
        if member_device(processed.credential()) != Some(sender) {
            return Err(rejected(
                consult,
                sequence,
                "it was signed by another device than the one it names",
            ));
        }
        // The device is proven by its signature; whose device it is comes
        // from the directory, not from the server's entry.
        let owner_of_device = thread
            .senders
            .get(&sender)
            .copied()
            .or_else(|| listed.and_then(|r| r.known.get(&sender)).map(|(p, _)| *p));
        match owner_of_device {
            Some(professional) if professional == sender_professional => {
                thread.senders.insert(sender, professional);
            }
            Some(_) => {
                return Err(rejected(
                    consult,
                    sequence,
                    "it names another professional than the one its device belongs to",
                ));
            }
            // A commit read by a device that lost access to the consult
            // (it removes this device): its effect is what matters.
            None if listed.is_none() && entry.kind == v1::ThreadEntryKind::Commit as i32 => {}
            None => {
                return Err(rejected(
                    consult,
                    sequence,
                    "its device is not a listed device of a participant",
                ));
            }
        }
        let mut out = None;
        let mut extra = Vec::new();
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(application) => {
                let content = v1::ThreadContent::decode(application.into_bytes().as_slice())
                    .map_err(|e| rejected(consult, sequence, e))?;
                if content.version != CONTENT_VERSION {
                    return Err(rejected(
                        consult,
                        sequence,
                        format!("content version {} is not known", content.version),
                    ));
                }
                let seen = thread.received.get(&sender).copied();
                let last = seen.unwrap_or(0);
                let in_order = match seen {
                    Some(last) => content.sender_counter == last + 1,
                    None if thread.from_start => content.sender_counter == 1,
                    // Joined mid-thread: what the sender sent before is
                    // not this device's to read.
                    None => content.sender_counter >= 1,
                };
                if !in_order {
                    return Err(rejected(
                        consult,
                        sequence,
                        format!(
                            "it is out of its sender's order (count {} after {last}): replayed, \
                             moved or a message before it was dropped",
                            content.sender_counter
                        ),
                    ));
                }
                thread.received.insert(sender, content.sender_counter);
                let attachments = content
                    .attachments
                    .into_iter()
                    .map(Attachment::from_reference)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|why| rejected(consult, sequence, why))?;
                let message = ThreadMessage {
                    consult,
                    sequence,
                    sender_device: sender,
                    sender_professional,
                    text: content.text,
                    reply_to: (content.reply_to_sequence != 0).then_some(content.reply_to_sequence),
                    attachments,
                    own: false,
                    posted_at: entry
                        .posted_at
                        .and_then(|t| std::time::SystemTime::try_from(t).ok()),
                };
                extra.push((message_key(consult, sequence), Some(json(&message)?)));
                out = Some(message);
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let before: BTreeMap<Vec<u8>, Option<Uuid>> = group
                    .members()
                    .map(|m| (m.signature_key, member_device(&m.credential)))
                    .collect();
                group
                    .merge_staged_commit(inner.state.provider(), *staged)
                    .map_err(|e| rejected(consult, sequence, e))?;
                if group.is_active() {
                    let roster = listed.ok_or_else(|| {
                        ClientError::GroupMismatch(format!(
                            "consult {consult}'s group changed, but the server no longer shows \
                             this professional the consult's participants to check it"
                        ))
                    })?;
                    let known: BTreeSet<Vec<u8>> = before.keys().cloned().collect();
                    Self::check_new_members(consult, &group, &known, &roster.known)?;
                    Self::check_removals(consult, &group, &before, sender, roster)?;
                } else {
                    thread.removed = true;
                }
            }
            ProcessedMessageContent::ProposalMessage(_)
            | ProcessedMessageContent::ExternalJoinProposalMessage(_) => {
                return Err(rejected(
                    consult,
                    sequence,
                    "stand-alone proposals are not used",
                ));
            }
            ProcessedMessageContent::OwnPendingCommit
            | ProcessedMessageContent::OwnPrivateMessage => {
                return Err(rejected(
                    consult,
                    sequence,
                    "it is this device's own but names another sender",
                ));
            }
        }
        thread.next_sequence += 1;
        inner.persist_lazily(consult, &thread, extra)?;
        Ok(out)
    }

    /// Every message of a consult's thread this device has read or sent, in
    /// order.
    ///
    /// # Errors
    /// [`ClientError::LocalState`] when the state cannot be read.
    pub async fn messages(&self, consult: Uuid) -> Result<Vec<ThreadMessage>> {
        let mut inner = self.inner.lock().await;
        // What another task applied is handed out only once durable.
        inner.state.sync()?;
        inner
            .state
            .scan(&format!("message/{consult}/"))?
            .into_iter()
            .map(|(_, raw)| from_json(&raw))
            .collect()
    }

    /// At most `limit` messages of a consult's thread this device has read
    /// or sent, after the sequence `after`, in order, up to where the
    /// device has applied the thread: its own message stored at a sequence
    /// beyond entries it has not read yet waits until they are read, so a
    /// reader paging on never skips a message of others.
    ///
    /// # Errors
    /// [`ClientError::LocalState`] when the state cannot be read.
    pub async fn messages_after(
        &self,
        consult: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ThreadMessage>> {
        let mut inner = self.inner.lock().await;
        // What another task applied is handed out only once durable.
        inner.state.sync()?;
        let applied = inner.thread(consult)?.next_sequence;
        let mut messages = Vec::new();
        for (_, raw) in inner.state.scan_from(
            &format!("message/{consult}/"),
            &message_key(consult, after.saturating_add(1)),
            limit,
        )? {
            let message: ThreadMessage = from_json(&raw)?;
            if message.sequence >= applied {
                break;
            }
            messages.push(message);
        }
        Ok(messages)
    }

    /// The group's current epoch, or `None` when this device is not in it.
    ///
    /// # Errors
    /// [`ClientError::LocalState`] when the state cannot be read.
    pub async fn epoch(&self, consult: Uuid) -> Result<Option<u64>> {
        let inner = self.inner.lock().await;
        Ok(inner.load_group(consult)?.map(|g| g.epoch().as_u64()))
    }

    /// Subscribes to this device's events after `cursor` (from the oldest
    /// kept when `None`).
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a cursor of another device.
    pub async fn subscribe(&self, cursor: Option<&str>) -> Result<Events> {
        let request = v1::SubscribeRequest {
            device_id: self.device.to_string(),
            cursor: cursor.unwrap_or_default().to_owned(),
        };
        let stream = self
            .threads()
            .subscribe(self.client.request(request)?)
            .await?
            .into_inner();
        Ok(Events { stream })
    }
}

/// Parses and validates the key package claimed for `device`.
fn validate_key_package(inner: &Inner, device: Uuid, raw: &[u8]) -> Result<KeyPackage> {
    let message = MlsMessageIn::tls_deserialize_exact_bytes(raw).map_err(|e| {
        ClientError::Protocol(format!(
            "the key package claimed for device {device} is malformed: {e}"
        ))
    })?;
    let MlsMessageBodyIn::KeyPackage(package) = message.extract() else {
        return Err(ClientError::Protocol(format!(
            "the key package claimed for device {device} is not one"
        )));
    };
    let package: KeyPackageIn = package;
    package
        .validate(inner.state.provider().crypto(), ProtocolVersion::Mls10)
        .map_err(|e| {
            ClientError::GroupMismatch(format!(
                "the key package claimed for device {device} is invalid: {e}"
            ))
        })
}

/// Registers a device with `signer`'s public key; when an earlier attempt
/// registered it already (and crashed before keeping the answer), finds it.
async fn register(
    client: &Client,
    professional: Uuid,
    signer: &SignatureKeyPair,
    label: &str,
) -> Result<Uuid> {
    let public = signer.to_public_vec();
    match client.register_device(professional, &public, label).await {
        Ok(device) => Ok(device.id),
        Err(ClientError::FailedPrecondition(text)) => {
            let (_, devices) = client.professional_with_devices(professional).await?;
            devices
                .into_iter()
                .find(|d| d.signature_public_key == public && d.revoked_at.is_none())
                .map(|d| d.id)
                .ok_or(ClientError::FailedPrecondition(text))
        }
        Err(other) => Err(other),
    }
}
