//! A device's MLS state on local disk: OpenMLS's key-value storage kept in
//! a redb database, written one whole MLS operation at a time.
//!
//! OpenMLS reads and writes its storage provider (here the in-memory
//! `MemoryStorage` of `openmls_rust_crypto`) many times during one operation
//! and has no transactions. So the provider works on a working copy in
//! memory, and [`DurableState::persist`] writes everything one operation
//! changed (with the client's own records, such as a thread's read position)
//! as one redb write transaction, committed with `Durability::Immediate`
//! (on disk, `fdatasync`ed, when it returns) before the caller acts on the
//! result; or, for what can be found again after a crash, without
//! waiting for the disk, made durable by the next durable write or
//! [`DurableState::sync`] (redb keeps such a write in memory: any crash,
//! not only a power cut, takes it). A crash or a power cut in the middle of an operation leaves the
//! state of before it; an operation that fails is undone with
//! [`DurableState::roll_back`]. So a ratchet step is never lost after the
//! ciphertext it made has left: a key and nonce are never used twice.
//!
//! The directory is made mode 0700 and its file 0600: it holds private keys
//! and the device's own sent messages. Creating them, their parents are
//! `fsync`ed, so a new device's state survives a power cut too.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::PoisonError,
};

use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider;
use redb::{ReadableDatabase, TableDefinition};

use crate::{ClientError, Result};

/// Prefix of OpenMLS's own keys in the database.
const MLS_PREFIX: &[u8] = b"m/";
/// Prefix of the client's own records.
const OWN_PREFIX: &[u8] = b"c/";
/// The one table.
const TABLE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("state");
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
    /// The database.
    db: redb::Database,
    /// Whether a write since the last durable one did not wait for the
    /// disk.
    lazy: bool,
}

impl DurableState {
    /// Opens (or creates) the state in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        create_durably(dir)?;
        restrict(dir, 0o700)?;
        let path = dir.join(FILE);
        let created = !path.exists();
        let db = redb::Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                ClientError::DeviceInUse(dir.display().to_string())
            }
            other => local("cannot open the state database", other),
        })?;
        {
            let tx = db
                .begin_write()
                .map_err(|e| local("cannot open the state database", e))?;
            tx.open_table(TABLE)
                .map_err(|e| local("cannot open the state database", e))?;
            tx.commit()
                .map_err(|e| local("cannot open the state database", e))?;
        }
        restrict(&path, 0o600)?;
        if created {
            sync_dir(dir)?;
        }
        let mut state = DurableState {
            provider: OpenMlsRustCrypto::default(),
            persisted: HashMap::new(),
            db,
            lazy: false,
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
        let read = |e: &dyn std::fmt::Display| local("cannot read the state", e);
        let tx = self.db.begin_read().map_err(|e| read(&e))?;
        let table = tx.open_table(TABLE).map_err(|e| read(&e))?;
        let mut found = Vec::new();
        for item in table.range::<&[u8]>(from..).map_err(|e| read(&e))? {
            let (key, value) = item.map_err(|e| read(&e))?;
            if !key.value().starts_with(prefix) || found.len() == limit {
                break;
            }
            found.push((key.value().to_vec(), value.value().to_vec()));
        }
        Ok(found)
    }

    /// One of the client's own records.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let read = |e: &dyn std::fmt::Display| local("cannot read the state", e);
        let tx = self.db.begin_read().map_err(|e| read(&e))?;
        let table = tx.open_table(TABLE).map_err(|e| read(&e))?;
        let value = table.get(own_key(key).as_slice()).map_err(|e| read(&e))?;
        Ok(value.map(|v| v.value().to_vec()))
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

    /// Like [`DurableState::persist`]; with `durable` false, the write does
    /// not wait for the disk (redb's `Durability::None`): any crash (a
    /// kill, a panic, a power cut) may take it, and the state is then that
    /// of the last durable write. A later durable write, or
    /// [`DurableState::sync`], makes this one durable too.
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
        let write = |e: &dyn std::fmt::Display| local("cannot write the state", e);
        let mut tx = self.db.begin_write().map_err(|e| write(&e))?;
        if !durable {
            tx.set_durability(redb::Durability::None)
                .map_err(|e| write(&e))?;
        }
        {
            let mut table = tx.open_table(TABLE).map_err(|e| write(&e))?;
            for (key, value) in &changed {
                table
                    .insert([MLS_PREFIX, key].concat().as_slice(), value.as_slice())
                    .map_err(|e| write(&e))?;
            }
            for key in &removed {
                table
                    .remove([MLS_PREFIX, key].concat().as_slice())
                    .map_err(|e| write(&e))?;
            }
            for (key, value) in own {
                match value {
                    Some(value) => table
                        .insert(own_key(key).as_slice(), value.as_slice())
                        .map(drop),
                    None => table.remove(own_key(key).as_slice()).map(drop),
                }
                .map_err(|e| write(&e))?;
            }
        }
        // Nothing of a transaction that fails to commit is kept: the last
        // persisted state stays what a roll-back returns to.
        tx.commit().map_err(|e| write(&e))?;
        self.lazy = !durable;
        for key in removed {
            self.persisted.remove(&key);
        }
        self.persisted.extend(changed);
        Ok(())
    }

    /// Makes every write so far durable, when one did not wait for the
    /// disk: one empty write transaction committed durably, which redb
    /// makes durable with everything before it.
    pub(crate) fn sync(&mut self) -> Result<()> {
        if !self.lazy {
            return Ok(());
        }
        let write = |e: &dyn std::fmt::Display| local("cannot sync the state", e);
        let tx = self.db.begin_write().map_err(|e| write(&e))?;
        tx.commit().map_err(|e| write(&e))?;
        self.lazy = false;
        Ok(())
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
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| local("cannot sync the state directory", e))
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
