//! The server's Ed25519 audit key (ring), which signs checkpoints of the
//! audit chain, so that removing its last events, or rewriting it as a whole,
//! is detectable by anyone holding the public key.
//!
//! The key is a PKCS#8 file, mode 0600, made on first start when missing.

use std::path::{Path, PathBuf};

use prost::Message;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use samenop_proto::v1;

use crate::store::audit::Head;

/// The default file name of the audit key in the data directory.
pub const DEFAULT_FILE: &str = "audit-ed25519.pk8";

/// Why the audit key cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditKeyError {
    /// The file cannot be read, written or restricted.
    #[error("audit key {path}: {cause}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What failed.
        cause: std::io::Error,
    },
    /// The file is not an Ed25519 PKCS#8 key.
    #[error("audit key {0} is not an Ed25519 PKCS#8 key")]
    NotAKey(PathBuf),
    /// The system's random source failed.
    #[error("cannot generate an audit key: the random source failed")]
    Random,
}

/// The signing key.
pub struct AuditKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("public", &hex(self.public_key()))
            .finish_non_exhaustive()
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl AuditKey {
    /// Reads the key at `path`, or makes one there (mode 0600) when the
    /// file does not exist.
    ///
    /// # Errors
    /// [`AuditKeyError`] when it cannot be read, made or parsed.
    pub fn load_or_create(path: &Path) -> Result<AuditKey, AuditKeyError> {
        let io = |cause| AuditKeyError::Io {
            path: path.to_owned(),
            cause,
        };
        let pkcs8 = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let rng = ring::rand::SystemRandom::new();
                let document =
                    Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| AuditKeyError::Random)?;
                write_private(path, document.as_ref()).map_err(io)?;
                document.as_ref().to_vec()
            }
            Err(err) => return Err(io(err)),
        };
        restrict(path).map_err(io)?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|_| AuditKeyError::NotAKey(path.to_owned()))?;
        Ok(AuditKey { pair })
    }

    /// The public key (32 bytes).
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// A checkpoint of `head`, signed at `at`.
    pub fn sign(&self, head: Head, at: std::time::SystemTime) -> v1::AuditCheckpoint {
        let mut checkpoint = v1::AuditCheckpoint {
            sequence: head.sequence,
            hash: head.hash.to_vec(),
            signed_at: Some(prost_types::Timestamp::from(at)),
            public_key: self.public_key().to_vec(),
            signature: Vec::new(),
        };
        checkpoint.signature = self
            .pair
            .sign(&checkpoint.encode_to_vec())
            .as_ref()
            .to_vec();
        checkpoint
    }
}

/// Whether `checkpoint`'s signature verifies with the key it names.
pub fn signature_holds(checkpoint: &v1::AuditCheckpoint) -> bool {
    let signed = v1::AuditCheckpoint {
        signature: Vec::new(),
        ..checkpoint.clone()
    };
    UnparsedPublicKey::new(&ED25519, &checkpoint.public_key)
        .verify(&signed.encode_to_vec(), &checkpoint.signature)
        .is_ok()
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    // Written whole under another name, synced, renamed, and the directory
    // synced: the key is on disk before anything is signed with it, and a
    // crash never leaves half a key under its name.
    let partial = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_and_a_changed_one_does_not() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(DEFAULT_FILE);
        let key = AuditKey::load_or_create(&path).expect("made");
        let again = AuditKey::load_or_create(&path).expect("read");
        assert_eq!(key.public_key(), again.public_key(), "the same key is kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let head = Head {
            sequence: 7,
            hash: [3; 32],
        };
        let checkpoint = key.sign(head, std::time::SystemTime::now());
        assert!(signature_holds(&checkpoint));
        let mut moved = checkpoint.clone();
        moved.sequence = 6;
        assert!(!signature_holds(&moved));
    }
}
