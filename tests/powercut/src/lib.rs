//! A file system that forgets, at a power cut, what was not made durable.
//!
//! # Layout
//! - [`Mount`]: mounts the `model` file system with FUSE at a directory,
//!   cuts its power ([`Mount::power_cut`]) and mounts it again.
//! - `model`: the file system itself, in memory: each file's content as
//!   the running programs see it and as a disk would hold it after a power
//!   cut, and the same for each directory's entries.
//! - `fuse`: the FUSE operations, each a thin call into the model.
//!
//! The model is that of a disk with a volatile write cache, as LazyFS
//! models it for Jepsen. A write lands in the cache; `fsync` or
//! `fdatasync` of a file makes its content and size durable; `fsync` of a
//! directory makes its entries durable (a created, renamed or removed name).
//! Nothing else does: not `close`, not `sync_file_range` (the kernel handles
//! it on its page cache without telling the file system, and on real
//! hardware it flushes neither the drive's cache nor the file's size), not
//! `msync` without `MS_SYNC`. A power cut keeps only what was durable; a
//! torn cut keeps, of each file, a random prefix of the writes since its
//! last sync, the last one possibly cut short.
//!
//! Both layers are kept in memory: the volatile one is what programs see,
//! the durable one what a remount after the cut finds. The harness is for
//! tests of a few megabytes, and holding the durable layer in memory too
//! makes the cut exact and cheap.

mod fuse;
mod model;

use std::{
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

pub use model::Cut;

/// A mounted power-cut file system.
pub struct Mount {
    /// Where it is mounted.
    path: PathBuf,
    /// The file system's state, shared with the FUSE session.
    model: Arc<Mutex<model::Model>>,
    /// The FUSE session while mounted.
    session: Option<fuser::BackgroundSession>,
}

impl Mount {
    /// Mounts an empty file system at `path` (an existing, empty
    /// directory).
    ///
    /// # Errors
    /// When FUSE cannot mount here (no `/dev/fuse`, not allowed).
    pub fn new(path: &Path) -> io::Result<Mount> {
        let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(path)?);
        let group = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(path)?);
        let model = Arc::new(Mutex::new(model::Model::new(owner, group)));
        let mut mount = Mount {
            path: path.to_owned(),
            model,
            session: None,
        };
        mount.attach()?;
        Ok(mount)
    }

    /// Whether FUSE can mount on this machine; the reason when not, for a
    /// test to say in one line why it did not run.
    pub fn unavailable() -> Option<String> {
        if !Path::new("/dev/fuse").exists() {
            return Some("no /dev/fuse on this machine".into());
        }
        let probe = match tempdir() {
            Ok(dir) => dir,
            Err(err) => return Some(format!("no temporary directory: {err}")),
        };
        let result = Mount::new(&probe).map(drop);
        let _ = std::fs::remove_dir(&probe);
        result
            .err()
            .map(|err| format!("FUSE cannot mount here: {err}"))
    }

    /// A mount at `path` for a test, or `None` after one line saying why
    /// the test does not run here (no FUSE). Where the environment sets
    /// `SAMENOP_REQUIRE_FUSE` (CI does), no FUSE is a failure instead.
    ///
    /// # Panics
    /// When FUSE is required and missing, or mounting fails after it
    /// proved possible.
    pub fn for_test(path: &Path) -> Option<Mount> {
        if let Some(why) = Mount::unavailable() {
            assert!(
                std::env::var_os("SAMENOP_REQUIRE_FUSE").is_none(),
                "FUSE is required here: {why}"
            );
            eprintln!("skipped: power-cut tests need FUSE ({why})");
            return None;
        }
        match Mount::new(path) {
            Ok(mount) => Some(mount),
            Err(err) => panic!("cannot mount the power-cut file system: {err}"),
        }
    }

    /// Where the file system is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Cuts the power: unmounts (every program using the file system must
    /// have ended, as a machine's programs do at a power cut), keeps only
    /// what `cut` keeps, and mounts again.
    ///
    /// # Errors
    /// When unmounting or mounting again fails.
    pub fn power_cut(&mut self, cut: Cut) -> io::Result<()> {
        self.detach()?;
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .power_cut(cut);
        self.attach()
    }

    /// Makes every `fsync` and `fdatasync` from now on fail with EIO and
    /// make nothing durable, as a failing disk does (written bytes stay
    /// readable until a power cut), or, with `false`, work again.
    pub fn fail_syncs(&self, failing: bool) {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fail_syncs(failing);
    }

    /// How many bytes written since their file's last sync a power cut
    /// would lose now (for the harness's own tests and reports).
    pub fn volatile_bytes(&self) -> u64 {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .volatile_bytes()
    }

    fn attach(&mut self) -> io::Result<()> {
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("samenop-powercut".into()),
            fuser::MountOption::DefaultPermissions,
        ];
        let fs = fuse::PowerCutFs::new(self.model.clone());
        self.session = Some(fuser::spawn_mount2(fs, &self.path, &config)?);
        Ok(())
    }

    fn detach(&mut self) -> io::Result<()> {
        match self.session.take() {
            // The session's thread ends when its reading of the FUSE device
            // fails: ENODEV once unmounted, which fuser takes as the end,
            // or ECONNABORTED where the kernel aborted the connection while
            // unmounting (seen once in CI): gone too, and the model, which
            // is all a cut works on, is not the thread's.
            Some(session) => match session.umount_and_join() {
                Err(err) if err.raw_os_error() == Some(libc::ECONNABORTED) => Ok(()),
                other => other,
            },
            None => Ok(()),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}

/// A new, empty directory under the system's temporary directory.
fn tempdir() -> io::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!(
        "samenop-powercut-probe-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::create_dir(&path)?;
    Ok(path)
}
