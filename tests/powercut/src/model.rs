//! The file system in memory, in two layers: what the running programs see,
//! and what a disk would hold after a power cut (see the crate
//! documentation for what makes a change durable).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ffi::{OsStr, OsString},
};

/// The root directory's inode number.
pub(crate) const ROOT: u64 = 1;

/// What a power cut keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Only what was durable.
    Clean,
    /// What was durable and, of each file, a random prefix of the writes
    /// since its last sync, the last kept one possibly cut short; `seed`
    /// makes the choice repeatable.
    Torn {
        /// The seed of the choice.
        seed: u64,
    },
}

/// Why an operation fails, as an errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No such entry (ENOENT).
    NotFound,
    /// The name exists (EEXIST).
    Exists,
    /// Not a directory (ENOTDIR).
    NotDir,
    /// A directory where a file was expected (EISDIR).
    IsDir,
    /// The directory is not empty (ENOTEMPTY).
    NotEmpty,
    /// The operation is not supported (EOPNOTSUPP).
    Unsupported,
    /// The disk failed the operation (EIO).
    Io,
}

/// One change to a file since its last sync.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Bytes written at an offset.
    Write { offset: u64, bytes: Vec<u8> },
    /// The size set (truncated or extended with zeros).
    Resize(u64),
}

impl Change {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Change::Write { offset, bytes } => write_at(data, *offset, bytes),
            Change::Resize(size) => data.resize(to_len(*size), 0),
        }
    }

    fn len(&self) -> u64 {
        match self {
            Change::Write { bytes, .. } => bytes.len() as u64,
            Change::Resize(_) => 0,
        }
    }
}

fn to_len(size: u64) -> usize {
    usize::try_from(size).unwrap_or(usize::MAX)
}

fn write_at(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = to_len(offset);
    let end = start.saturating_add(bytes.len());
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

/// What an inode is.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// A regular file.
    File {
        /// As programs see it.
        data: Vec<u8>,
        /// As of its last sync.
        durable: Vec<u8>,
        /// The changes since, in order.
        pending: Vec<Change>,
    },
    /// A directory.
    Dir {
        /// Its entries as programs see them.
        entries: BTreeMap<OsString, u64>,
        /// Its entries as of its last sync.
        durable: BTreeMap<OsString, u64>,
    },
}

/// One inode.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// File or directory, with its content.
    pub(crate) content: Content,
    /// Its permission bits.
    pub(crate) perm: u16,
    /// Its owner.
    pub(crate) uid: u32,
    /// Its group.
    pub(crate) gid: u32,
}

impl Node {
    /// Its size in bytes.
    pub(crate) fn size(&self) -> u64 {
        match &self.content {
            Content::File { data, .. } => data.len() as u64,
            Content::Dir { .. } => 0,
        }
    }
}

/// The whole file system.
#[derive(Debug)]
pub(crate) struct Model {
    /// Every inode, by number.
    nodes: HashMap<u64, Node>,
    /// The next inode number to give out.
    next: u64,
    /// Whether syncs fail (EIO) and make nothing durable.
    failing_syncs: bool,
}

impl Model {
    /// An empty file system whose root belongs to `uid` and `gid`.
    pub(crate) fn new(uid: u32, gid: u32) -> Self {
        let root = Node {
            content: Content::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
            perm: 0o755,
            uid,
            gid,
        };
        Model {
            nodes: HashMap::from([(ROOT, root)]),
            next: ROOT + 1,
            failing_syncs: false,
        }
    }

    /// The inode `ino`.
    pub(crate) fn node(&self, ino: u64) -> Result<&Node, Refusal> {
        self.nodes.get(&ino).ok_or(Refusal::NotFound)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node, Refusal> {
        self.nodes.get_mut(&ino).ok_or(Refusal::NotFound)
    }

    fn entries_mut(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, Refusal> {
        match &mut self.node_mut(dir)?.content {
            Content::Dir { entries, .. } => Ok(entries),
            Content::File { .. } => Err(Refusal::NotDir),
        }
    }

    /// The entries of directory `dir`, as programs see them.
    pub(crate) fn entries(&self, dir: u64) -> Result<&BTreeMap<OsString, u64>, Refusal> {
        match &self.node(dir)?.content {
            Content::Dir { entries, .. } => Ok(entries),
            Content::File { .. } => Err(Refusal::NotDir),
        }
    }

    /// The inode named `name` in `dir`.
    pub(crate) fn lookup(&self, dir: u64, name: &OsStr) -> Result<u64, Refusal> {
        self.entries(dir)?
            .get(name)
            .copied()
            .ok_or(Refusal::NotFound)
    }

    /// Creates `name` in `dir`: a file, or a directory when `dir_kind`.
    pub(crate) fn create(
        &mut self,
        dir: u64,
        name: &OsStr,
        dir_kind: bool,
        perm: u16,
        owner: (u32, u32),
    ) -> Result<u64, Refusal> {
        if self.entries(dir)?.contains_key(name) {
            return Err(Refusal::Exists);
        }
        let content = if dir_kind {
            Content::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            }
        } else {
            Content::File {
                data: Vec::new(),
                durable: Vec::new(),
                pending: Vec::new(),
            }
        };
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(
            ino,
            Node {
                content,
                perm,
                uid: owner.0,
                gid: owner.1,
            },
        );
        self.entries_mut(dir)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// Removes `name` from `dir`: a file, or an empty directory when
    /// `dir_kind`.
    pub(crate) fn remove(&mut self, dir: u64, name: &OsStr, dir_kind: bool) -> Result<(), Refusal> {
        let ino = self.lookup(dir, name)?;
        match (&self.node(ino)?.content, dir_kind) {
            (Content::Dir { entries, .. }, true) if !entries.is_empty() => {
                return Err(Refusal::NotEmpty);
            }
            (Content::Dir { .. }, false) => return Err(Refusal::IsDir),
            (Content::File { .. }, true) => return Err(Refusal::NotDir),
            _ => {}
        }
        self.entries_mut(dir)?.remove(name);
        Ok(())
    }

    /// Renames `name` in `dir` to `to_name` in `to_dir`, replacing what
    /// was there unless `no_replace`.
    pub(crate) fn rename(
        &mut self,
        dir: u64,
        name: &OsStr,
        to_dir: u64,
        to_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Refusal> {
        let ino = self.lookup(dir, name)?;
        if let Ok(existing) = self.lookup(to_dir, to_name) {
            if no_replace {
                return Err(Refusal::Exists);
            }
            if let Content::Dir { entries, .. } = &self.node(existing)?.content
                && !entries.is_empty()
            {
                return Err(Refusal::NotEmpty);
            }
        }
        self.entries(to_dir)?;
        self.entries_mut(dir)?.remove(name);
        self.entries_mut(to_dir)?.insert(to_name.to_owned(), ino);
        Ok(())
    }

    /// Up to `size` bytes of file `ino` from `offset`.
    pub(crate) fn read(&self, ino: u64, offset: u64, size: u32) -> Result<&[u8], Refusal> {
        match &self.node(ino)?.content {
            Content::File { data, .. } => {
                let start = to_len(offset).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                Ok(&data[start..end])
            }
            Content::Dir { .. } => Err(Refusal::IsDir),
        }
    }

    /// Writes `bytes` at `offset` of file `ino`, into the volatile layer.
    pub(crate) fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<(), Refusal> {
        self.change(
            ino,
            Change::Write {
                offset,
                bytes: bytes.to_vec(),
            },
        )
    }

    /// Sets the size of file `ino`, in the volatile layer.
    pub(crate) fn resize(&mut self, ino: u64, size: u64) -> Result<(), Refusal> {
        self.change(ino, Change::Resize(size))
    }

    fn change(&mut self, ino: u64, change: Change) -> Result<(), Refusal> {
        match &mut self.node_mut(ino)?.content {
            Content::File { data, pending, .. } => {
                change.apply(data);
                pending.push(change);
                Ok(())
            }
            Content::Dir { .. } => Err(Refusal::IsDir),
        }
    }

    /// Sets the permission bits of `ino`.
    pub(crate) fn chmod(&mut self, ino: u64, perm: u16) -> Result<(), Refusal> {
        self.node_mut(ino)?.perm = perm;
        Ok(())
    }

    /// `fsync`/`fdatasync` of `ino`: a file's content and size become
    /// durable, a directory's entries do; while syncs fail, EIO and
    /// nothing more durable.
    pub(crate) fn sync(&mut self, ino: u64) -> Result<(), Refusal> {
        if self.failing_syncs {
            self.node(ino)?;
            return Err(Refusal::Io);
        }
        match &mut self.node_mut(ino)?.content {
            Content::File {
                data,
                durable,
                pending,
            } => {
                durable.clone_from(data);
                pending.clear();
            }
            Content::Dir { entries, durable } => durable.clone_from(entries),
        }
        Ok(())
    }

    /// Bytes written since their file's last sync.
    pub(crate) fn volatile_bytes(&self) -> u64 {
        self.nodes
            .values()
            .map(|node| match &node.content {
                Content::File { pending, .. } => pending.iter().map(Change::len).sum(),
                Content::Dir { .. } => 0,
            })
            .sum()
    }

    /// Makes every sync from now on fail (EIO, nothing made durable), as
    /// a failing disk does, or work again.
    pub(crate) fn fail_syncs(&mut self, failing: bool) {
        self.failing_syncs = failing;
    }

    /// The power cut: every directory keeps its durable entries, every
    /// file its durable content (and, when torn, a random prefix of its
    /// changes since); what no durable entry reaches is gone.
    pub(crate) fn power_cut(&mut self, cut: Cut) {
        let mut random = match cut {
            Cut::Clean => None,
            Cut::Torn { seed } => Some(XorShift(seed | 1)),
        };
        let mut reached = HashSet::from([ROOT]);
        let mut walk = vec![ROOT];
        while let Some(ino) = walk.pop() {
            let Some(node) = self.nodes.get_mut(&ino) else {
                continue;
            };
            match &mut node.content {
                Content::Dir { entries, durable } => {
                    entries.clone_from(durable);
                    for child in durable.values() {
                        if reached.insert(*child) {
                            walk.push(*child);
                        }
                    }
                }
                Content::File {
                    data,
                    durable,
                    pending,
                } => {
                    let mut kept = durable.clone();
                    if let Some(random) = &mut random {
                        let whole = random.below(pending.len() as u64 + 1) as usize;
                        for change in &pending[..whole] {
                            change.apply(&mut kept);
                        }
                        // The next write possibly half on the platter.
                        if let Some(Change::Write { offset, bytes }) = pending.get(whole) {
                            let part = random.below(bytes.len() as u64 + 1) as usize;
                            write_at(&mut kept, *offset, &bytes[..part]);
                        }
                    }
                    durable.clone_from(&kept);
                    *data = kept;
                    pending.clear();
                }
            }
        }
        self.nodes.retain(|ino, _| reached.contains(ino));
    }
}

/// A small deterministic generator for torn cuts (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if bound == 0 { 0 } else { self.0 % bound }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> &OsStr {
        OsStr::new(text)
    }

    fn content(model: &Model, dir: u64, file: &str) -> Option<Vec<u8>> {
        let ino = model.lookup(dir, name(file)).ok()?;
        Some(model.read(ino, 0, u32::MAX).ok()?.to_vec())
    }

    #[test]
    fn a_cut_keeps_exactly_what_was_synced() {
        let mut model = Model::new(0, 0);
        let dir = model
            .create(ROOT, name("data"), true, 0o755, (0, 0))
            .unwrap();
        model.sync(ROOT).unwrap();
        let kept = model
            .create(dir, name("kept"), false, 0o644, (0, 0))
            .unwrap();
        let lost = model
            .create(dir, name("lost"), false, 0o644, (0, 0))
            .unwrap();
        model.sync(dir).unwrap();
        model.write(kept, 0, b"durable").unwrap();
        model.sync(kept).unwrap();
        model.write(kept, 7, b" and volatile").unwrap();
        model.write(lost, 0, b"never synced").unwrap();
        let unnamed = model
            .create(dir, name("unnamed"), false, 0o644, (0, 0))
            .unwrap();
        model.write(unnamed, 0, b"synced, its name not").unwrap();
        model.sync(unnamed).unwrap();
        assert_eq!(model.volatile_bytes(), 13 + 12);

        model.power_cut(Cut::Clean);
        assert_eq!(content(&model, dir, "kept").unwrap(), b"durable");
        assert_eq!(
            content(&model, dir, "lost").unwrap(),
            b"",
            "its name was synced"
        );
        assert_eq!(
            content(&model, dir, "unnamed"),
            None,
            "its directory was not synced"
        );
        assert_eq!(model.volatile_bytes(), 0);
    }

    #[test]
    fn a_failing_sync_makes_nothing_durable_and_reads_go_on() {
        let mut model = Model::new(0, 0);
        let file = model
            .create(ROOT, name("log"), false, 0o644, (0, 0))
            .unwrap();
        model.sync(ROOT).unwrap();
        model.write(file, 0, b"durable").unwrap();
        model.sync(file).unwrap();
        model.fail_syncs(true);
        model.write(file, 7, b" unsynced").unwrap();
        assert_eq!(model.sync(file), Err(Refusal::Io));
        assert_eq!(content(&model, ROOT, "log").unwrap(), b"durable unsynced");
        model.fail_syncs(false);
        model.power_cut(Cut::Clean);
        assert_eq!(content(&model, ROOT, "log").unwrap(), b"durable");
        model.write(file, 7, b" synced").unwrap();
        model.sync(file).unwrap();
        model.power_cut(Cut::Clean);
        assert_eq!(content(&model, ROOT, "log").unwrap(), b"durable synced");
    }

    #[test]
    fn a_rename_is_durable_only_with_its_directory() {
        let mut model = Model::new(0, 0);
        let file = model
            .create(ROOT, name("snap.tmp"), false, 0o644, (0, 0))
            .unwrap();
        model.write(file, 0, b"snapshot").unwrap();
        model.sync(file).unwrap();
        model.sync(ROOT).unwrap();
        model
            .rename(ROOT, name("snap.tmp"), ROOT, name("snap"), false)
            .unwrap();
        model.power_cut(Cut::Clean);
        assert_eq!(content(&model, ROOT, "snap.tmp").unwrap(), b"snapshot");
        assert_eq!(content(&model, ROOT, "snap"), None);
        model
            .rename(ROOT, name("snap.tmp"), ROOT, name("snap"), false)
            .unwrap();
        model.sync(ROOT).unwrap();
        model.power_cut(Cut::Clean);
        assert_eq!(content(&model, ROOT, "snap").unwrap(), b"snapshot");
    }

    #[test]
    fn a_torn_cut_keeps_a_prefix_of_the_writes_since_the_sync() {
        for seed in 0..200 {
            let mut model = Model::new(0, 0);
            let file = model
                .create(ROOT, name("log"), false, 0o644, (0, 0))
                .unwrap();
            model.sync(ROOT).unwrap();
            model.write(file, 0, b"head|").unwrap();
            model.sync(file).unwrap();
            for n in 0..5u8 {
                model
                    .write(file, 5 + u64::from(n) * 4, &[b'a' + n; 4])
                    .unwrap();
            }
            model.power_cut(Cut::Torn { seed });
            let kept = content(&model, ROOT, "log").unwrap();
            let full = b"head|aaaabbbbccccddddeeee";
            assert!(
                kept.len() >= 5 && full.starts_with(&kept),
                "{seed}: {kept:?}"
            );
        }
    }

    #[test]
    fn a_truncation_since_the_sync_is_undone() {
        let mut model = Model::new(0, 0);
        let file = model.create(ROOT, name("f"), false, 0o644, (0, 0)).unwrap();
        model.write(file, 0, b"0123456789").unwrap();
        model.sync(file).unwrap();
        model.sync(ROOT).unwrap();
        model.resize(file, 2).unwrap();
        model.power_cut(Cut::Clean);
        assert_eq!(content(&model, ROOT, "f").unwrap(), b"0123456789");
    }
}
