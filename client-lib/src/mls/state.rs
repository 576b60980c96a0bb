//! A device's MLS state on local disk: OpenMLS's key-value storage kept in
//! a redb database behind a write-ahead journal (`samenop-journal`),
//! written one whole MLS operation at a time.
//!
//! OpenMLS reads and writes its storage provider (here the in-memory
//! `MemoryStorage` of `openmls_rust_crypto`) many times during one operation
//! and has no transactions. So the provider works on a working copy in
//! memory, and [`DurableState::persist`] writes everything one operation
//! changed (with the client's own records, such as a thread's read position)
//! as one journal record, on disk (written straight to it, past the drive's
//! cache) when it returns, before the caller acts on the result; or, for
//! what can be found again after a crash, held in memory and written in the
//! record of the next durable write or [`DurableState::sync`] (a crash of
//! the process or the power may take what is held, never more). A
//! crash or a power cut in the middle of an operation leaves the state of
//! before it; an operation that fails is undone with
//! [`DurableState::roll_back`]. So a ratchet step is never lost after the
//! ciphertext it made has left: a key and nonce are never used twice. The
//! journal's checkpoints write the records into the redb file in bulk, on a
//! thread of their own.
//!
//! The directory is made mode 0700 and its files 0600 (the journal's too):
//! it holds private keys and the device's own sent messages. Creating them,
//! their parents are `fsync`ed, so a new device's state survives a power
//! cut too.

use std::{
    collections::HashMap,
    ops::Bound,
    path::{Path, PathBuf},
    sync::PoisonError,
};

use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider;
use redb::TableDefinition;
use samenop_journal::{Changes, Reader, Writer};

use crate::{ClientError, Result};

/// Prefix of OpenMLS's own keys in the database.
const MLS_PREFIX: &[u8] = b"m/";
/// Prefix of the client's own records.
const OWN_PREFIX: &[u8] = b"c/";
/// The one table.
const TABLE: TableDefinition<'static, &'static [u8], &'static [u8]> = TableDefinition::new("state");

/// Changes held in memory before the journal checkpoints them into the
/// file: a device's state is small, and its memory is the application's.
const FREEZE_BYTES: usize = 4 << 20;
/// The database file's name in the state directory.
const FILE: &str = "state.redb";

fn local(what: &str, err: impl std::fmt::Display) -> ClientError {
    ClientError::LocalState(format!("{what}: {err}"))
}

/// The MLS provider and its durable copy.
pub(crate) struct DurableState {
    /// Crypto, randomness and the working copy of the storage.
    provider: OpenMlsRustCrypto,
    /// The OpenMLS entries as last persisted.
    persisted: HashMap<Vec<u8>, Vec<u8>>,
    /// The journal in front of the database (the only writer).
    journal: Writer,
    /// Reads of what is persisted.
    reader: Reader,
}

impl DurableState {
    /// Opens (or creates) the state in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        create_durably(dir)?;
        restrict(dir, 0o700)?;
        let options = samenop_journal::Options {
            // Journals of earlier versions hold records that did not wait
            // for the disk, which reach it in any order until a sync: read
            // back as such.
            each_synced: false,
            // A write that need not wait for the disk is held in memory and
            // goes with the next durable one, in its record: one write,
            // straight to the disk, per durable persist.
            defer_unsynced: true,
            freeze_bytes: FREEZE_BYTES,
            on_checkpoint: None,
        };
        let journal = Writer::open(dir, FILE, TABLE, options).map_err(|e| match e {
            samenop_journal::Error::InUse(_) => ClientError::DeviceInUse(dir.display().to_string()),
            other => local("cannot open the state database", other),
        })?;
        restrict(&dir.join(FILE), 0o600)?;
        let mut state = DurableState {
            provider: OpenMlsRustCrypto::default(),
            persisted: HashMap::new(),
            reader: journal.reader(),
            journal,
        };
        for (key, value) in state.entries(MLS_PREFIX)? {
            state
                .persisted
                .insert(key[MLS_PREFIX.len()..].to_vec(), value);
        }
        *state
            .provider
            .storage()
            .values
            .write()
            .unwrap_or_else(PoisonError::into_inner) = state.persisted.clone();
        Ok(state)
    }

    /// The OpenMLS provider, on the working copy.
    pub(crate) fn provider(&self) -> &OpenMlsRustCrypto {
        &self.provider
    }

    /// Every stored entry whose key starts with `prefix`, in key order.
    fn entries(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.entries_from(prefix, prefix, usize::MAX)
    }

    /// At most `limit` stored entries whose key starts with `prefix`, from
    /// the key `from` on, in key order.
    fn entries_from(
        &self,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.reader
            .scan(prefix, Bound::Included(from), limit)
            .map_err(|e| local("cannot read the state", e))
    }

    /// One of the client's own records.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.reader
            .get(&own_key(key))
            .map_err(|e| local("cannot read the state", e))
    }

    /// The client's own records whose key starts with `prefix`.
    pub(crate) fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.scan_from(prefix, prefix, usize::MAX)
    }

    /// At most `limit` of the client's own records whose key starts with
    /// `prefix`, from the key `from` on.
    pub(crate) fn scan_from(
        &self,
        prefix: &str,
        from: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .entries_from(&own_key(prefix), &own_key(from), limit)?
            .into_iter()
            .map(|(key, value)| {
                let key = String::from_utf8_lossy(&key[OWN_PREFIX.len()..]).into_owned();
                (key, value)
            })
            .collect())
    }

    /// Writes every change OpenMLS made since the last persist, together
    /// with `own` (key, value; `None` removes), as one write transaction,
    /// durable when this returns.
    pub(crate) fn persist(&mut self, own: &[(String, Option<Vec<u8>>)]) -> Result<()> {
        self.persist_with(own, true)
    }

    /// Like [`DurableState::persist`]; with `durable` false, the write is
    /// held in memory (seen by every read at once) and written with the
    /// next durable write or [`DurableState::sync`] (or once a megabyte is
    /// held): a crash, of the process or of the power, may take it, and the
    /// state is then that of the last durable write.
    pub(crate) fn persist_with(
        &mut self,
        own: &[(String, Option<Vec<u8>>)],
        durable: bool,
    ) -> Result<()> {
        // What OpenMLS changed since the last persist, compared in place:
        // only changed entries are copied.
        let (changed, removed) = {
            let current = self
                .provider
                .storage()
                .values
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let changed: Vec<(Vec<u8>, Vec<u8>)> = current
                .iter()
                .filter(|(key, value)| self.persisted.get(*key) != Some(*value))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            let removed: Vec<Vec<u8>> = self
                .persisted
                .keys()
                .filter(|key| !current.contains_key(*key))
                .cloned()
                .collect();
            (changed, removed)
        };
        let mut changes = Changes::new();
        for (key, value) in &changed {
            changes.insert([MLS_PREFIX, key].concat(), Some(value.clone()));
        }
        for key in &removed {
            changes.insert([MLS_PREFIX, key].concat(), None);
        }
        for (key, value) in own {
            changes.insert(own_key(key), value.clone());
        }
        // A write that fails leaves nothing of itself behind: the last
        // persisted state stays what a roll-back returns to (a failed sync
        // stops the journal: the device must be opened again).
        self.journal
            .commit(changes, durable)
            .map_err(|e| local("cannot write the state", e))?;
        for key in removed {
            self.persisted.remove(&key);
        }
        self.persisted.extend(changed);
        Ok(())
    }

    /// Makes every write so far durable, when one did not wait for the
    /// disk (one synced record of what is held).
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.journal
            .sync()
            .map_err(|e| local("cannot sync the state", e))
    }

    /// Undoes every change OpenMLS made since the last persist.
    pub(crate) fn roll_back(&mut self) {
        *self
            .provider
            .storage()
            .values
            .write()
            .unwrap_or_else(PoisonError::into_inner) = self.persisted.clone();
    }
}

/// Creates `dir` and its missing parents, each parent `fsync`ed after, so
/// that they survive a power cut.
fn create_durably(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    create_durably(&parent)?;
    std::fs::create_dir(dir)
        .or_else(|e| if dir.is_dir() { Ok(()) } else { Err(e) })
        .map_err(|e| local("cannot create the state directory", e))?;
    sync_dir(&parent)
}

/// `fsync` of a directory: its entries become durable.
fn sync_dir(dir: &Path) -> Result<()> {
    samenop_journal::sync_dir(dir).map_err(|e| local("cannot sync the state directory", e))
}

fn own_key(key: &str) -> Vec<u8> {
    [OWN_PREFIX, key.as_bytes()].concat()
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)
        .map_err(|e| local("cannot read the state's permissions", e))?
        .permissions()
        .mode()
        & 0o777;
    if current != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| local("cannot restrict the state's permissions", e))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}
