//! The journal's segments: records appended, synced, and read back.
//!
//! Each commit is one record, appended to the current segment file (and
//! made durable by that write, or one sync, when the commit asks). The
//! record holds what the commit changed, key by key, as absolute values (a
//! put's new value, or a removal), so applying a record twice is the same
//! as once. The writes reach redb later, many commits at a time, in a
//! durable checkpoint that also records the last segment it covers;
//! segments up to that one are then removed.
//!
//! A segment is `journal/<number>.wal`, numbered upwards, never reused. A
//! record is its header (payload length, u32 little-endian; its number in
//! the segment, u64; the first 16 bytes of the SHA-256 of the segment
//! number, the record number and the payload) and its payload. Recovery
//! reads the segments after the last checkpoint in order, each up to its
//! first record that is incomplete or does not match its digest: only the
//! last segment can end so (what follows its last `fdatasync` was never
//! promised), and where every record is synced before the next is written,
//! an intact record right after a damaged one is refused as damage rather
//! than skipped. Digests come from ring; they detect torn and stale bytes,
//! they are not a defence against someone who can write the directory.
//!
//! A segment grows in steps written with zeros and synced ahead of the
//! records (from [`INITIAL`], doubling up to [`EXTEND`]), so that a
//! record's flush carries the record alone and not also the file's new
//! size, and a segment of a quiet server stays small. Where records are
//! written straight to the disk, so are those zeros (no copy into the
//! page cache, and no cached page for each record's write to drop).

use std::{
    collections::BTreeMap,
    fs::File,
    io::{ErrorKind, Read},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use crate::{
    Error,
    direct::{BLOCK, Direct},
};

/// The journal's directory, beside the redb file.
pub(crate) const DIR: &str = "journal";

/// The space a new segment has written ahead.
pub(crate) const INITIAL: u64 = 256 << 10;

/// The most a segment grows by at once when its written space runs short
/// (each step doubles the space, from [`INITIAL`]).
pub(crate) const EXTEND: u64 = 4 << 20;

// A direct write pads a record's last block with zeros: the space written
// ahead must end on a block boundary, or the padding would grow the file.
const _: () = assert!(INITIAL.is_multiple_of(BLOCK as u64) && EXTEND.is_multiple_of(BLOCK as u64));

/// A record's header: payload length (4), record number (8), digest (16).
const HEADER: usize = 4 + 8 + 16;

/// The largest payload a record may have (a group of batches; attachment
/// chunks are the largest values).
const PAYLOAD_MAX: usize = 1 << 30;

/// A key's new value in a record: `None` when the group removed it.
pub type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

fn io(what: &str, path: &Path, err: std::io::Error) -> Error {
    Error::Failed(format!("journal: cannot {what} {}: {err}", path.display()))
}

/// The path of segment `number` in `dir`.
pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016}.wal"))
}

/// The segments in `dir`, by number, in order.
///
/// # Errors
/// [`Error::Failed`] when the directory cannot be read.
pub(crate) fn segments(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io("list", dir, e))? {
        let entry = entry.map_err(|e| io("list", dir, e))?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        numbers.push(number);
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Removes every segment numbered `upto` or lower (their records are in
/// redb). Not synced: a removal a crash undoes is done again at the next
/// open, as the checkpoint says which segments are covered.
pub(crate) fn remove_upto(dir: &Path, upto: u64) -> Result<(), Error> {
    for number in segments(dir)?.into_iter().filter(|n| *n <= upto) {
        let path = segment_path(dir, number);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &path, e)),
        }
    }
    Ok(())
}

/// Syncs every segment numbered after `after`: what recovery read of them
/// may not have reached the disk (a record that did not wait for it),
/// and is now served.
pub(crate) fn sync_after(dir: &Path, after: u64) -> Result<(), Error> {
    for number in segments(dir)?.into_iter().filter(|n| *n > after) {
        let path = segment_path(dir, number);
        File::open(&path)
            .and_then(|file| file.sync_data())
            .map_err(|e| io("sync", &path, e))?;
    }
    Ok(())
}

/// The digest of a record.
fn digest(segment: u64, record: u64, payload: &[u8]) -> [u8; 16] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(&segment.to_le_bytes());
    context.update(&record.to_le_bytes());
    context.update(payload);
    let full = context.finish();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full.as_ref()[..16]);
    out
}

/// Encodes a group's changes as a record payload: per key, 1 (put) or 0
/// (removal), the key's length (u32 LE) and bytes, and for a put the
/// value's length and bytes.
pub(crate) fn encode(changes: &Changes) -> Vec<u8> {
    let size: usize = changes
        .iter()
        .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(size);
    for (key, value) in changes {
        out.push(u8::from(value.is_some()));
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        if let Some(value) = value {
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
    }
    out
}

/// Decodes a payload made by [`encode`] into `into`.
fn decode(mut payload: &[u8], into: &mut Changes) -> Option<()> {
    fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if input.len() < n {
            return None;
        }
        let (head, rest) = input.split_at(n);
        *input = rest;
        Some(head)
    }
    fn length(input: &mut &[u8]) -> Option<usize> {
        let raw = take(input, 4)?;
        Some(u32::from_le_bytes(raw.try_into().ok()?) as usize)
    }
    while !payload.is_empty() {
        let put = match take(&mut payload, 1)?[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let n = length(&mut payload)?;
        let key = take(&mut payload, n)?.to_vec();
        let value = if put {
            let n = length(&mut payload)?;
            Some(take(&mut payload, n)?.to_vec())
        } else {
            None
        };
        into.insert(key, value);
    }
    Some(())
}

/// What recovery found after the last checkpoint.
pub(crate) struct Recovered {
    /// Every change of the valid records, in order (later ones win).
    pub(crate) changes: Changes,
    /// The highest segment number in the directory (0 when none).
    pub(crate) last_segment: u64,
    /// How many records were read.
    pub(crate) records: u64,
    /// Whether a segment ended in a record cut short (by a crash while it
    /// was written): records written after it, in a later segment, would
    /// make it damage, so it must not be read again.
    pub(crate) ended_early: bool,
}

/// Reads the segments of `dir` numbered after `checkpointed`, in order.
/// `each_synced` says every record was synced before the next was written
/// (else unsynced records may have reached the disk in any order, and
/// whatever follows the first invalid record is simply not read).
///
/// # Errors
/// [`Error::Failed`] when a segment cannot be read; [`Error::Damaged`]
/// when one is damaged: it ends early (an incomplete or mismatching
/// record) and a later one holds records, a record is damaged and the
/// next one follows it intact (`each_synced` only), or a valid record's
/// payload cannot be decoded.
pub(crate) fn recover(
    dir: &Path,
    checkpointed: u64,
    each_synced: bool,
) -> Result<Recovered, Error> {
    let numbers = segments(dir)?;
    let mut recovered = Recovered {
        changes: Changes::new(),
        last_segment: numbers.last().copied().unwrap_or(0),
        records: 0,
        ended_early: false,
    };
    let mut ended_early: Option<u64> = None;
    for number in numbers.into_iter().filter(|n| *n > checkpointed) {
        let path = segment_path(dir, number);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io("read", &path, e))?;
        let damaged = |reason: String| {
            Error::Damaged(format!(
                "the journal segment {} is damaged: {reason}; it is not opened rather than \
                 lose what follows (restore the directory from a backup)",
                path.display()
            ))
        };
        let (records, complete) =
            read_segment(number, &bytes, &mut recovered.changes, each_synced).map_err(damaged)?;
        if records > 0
            && let Some(earlier) = ended_early
        {
            return Err(damaged(format!(
                "segment {earlier} before it ends in a damaged record, yet this one holds records"
            )));
        }
        recovered.records += records;
        if !complete {
            ended_early = Some(number);
        }
    }
    recovered.ended_early = ended_early.is_some();
    Ok(recovered)
}

/// Reads the records of one segment into `changes`: how many, and whether
/// the segment ended cleanly (its unwritten space is zeros, or it ends
/// exactly after a record); or why it is damaged.
///
/// When each record is synced before the next is written (`each_synced`),
/// only the last record can have been cut short by a crash (in any of its
/// sectors): what follows the first invalid record is not read, except
/// that a valid next record right where a whole header says the invalid
/// one ends is damage in the middle of the segment.
fn read_segment(
    number: u64,
    bytes: &[u8],
    changes: &mut Changes,
    each_synced: bool,
) -> Result<(u64, bool), String> {
    let mut offset = 0usize;
    let mut records = 0u64;
    loop {
        let rest = &bytes[offset..];
        if rest.is_empty() {
            return Ok((records, true));
        }
        let expected = records + 1;
        if let Some((payload, used)) = parse_record(number, expected, rest) {
            decode(payload, changes)
                .ok_or_else(|| format!("record {expected} cannot be decoded"))?;
            records = expected;
            offset += used;
            continue;
        }
        let clean = rest.iter().all(|b| *b == 0);
        if !clean
            && each_synced
            && let Some(end) = declared_end(expected, rest)
            && parse_record(number, expected + 1, &rest[end..]).is_some()
        {
            return Err(format!(
                "record {expected} does not match its digest, yet record {} follows it",
                expected + 1
            ));
        }
        return Ok((records, clean));
    }
}

/// Where the record at the start of `bytes` ends, when its header is
/// whole, names record `expected` and gives a length that fits.
fn declared_end(expected: u64, bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(..HEADER)?;
    let length = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let number = u64::from_le_bytes(header[4..12].try_into().ok()?);
    (length > 0 && length <= PAYLOAD_MAX && number == expected && HEADER + length <= bytes.len())
        .then_some(HEADER + length)
}

/// The record at the start of `bytes` if it is complete and valid: its
/// payload and its length with the header.
fn parse_record(segment: u64, expected: u64, bytes: &[u8]) -> Option<(&[u8], usize)> {
    let end = declared_end(expected, bytes)?;
    let payload = &bytes[HEADER..end];
    if bytes[12..HEADER] != digest(segment, expected, payload) {
        return None;
    }
    Some((payload, end))
}

/// Why an append failed.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// Nothing of the record was written (it is too large, or no space
    /// could be written ahead): the journal can go on.
    NotWritten(Error),
    /// Writing the record failed: part or all of it may be on disk.
    Unknown(Error),
}

/// The segment being written.
pub(crate) struct Journal {
    /// The journal's directory.
    dir: PathBuf,
    /// The current segment's file.
    file: File,
    /// Its number.
    number: u64,
    /// Where its next record goes.
    offset: u64,
    /// Its size on disk, synced: records up to here need no new size.
    written_ahead: u64,
    /// The number of its last record.
    records: u64,
    /// The same file open for direct writes, where its file system takes
    /// them; else records go through the page cache.
    direct: Option<Direct>,
}

impl Journal {
    /// Starts segment `number` in `dir` (which must exist), durably: the
    /// file with its first space written ahead, and its name; with
    /// `direct`, its records are written straight to the disk where the
    /// file system takes direct writes (for journals whose every commit
    /// is durable: a write that need not wait would wait for the disk).
    ///
    /// # Errors
    /// [`Error::Failed`] when the file cannot be made.
    pub(crate) fn start(dir: &Path, number: u64, direct: bool) -> Result<Self, Error> {
        let path = segment_path(dir, number);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io("create", &path, e))?;
        let mut journal = Journal {
            dir: dir.to_path_buf(),
            file,
            number,
            offset: 0,
            written_ahead: 0,
            records: 0,
            direct: None,
        };
        let made = journal
            .write_ahead(INITIAL)
            .map_err(|e| match e {
                AppendError::NotWritten(e) | AppendError::Unknown(e) => e,
            })
            .and_then(|()| crate::sync_dir(dir))
            .and_then(|()| {
                if direct {
                    journal.direct = Direct::open(&path).map_err(|e| io("open", &path, e))?;
                }
                Ok(())
            });
        if let Err(err) = made {
            // Not left behind half made: its number is tried again.
            let _ = std::fs::remove_file(&path);
            return Err(err);
        }
        Ok(journal)
    }

    /// Removes this segment's file: it holds no record (a spare never
    /// used).
    pub(crate) fn discard(self) -> Result<(), Error> {
        let path = self.path();
        drop(self.file);
        std::fs::remove_file(&path).map_err(|e| io("remove", &path, e))
    }

    /// Whether its records are written straight to the disk.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The current segment's number.
    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    /// Writes zeros from the end of the written-ahead space to `until`
    /// and syncs them with the file's size.
    ///
    /// A failed write of the zeros harms nothing; a failed sync does: the
    /// sync flushes the file's records not yet synced too, and an error it
    /// reports about them is reported once only, so it is
    /// [`AppendError::Unknown`].
    fn write_ahead(&mut self, until: u64) -> Result<(), AppendError> {
        let from = self.written_ahead;
        let written = match &mut self.direct {
            // Straight to the disk, where records go too.
            Some(direct) => direct.write_zeros(from, until.saturating_sub(from)),
            None => {
                let zeros = crate::direct::zeros_ahead();
                let mut at = from;
                let mut written = Ok(());
                while at < until && written.is_ok() {
                    let n = zeros.len().min((until - at) as usize);
                    written = self.file.write_all_at(&zeros[..n], at);
                    at += n as u64;
                }
                written
            }
        };
        written.map_err(|e| AppendError::NotWritten(io("write", &self.path(), e)))?;
        self.file
            .sync_data()
            .map_err(|e| AppendError::Unknown(io("sync", &self.path(), e)))?;
        self.written_ahead = until;
        Ok(())
    }

    fn path(&self) -> PathBuf {
        segment_path(&self.dir, self.number)
    }

    /// Appends one record, durable when this returns with `durable`
    /// (else see [`Journal::sync`]).
    ///
    /// # Errors
    /// [`AppendError::NotWritten`] when the payload is empty or too large,
    /// or no space can be written ahead for it;
    /// [`AppendError::Unknown`] when its write fails.
    pub(crate) fn append(&mut self, payload: &[u8], durable: bool) -> Result<(), AppendError> {
        if payload.is_empty() || payload.len() > PAYLOAD_MAX {
            return Err(AppendError::NotWritten(Error::Failed(format!(
                "journal: a record of {} bytes cannot be written (at most {PAYLOAD_MAX})",
                payload.len()
            ))));
        }
        let number = self.records + 1;
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[4..12].copy_from_slice(&number.to_le_bytes());
        header[12..].copy_from_slice(&digest(self.number, number, payload));
        let end = self.offset + (HEADER + payload.len()) as u64;
        if end > self.written_ahead {
            let step = self.written_ahead.clamp(INITIAL, EXTEND);
            self.write_ahead(end.div_ceil(INITIAL) * INITIAL + step)?;
        }
        let written = match &mut self.direct {
            Some(direct) => direct.write(self.offset, &[&header, payload], durable),
            None => self
                .file
                .write_all_at(&[header.as_slice(), payload].concat(), self.offset)
                .and_then(|()| {
                    if durable {
                        self.file.sync_data()
                    } else {
                        Ok(())
                    }
                }),
        };
        written.map_err(|e| AppendError::Unknown(io("write", &self.path(), e)))?;
        self.offset = end;
        self.records = number;
        Ok(())
    }

    /// Makes every record appended so far durable.
    ///
    /// # Errors
    /// [`Error::Failed`] when the sync fails.
    pub(crate) fn sync(&mut self) -> Result<(), Error> {
        match &mut self.direct {
            Some(direct) => direct.sync(),
            None => self.file.sync_data(),
        }
        .map_err(|e| io("sync", &self.path(), e))
    }

    /// Bytes of records in the current segment.
    pub(crate) fn len(&self) -> u64 {
        self.offset
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Changes from text pairs (`None`: removed), for tests here and in
    /// `memtable`.
    pub(crate) fn changes(pairs: &[(&str, Option<&str>)]) -> Changes {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn records_come_back_in_order_and_later_ones_win() {
        // Through the page cache, and straight to the disk (durable
        // records, one after the other, where the file system takes them).
        for direct in [false, true] {
            records_come_back_in_order(direct);
        }
    }

    fn records_come_back_in_order(direct: bool) {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::start(dir.path(), 1, direct).unwrap();
        journal
            .append(
                &encode(&changes(&[("a", Some("1")), ("b", Some("2"))])),
                direct,
            )
            .unwrap();
        journal
            .append(&encode(&changes(&[("a", None), ("c", Some("3"))])), direct)
            .unwrap();
        journal.sync().unwrap();
        let mut next = Journal::start(dir.path(), 2, direct).unwrap();
        next.append(&encode(&changes(&[("c", Some("4"))])), direct)
            .unwrap();
        next.sync().unwrap();
        let recovered = recover(dir.path(), 0, true).unwrap();
        assert_eq!(recovered.records, 3);
        assert_eq!(recovered.last_segment, 2);
        assert_eq!(
            recovered.changes,
            changes(&[("a", None), ("b", Some("2")), ("c", Some("4"))])
        );
        // Checkpointed segments are not read again.
        let after = recover(dir.path(), 1, true).unwrap();
        assert_eq!(after.changes, changes(&[("c", Some("4"))]));
        remove_upto(dir.path(), 1).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), vec![2]);
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_damage_before_the_end_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::start(dir.path(), 1, true).unwrap();
        journal
            .append(&encode(&changes(&[("kept", Some("yes"))])), false)
            .unwrap();
        journal
            .append(&encode(&changes(&[("torn", Some("no"))])), false)
            .unwrap();
        journal.sync().unwrap();
        let path = segment_path(dir.path(), 1);
        // The crash cut the second record short: its last bytes are zeros.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0u8; 4], journal.len() - 4).unwrap();
        let recovered = recover(dir.path(), 0, true).unwrap();
        assert_eq!(recovered.changes, changes(&[("kept", Some("yes"))]));

        // A segment after one that ended early: damage, not a torn end.
        let mut next = Journal::start(dir.path(), 2, true).unwrap();
        next.append(&encode(&changes(&[("later", Some("1"))])), false)
            .unwrap();
        next.sync().unwrap();
        assert!(matches!(
            recover(dir.path(), 0, true),
            Err(Error::Damaged(_))
        ));
        std::fs::remove_file(segment_path(dir.path(), 2)).unwrap();

        // A damaged record with a valid one after it: refused too.
        let mut third = Journal::start(dir.path(), 3, true).unwrap();
        third
            .append(&encode(&changes(&[("first", Some("1"))])), false)
            .unwrap();
        third
            .append(&encode(&changes(&[("second", Some("2"))])), false)
            .unwrap();
        third.sync().unwrap();
        let path = segment_path(dir.path(), 3);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xff], HEADER as u64 + 2).unwrap();
        assert!(matches!(
            recover(dir.path(), 2, true),
            Err(Error::Damaged(_))
        ));
    }

    #[test]
    fn a_record_of_another_segment_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::start(dir.path(), 1, true).unwrap();
        journal
            .append(&encode(&changes(&[("a", Some("1"))])), false)
            .unwrap();
        journal.sync().unwrap();
        // Segment 1's bytes under segment 2's name: the digests differ.
        std::fs::copy(segment_path(dir.path(), 1), segment_path(dir.path(), 2)).unwrap();
        std::fs::remove_file(segment_path(dir.path(), 1)).unwrap();
        let recovered = recover(dir.path(), 0, true).unwrap();
        assert_eq!(recovered.records, 0);
    }

    #[test]
    fn garbage_after_a_torn_record_is_not_read_as_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::start(dir.path(), 1, true).unwrap();
        journal
            .append(&encode(&changes(&[("kept", Some("yes"))])), false)
            .unwrap();
        let torn = journal.len();
        journal
            .append(
                &encode(&changes(&[("torn", Some(&"t".repeat(3000)))])),
                false,
            )
            .unwrap();
        journal.sync().unwrap();
        // A sector in the middle of the torn record never reached the
        // disk, and its header is gone too; what follows is not zeros.
        let path = segment_path(dir.path(), 1);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0u8; HEADER], torn).unwrap();
        file.write_all_at(&[0u8; 512], torn + 1024).unwrap();
        let recovered = recover(dir.path(), 0, true).unwrap();
        assert_eq!(recovered.records, 1);
        assert_eq!(recovered.changes, changes(&[("kept", Some("yes"))]));
    }

    #[test]
    fn a_segment_not_fully_made_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        // The directory does not exist: the file cannot even be made.
        assert!(Journal::start(&missing, 1, true).is_err());
        // A file of that number exists: refused, and left as it is.
        std::fs::write(segment_path(dir.path(), 2), b"").unwrap();
        assert!(Journal::start(dir.path(), 2, true).is_err());
        assert!(segment_path(dir.path(), 2).is_file());
        // A spare never used is discarded.
        Journal::start(dir.path(), 3, true)
            .unwrap()
            .discard()
            .unwrap();
        assert_eq!(segments(dir.path()).unwrap(), vec![2]);
    }

    #[test]
    fn a_record_larger_than_the_space_written_ahead_grows_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::start(dir.path(), 1, true).unwrap();
        let big = "x".repeat(EXTEND as usize + 10);
        journal
            .append(&encode(&changes(&[("big", Some(&big))])), false)
            .unwrap();
        journal.sync().unwrap();
        let recovered = recover(dir.path(), 0, true).unwrap();
        assert_eq!(recovered.changes, changes(&[("big", Some(&big))]));
    }
}
