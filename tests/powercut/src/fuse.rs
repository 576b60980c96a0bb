//! The FUSE operations: each one locks the model, calls it, and answers.
//! Attributes and entries are never cached by the kernel (a zero TTL), so
//! what programs see is always the model.

use std::{
    ffi::OsStr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyStatfs, ReplyWrite, Request, WriteFlags,
};

use crate::model::{Content, Model, Refusal};

/// How long the kernel may cache an attribute or an entry: not at all.
const TTL: Duration = Duration::ZERO;

/// The file system FUSE serves.
pub(crate) struct PowerCutFs {
    /// Shared with the [`crate::Mount`] that cuts its power.
    model: Arc<Mutex<Model>>,
}

impl PowerCutFs {
    pub(crate) fn new(model: Arc<Mutex<Model>>) -> Self {
        PowerCutFs { model }
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn errno(refusal: Refusal) -> Errno {
    match refusal {
        Refusal::NotFound => Errno::ENOENT,
        Refusal::Exists => Errno::EEXIST,
        Refusal::NotDir => Errno::ENOTDIR,
        Refusal::IsDir => Errno::EISDIR,
        Refusal::NotEmpty => Errno::ENOTEMPTY,
        Refusal::Unsupported => Errno::EOPNOTSUPP,
        Refusal::Io => Errno::EIO,
    }
}

fn attr(model: &Model, ino: u64) -> Result<FileAttr, Refusal> {
    let node = model.node(ino)?;
    let (kind, nlink) = match node.content {
        Content::File { .. } => (FileType::RegularFile, 1),
        Content::Dir { .. } => (FileType::Directory, 2),
    };
    let size = node.size();
    Ok(FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind,
        perm: node.perm,
        nlink,
        uid: node.uid,
        gid: node.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    })
}

/// Answers an operation that returns nothing.
fn empty(reply: ReplyEmpty, result: Result<(), Refusal>) {
    match result {
        Ok(()) => reply.ok(),
        Err(refusal) => reply.error(errno(refusal)),
    }
}

/// Answers an operation that returns an entry: inode `result`'s attributes.
fn entry(reply: ReplyEntry, model: &Model, result: Result<u64, Refusal>) {
    match result.and_then(|ino| attr(model, ino)) {
        Ok(found) => reply.entry(&TTL, &found, Generation(0)),
        Err(refusal) => reply.error(errno(refusal)),
    }
}

fn perm(mode: u32, umask: u32) -> u16 {
    ((mode & !umask) & 0o7777) as u16
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let model = self.model();
        entry(reply, &model, model.lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match attr(&self.model(), ino.0) {
            Ok(found) => reply.attr(&TTL, &found),
            Err(refusal) => reply.error(errno(refusal)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut model = self.model();
        let result = (|| {
            if let Some(size) = size {
                model.resize(ino.0, size)?;
            }
            if let Some(mode) = mode {
                model.chmod(ino.0, perm(mode, 0))?;
            }
            attr(&model, ino.0)
        })();
        match result {
            Ok(found) => reply.attr(&TTL, &found),
            Err(refusal) => reply.error(errno(refusal)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(errno(Refusal::Unsupported));
        }
        let mut model = self.model();
        let owner = (req.uid(), req.gid());
        let made = model.create(parent.0, name, false, perm(mode, umask), owner);
        entry(reply, &model, made);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut model = self.model();
        let owner = (req.uid(), req.gid());
        let made = model.create(parent.0, name, true, perm(mode, umask), owner);
        entry(reply, &model, made);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.model().remove(parent.0, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.model().remove(parent.0, name, true));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            return reply.error(errno(Refusal::Unsupported));
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        empty(
            reply,
            self.model()
                .rename(parent.0, name, newparent.0, newname, no_replace),
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model().read(ino.0, offset, size) {
            Ok(bytes) => reply.data(bytes),
            Err(refusal) => reply.error(errno(refusal)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.model().write(ino.0, offset, data) {
            Ok(()) => reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            Err(refusal) => reply.error(errno(refusal)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Closing makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.model().sync(ino.0));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let model = self.model();
        let entries = match model.entries(ino.0) {
            Ok(entries) => entries,
            Err(refusal) => return reply.error(errno(refusal)),
        };
        let listed = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (ino.0, FileType::Directory, OsStr::new("..")),
        ]
        .into_iter()
        .chain(entries.iter().map(|(name, child)| {
            let kind = match model.node(*child).map(|n| &n.content) {
                Ok(Content::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            (*child, kind, name.as_os_str())
        }));
        for (index, (child, kind, name)) in listed.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), index as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.model().sync(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut model = self.model();
        let owner = (req.uid(), req.gid());
        let result = match model.lookup(parent.0, name) {
            Ok(_) if flags & libc::O_EXCL != 0 => Err(Refusal::Exists),
            Ok(ino) if flags & libc::O_TRUNC != 0 => model.resize(ino, 0).map(|()| ino),
            Ok(ino) => Ok(ino),
            Err(_) => model.create(parent.0, name, false, perm(mode, umask), owner),
        };
        match result.and_then(|ino| attr(&model, ino)) {
            Ok(made) => reply.created(
                &TTL,
                &made,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(refusal) => reply.error(errno(refusal)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(errno(Refusal::Unsupported));
        }
        let mut model = self.model();
        let result = model.node(ino.0).map(|n| n.size()).and_then(|size| {
            let end = offset.saturating_add(length);
            if end > size {
                model.resize(ino.0, end)
            } else {
                Ok(())
            }
        });
        empty(reply, result);
    }
}
