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
//!
//! The code follows the protocol's concepts, as OpenMLS's own does: this
//! module holds the device (opening it) and the records it keeps; `keys`
//! its signature key and key packages; `membership` who is in a group;
//! `sending` the outbox and the per-consult queue; `reading` applying a
//! thread in order; `following` the event stream; `attachment` encrypted
//! files; `state` the durable MLS storage.

mod attachment;
mod compact;
mod following;
mod keys;
mod membership;
mod reading;
mod sending;
mod state;

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
};

use openmls::prelude::{
    BasicCredential, Ciphersuite, CredentialWithKey, GroupId, MlsGroup, MlsMessageOut,
    tls_codec::Serialize as _,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::{OpenMlsProvider, types::SignatureScheme};
use samenop_proto::v1::{self, thread_service_client::ThreadServiceClient};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Client, ClientError, Result};
pub use attachment::{Attachment, NewAttachment, Progress};
pub use following::{Event, EventKind, Events};
use keys::{DeviceSigner, register};
pub use membership::MembershipChange;
pub use reading::ThreadMessage;
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
/// At most this many groups are kept decoded in memory.
const GROUPS_KEPT: usize = 64;

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

/// A message on its way to the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outbox {
    /// The request id every attempt carries.
    request_id: Uuid,
    /// The encoded `ThreadContent`, with its sender count.
    #[serde(with = "compact")]
    content: Vec<u8>,
    /// The MLS message of `content` as last encrypted (and durable with
    /// the ratchet step that made it): posted again as it is after a lost
    /// answer or a crash, encrypted anew only when the server refused it
    /// for a newer epoch. Absent in outboxes of earlier versions.
    #[serde(default, with = "compact::option")]
    sealed: Option<Vec<u8>>,
}

/// The client's own records one write puts (key, value) or removes (key,
/// `None`).
type Records = Vec<(String, Option<Vec<u8>>)>;

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
    /// Groups as decoded from the working copy of the storage, by consult,
    /// and changed only through these objects (OpenMLS writes each change
    /// through to the storage): decoding a group reads its whole state, the
    /// ratchet tree and the secret tree as JSON, which cost a send more than
    /// its encryption. Emptied by every roll-back, which returns the storage
    /// to an earlier state.
    groups: HashMap<Uuid, MlsGroup>,
    /// Thread records as last written, by consult: a send reads its
    /// thread's record several times, and decoding its JSON cost it more
    /// than the encryption. Filled by every write of a record, so it never
    /// differs from the stored one; at most [`GROUPS_KEPT`].
    threads: HashMap<Uuid, ThreadRecord>,
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
    /// The group of `consult`, to change: taken out of the kept ones (or
    /// decoded from the storage), and given back with [`Inner::keep_group`]
    /// once what it changed is persisted, before the lock is released (a
    /// group given back later could be older than one another task decoded
    /// meanwhile). One dropped instead is decoded again the next time.
    fn take_group(&mut self, consult: Uuid) -> Result<Option<MlsGroup>> {
        if let Some(group) = self.groups.remove(&consult) {
            return Ok(Some(group));
        }
        MlsGroup::load(self.state.provider().storage(), &group_id(consult))
            .map_err(|e| local("cannot load a group", e))
    }

    /// Keeps `group` decoded for the next operation (see
    /// [`Inner::take_group`]).
    fn keep_group(&mut self, consult: Uuid, group: MlsGroup) {
        if self.groups.len() >= GROUPS_KEPT && !self.groups.contains_key(&consult) {
            self.groups.clear();
        }
        self.groups.insert(consult, group);
    }

    /// The group of `consult`, to look at.
    fn group(&mut self, consult: Uuid) -> Result<Option<&MlsGroup>> {
        if !self.groups.contains_key(&consult) {
            let Some(group) = self.take_group(consult)? else {
                return Ok(None);
            };
            self.keep_group(consult, group);
        }
        Ok(self.groups.get(&consult))
    }

    /// Undoes every change OpenMLS made since the last persist; the groups
    /// decoded since are dropped with it.
    fn roll_back(&mut self) {
        self.state.roll_back();
        self.groups.clear();
    }

    /// The group, caught up, to build a new commit on: a commit still
    /// pending after catching up was never stored, and is dropped. Given
    /// back as [`Inner::take_group`] says.
    fn group_to_commit(&mut self, consult: Uuid) -> Result<MlsGroup> {
        let mut group = self
            .take_group(consult)?
            .ok_or_else(|| not_member(consult))?;
        if group.pending_commit().is_some() {
            group
                .clear_pending_commit(self.state.provider().storage())
                .map_err(|e| local("cannot drop a pending commit", e))?;
        }
        Ok(group)
    }

    fn thread(&self, consult: Uuid) -> Result<ThreadRecord> {
        if let Some(thread) = self.threads.get(&consult) {
            return Ok(thread.clone());
        }
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
        match &result {
            Ok(()) => {
                if self.threads.len() >= GROUPS_KEPT && !self.threads.contains_key(&consult) {
                    self.threads.clear();
                }
                self.threads.insert(consult, thread.clone());
            }
            Err(_) => self.roll_back(),
        }
        result
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
                groups: HashMap::new(),
                threads: HashMap::new(),
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
}
