//! One agent per data directory. Two agents writing one device's MLS state
//! corrupt it (a rolled-back ratchet reuses keys), so the agent takes an
//! exclusive lock on `agent.lock` in its data directory before it touches
//! anything else, and holds it until it exits. The file names the holder,
//! so a second agent can say who has it. The operating system releases the
//! lock when the process ends, however it ends.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read, Seek, SeekFrom, Write},
    path::Path,
};

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub(crate) struct DataLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another agent holds it.
    #[error(
        "another samenop-agent owns the data directory {dir} ({holder}); one agent per data directory, as two would corrupt the devices' state"
    )]
    Held {
        /// The directory.
        dir: String,
        /// What the holder wrote of itself.
        holder: String,
    },
    /// The lock file cannot be used.
    #[error("cannot lock the data directory {dir}: {source}")]
    Io {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Takes the lock of `dir` (made, 0700, when missing).
///
/// # Errors
/// [`LockError::Held`] naming the holder, or [`LockError::Io`].
pub(crate) fn take(dir: &Path) -> Result<DataLock, LockError> {
    let io = |source| LockError::Io {
        dir: dir.display().to_string(),
        source,
    };
    crate::fsutil::private_dir(dir).map_err(io)?;
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(dir.join("agent.lock")).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LockError::Held {
                dir: dir.display().to_string(),
                holder: if holder.is_empty() {
                    "it is starting".to_owned()
                } else {
                    holder.to_owned()
                },
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    write!(
        file,
        "process {} on {}, since {since} (seconds since 1970)",
        std::process::id(),
        crate::fsutil::host()
    )
    .map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(DataLock { _file: file })
}
