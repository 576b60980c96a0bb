//! A device's MLS state on local disk: OpenMLS's key-value storage kept in
//! a sled database, written one whole MLS operation at a time.
//!
//! OpenMLS reads and writes its storage provider (here the in-memory
//! `MemoryStorage` of `openmls_rust_crypto`) many times during one operation
//! and has no transactions. So the provider works on a working copy in
//! memory, and [`DurableState::persist`] writes everything one operation
//! changed (with the client's own records, such as a thread's read position)
//! to sled as one atomic batch and flushes it before the caller acts on the
//! result. A crash in the middle of an operation leaves the state of before
//! it; an operation that fails is undone with [`DurableState::roll_back`].
//!
//! The directory is made mode 0700 and its files 0600: it holds private keys
//! and the device's own sent messages.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::PoisonError,
};

use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider;

use crate::{ClientError, Result};

/// Prefix of OpenMLS's own keys in the database.
const MLS_PREFIX: &[u8] = b"m/";
/// Prefix of the client's own records.
const OWN_PREFIX: &[u8] = b"c/";

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
    db: sled::Db,
    /// Its directory.
    dir: PathBuf,
}

impl DurableState {
    /// Opens (or creates) the state in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| local("cannot create the state directory", e))?;
        restrict(dir, 0o700)?;
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .map_err(|e| local("cannot open the state database", e))?;
        let provider = OpenMlsRustCrypto::default();
        let mut persisted = HashMap::new();
        for item in db.scan_prefix(MLS_PREFIX) {
            let (key, value) = item.map_err(|e| local("cannot read the state", e))?;
            persisted.insert(key[MLS_PREFIX.len()..].to_vec(), value.to_vec());
        }
        *provider
            .storage()
            .values
            .write()
            .unwrap_or_else(PoisonError::into_inner) = persisted.clone();
        let state = DurableState {
            provider,
            persisted,
            db,
            dir: dir.to_owned(),
        };
        state.restrict_files()?;
        Ok(state)
    }

    /// The OpenMLS provider, on the working copy.
    pub(crate) fn provider(&self) -> &OpenMlsRustCrypto {
        &self.provider
    }

    /// One of the client's own records.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let value = self
            .db
            .get(own_key(key))
            .map_err(|e| local("cannot read the state", e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// The client's own records whose key starts with `prefix`.
    pub(crate) fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut found = Vec::new();
        for item in self.db.scan_prefix(own_key(prefix)) {
            let (key, value) = item.map_err(|e| local("cannot read the state", e))?;
            let key = String::from_utf8_lossy(&key[OWN_PREFIX.len()..]).into_owned();
            found.push((key, value.to_vec()));
        }
        Ok(found)
    }

    /// Writes every change OpenMLS made since the last persist, together
    /// with `own` (key, value; `None` removes), as one atomic batch, and
    /// flushes it to disk.
    pub(crate) fn persist(&mut self, own: &[(String, Option<Vec<u8>>)]) -> Result<()> {
        let current = self
            .provider
            .storage()
            .values
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut batch = sled::Batch::default();
        for (key, value) in &current {
            if self.persisted.get(key) != Some(value) {
                batch.insert([MLS_PREFIX, key].concat(), value.as_slice());
            }
        }
        for key in self.persisted.keys() {
            if !current.contains_key(key) {
                batch.remove([MLS_PREFIX, key].concat());
            }
        }
        for (key, value) in own {
            match value {
                Some(value) => batch.insert(own_key(key), value.as_slice()),
                None => batch.remove(own_key(key)),
            }
        }
        self.db
            .apply_batch(batch)
            .map_err(|e| local("cannot write the state", e))?;
        // sled holds these values now, flushed or not: a roll-back after a
        // failed flush must come back to them, not to older ones.
        self.persisted = current;
        self.db
            .flush()
            .map_err(|e| local("cannot flush the state", e))?;
        self.restrict_files()
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

    /// Makes every file of the state directory mode 0600 (sled creates new
    /// ones as it goes).
    fn restrict_files(&self) -> Result<()> {
        restrict_tree(&self.dir)
    }
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

fn restrict_tree(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| local("cannot list the state", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| local("cannot list the state", e))?;
        let path = entry.path();
        if path.is_dir() {
            restrict(&path, 0o700)?;
            restrict_tree(&path)?;
        } else {
            restrict(&path, 0o600)?;
        }
    }
    Ok(())
}
