//! Writing PEM files with the right permissions.
//!
//! Private keys are created with mode 0600 from the first moment (no window in which
//! another user could read them) and, should the file already exist with a wider mode,
//! narrowed before the new key is written. Certificates and the CRL get mode 0644.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::Error;

/// The mode of private key files: owner read and write only.
const KEY_MODE: u32 = 0o600;

/// The mode of certificate and CRL files: readable by all.
const PUBLIC_MODE: u32 = 0o644;

/// Writes a private key to `path` (mode 0600), replacing any existing file.
pub(crate) fn write_key(path: &Path, pem: &str) -> Result<(), Error> {
    write_with_mode(path, pem, KEY_MODE)
}

/// Writes a certificate or CRL to `path` (mode 0644), replacing any existing file.
pub(crate) fn write_public(path: &Path, pem: &str) -> Result<(), Error> {
    write_with_mode(path, pem, PUBLIC_MODE)
}

/// Creates `dir` and its parents when missing.
pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Removes the file at `path`, if there is one.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(source) if source.kind() != ErrorKind::NotFound => Err(Error::Io {
            path: path.to_owned(),
            source,
        }),
        _ => Ok(()),
    }
}

/// Opens `path` for writing, created with `mode` if new; sets `mode` in case it existed
/// (before writing, so a key is never readable with a wider mode); then writes `contents`.
fn write_with_mode(path: &Path, contents: &str, mode: u32) -> Result<(), Error> {
    let io_error = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_error)?;
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(io_error)?;
    file.write_all(contents.as_bytes()).map_err(io_error)
}
