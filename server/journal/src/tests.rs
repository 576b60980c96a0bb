//! The journaled table as a whole: checkpoints, crashes, lazy commits.

use std::{ops::Bound, time::Duration};

use crate::{Changes, Options, Writer, segment};

const TABLE: redb::TableDefinition<'static, &'static [u8], &'static [u8]> =
    redb::TableDefinition::new("data");
const FILE: &str = "data.redb";

fn open(dir: &std::path::Path, options: Options) -> Writer {
    Writer::open(dir, FILE, TABLE, options).unwrap()
}

fn put(key: &[u8], value: &[u8]) -> Changes {
    [(key.to_vec(), Some(value.to_vec()))].into_iter().collect()
}

/// What the redb file itself holds under `key`, without the journal.
fn in_file(dir: &std::path::Path, key: &[u8]) -> Option<Vec<u8>> {
    use redb::ReadableDatabase;
    let db = redb::Database::open(dir.join(FILE)).unwrap();
    let tx = db.begin_read().unwrap();
    let table = tx.open_table(TABLE).unwrap();
    table.get(key).unwrap().map(|v| v.value().to_vec())
}

/// Copies the files as they are while the writer is open: what a crash
/// leaves behind.
fn crash_image(dir: &std::path::Path) -> tempfile::TempDir {
    let image = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join(FILE), image.path().join(FILE)).unwrap();
    let journal = crate::journal_dir(image.path());
    std::fs::create_dir(&journal).unwrap();
    for entry in std::fs::read_dir(crate::journal_dir(dir)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), journal.join(entry.file_name())).unwrap();
    }
    image
}

/// Ticks `writer` until `done` (at most 5 s).
fn until(writer: &mut Writer, done: impl Fn(&Writer) -> bool) {
    for _ in 0..500 {
        if done(writer) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
        writer.tick(false);
    }
    panic!("no checkpoint within 5 s");
}

/// Whether the first segment was checkpointed and removed.
fn first_segment_gone(dir: &std::path::Path) -> bool {
    segment::segments(&crate::journal_dir(dir))
        .unwrap()
        .first()
        .is_none_or(|first| *first != 1)
}

/// Options that checkpoint at 1 MiB, and a writer in `dir` that has
/// committed `times` that many (and a little more) in 64 KiB values:
/// the writer, its options and how many keys it wrote.
fn past_checkpoints(dir: &std::path::Path, times: usize) -> (Writer, Options, usize) {
    let options = Options {
        freeze_bytes: 1 << 20,
        ..Options::default()
    };
    let mut writer = open(dir, options.clone());
    let value = vec![7u8; 64 << 10];
    let count = times * options.freeze_bytes / value.len() + 1;
    for n in 0..count as u32 {
        writer.commit(put(&n.to_be_bytes(), &value), true).unwrap();
    }
    (writer, options, count)
}

/// How many keys `writer` reads.
fn entries(writer: &Writer) -> usize {
    writer
        .reader()
        .scan(b"", Bound::Unbounded, usize::MAX)
        .unwrap()
        .len()
}

#[test]
fn many_changes_are_checkpointed_into_the_file_and_their_segments_removed() {
    let dir = tempfile::tempdir().unwrap();
    // Three times the changes that start a checkpoint.
    let (mut writer, options, count) = past_checkpoints(dir.path(), 3);
    let reader = writer.reader();
    let value = vec![7u8; 64 << 10];
    // The first checkpoint's segment goes once it has committed.
    until(&mut writer, |_| first_segment_gone(dir.path()));
    assert_eq!(
        reader.get(&0u32.to_be_bytes()).unwrap().as_deref(),
        Some(value.as_slice())
    );
    assert_eq!(entries(&writer), count);
    drop(reader);
    drop(writer);
    // A closed store: everything in the file, no segment left.
    let last = (count - 1) as u32;
    assert_eq!(
        in_file(dir.path(), &last.to_be_bytes()).map(|v| v.len()),
        Some(value.len())
    );
    assert!(
        segment::segments(&crate::journal_dir(dir.path()))
            .unwrap()
            .is_empty()
    );
    // And it opens again with all of it.
    assert_eq!(entries(&open(dir.path(), options)), count);
}

#[test]
fn a_crash_image_is_replayed_and_lazy_commits_are_made_durable_by_sync() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        each_synced: false,
        ..Options::default()
    };
    let mut writer = open(dir.path(), options.clone());
    writer.commit(put(b"durable", b"1"), true).unwrap();
    writer.commit(put(b"lazy", b"2"), false).unwrap();
    // Seen at once, durable or not.
    assert_eq!(writer.reader().get(b"lazy").unwrap(), Some(b"2".to_vec()));
    writer.sync().unwrap();
    let image = crash_image(dir.path());
    assert_eq!(
        in_file(image.path(), b"durable"),
        None,
        "only the journal holds it"
    );
    let recovered = open(image.path(), options);
    let reader = recovered.reader();
    assert_eq!(reader.get(b"durable").unwrap(), Some(b"1".to_vec()));
    assert_eq!(reader.get(b"lazy").unwrap(), Some(b"2".to_vec()));
    drop(reader);
    drop(recovered);
    // Its checkpoint (or its close) put them into the file.
    assert_eq!(in_file(image.path(), b"lazy"), Some(b"2".to_vec()));
    drop(writer);
}

#[test]
fn a_second_writer_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path(), Options::default());
    assert!(matches!(
        Writer::open(dir.path(), FILE, TABLE, Options::default()),
        Err(crate::Error::InUse(_))
    ));
}

#[test]
fn a_key_read_before_a_checkpoint_is_read_anew_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        freeze_bytes: 64 << 10,
        ..Options::default()
    };
    let mut writer = open(dir.path(), options.clone());
    writer.commit(put(b"key", b"old"), true).unwrap();
    drop(writer);
    // Now in the file: read through the snapshot (and kept there).
    let mut writer = open(dir.path(), options);
    let reader = writer.reader();
    assert_eq!(reader.get(b"key").unwrap(), Some(b"old".to_vec()));
    assert_eq!(reader.get(b"absent").unwrap(), None);
    writer.commit(put(b"key", b"new"), true).unwrap();
    writer.commit(put(b"absent", b"here"), true).unwrap();
    // Enough to checkpoint both into the file and drop them from memory.
    let filler = vec![0u8; 16 << 10];
    for n in 0u32..8 {
        writer.commit(put(&n.to_be_bytes(), &filler), true).unwrap();
    }
    until(&mut writer, in_tables_only);
    assert_eq!(reader.get(b"key").unwrap(), Some(b"new".to_vec()));
    assert_eq!(reader.get(b"absent").unwrap(), Some(b"here".to_vec()));
}

#[test]
fn a_range_read_before_a_checkpoint_is_read_anew_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        freeze_bytes: 64 << 10,
        ..Options::default()
    };
    let mut writer = open(dir.path(), options.clone());
    for key in [b"p1", b"p2", b"q1"] {
        writer.commit(put(key, key), true).unwrap();
    }
    drop(writer);
    // Now in the file: read through the snapshot (and kept there).
    let mut writer = open(dir.path(), options);
    let reader = writer.reader();
    let keys = |limit: usize| -> Vec<Vec<u8>> {
        reader
            .scan(b"p", Bound::Unbounded, limit)
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    };
    for _ in 0..2 {
        assert_eq!(keys(10), [b"p1".to_vec(), b"p2".to_vec()]);
        assert_eq!(keys(1), [b"p1".to_vec()]);
    }
    let after = reader
        .scan(b"p", Bound::Excluded(b"p1".as_slice()), 10)
        .unwrap();
    assert_eq!(after, [(b"p2".to_vec(), b"p2".to_vec())]);
    // Changes in memory show over what the snapshot kept.
    let mut changes = put(b"p3", b"p3");
    changes.insert(b"p1".to_vec(), None);
    writer.commit(changes, true).unwrap();
    assert_eq!(keys(10), [b"p2".to_vec(), b"p3".to_vec()]);
    // And once checkpointed into the file and dropped from memory.
    let filler = vec![0u8; 16 << 10];
    for n in 0u32..8 {
        writer.commit(put(&n.to_be_bytes(), &filler), true).unwrap();
    }
    until(&mut writer, in_tables_only);
    for _ in 0..2 {
        assert_eq!(keys(10), [b"p2".to_vec(), b"p3".to_vec()]);
        assert_eq!(keys(1), [b"p2".to_vec()]);
    }
}

/// Whether the writer's first checkpoint has been taken over by reads of
/// the file (nothing frozen or settling).
fn in_tables_only(writer: &Writer) -> bool {
    !writer.checkpoint_running() && writer.frozen_is_empty()
}

#[test]
fn a_key_written_again_and_again_still_leads_to_checkpoints() {
    // The table holds one value; the journal holds every write of it.
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        freeze_bytes: 256 << 10,
        ..Options::default()
    };
    let mut writer = open(dir.path(), options);
    let value = vec![3u8; 32 << 10];
    for _ in 0..64 {
        writer.commit(put(b"same", &value), false).unwrap();
    }
    until(&mut writer, |_| first_segment_gone(dir.path()));
    assert_eq!(
        writer.reader().get(b"same").unwrap().as_deref(),
        Some(value.as_slice())
    );
}

/// A deferring journal (as a device's) in a new directory.
fn deferring() -> (tempfile::TempDir, Options, Writer) {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        each_synced: false,
        defer_unsynced: true,
        ..Options::default()
    };
    let writer = open(dir.path(), options.clone());
    (dir, options, writer)
}

#[test]
fn a_deferring_journal_writes_unsynced_commits_only_with_the_next_synced_one() {
    let (dir, options, mut writer) = deferring();
    writer.commit(put(b"durable", b"1"), true).unwrap();
    writer.commit(put(b"lazy", b"2"), false).unwrap();
    writer.commit(put(b"both", b"lazy"), false).unwrap();
    // Seen at once, yet not written: a crash now takes it, and only it.
    assert_eq!(writer.reader().get(b"lazy").unwrap(), Some(b"2".to_vec()));
    let image = crash_image(dir.path());
    let recovered = open(image.path(), options.clone());
    assert_eq!(
        recovered.reader().get(b"durable").unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(recovered.reader().get(b"lazy").unwrap(), None);
    drop(recovered);
    // The next synced commit carries what was held; its own change wins.
    writer.commit(put(b"both", b"synced"), true).unwrap();
    let image = crash_image(dir.path());
    let recovered = open(image.path(), options.clone());
    let reader = recovered.reader();
    assert_eq!(reader.get(b"lazy").unwrap(), Some(b"2".to_vec()));
    assert_eq!(reader.get(b"both").unwrap(), Some(b"synced".to_vec()));
    drop(reader);
    drop(recovered);
    // A sync writes what is held on its own; a removal is held too.
    let mut gone = Changes::new();
    gone.insert(b"lazy".to_vec(), None);
    writer.commit(gone, false).unwrap();
    writer.commit(put(b"later", b"3"), false).unwrap();
    writer.sync().unwrap();
    let image = crash_image(dir.path());
    let recovered = open(image.path(), options.clone());
    assert_eq!(recovered.reader().get(b"lazy").unwrap(), None);
    assert_eq!(
        recovered.reader().get(b"later").unwrap(),
        Some(b"3".to_vec())
    );
    drop(recovered);
    // Closing writes everything into the file.
    writer.commit(put(b"at-close", b"4"), false).unwrap();
    drop(writer);
    assert_eq!(in_file(dir.path(), b"at-close"), Some(b"4".to_vec()));
}

#[test]
fn a_deferring_journal_writes_what_it_holds_once_it_holds_too_much() {
    let (dir, options, mut writer) = deferring();
    let value = vec![9u8; 64 << 10];
    // Each commit holds a 4-byte key and its value: the one that would go
    // past the limit is written with all those before it; the one after
    // is held again.
    let fit = crate::DEFERRED_BYTES / (4 + value.len());
    let count = fit + 2;
    for n in 0..count as u32 {
        writer.commit(put(&n.to_be_bytes(), &value), false).unwrap();
    }
    let image = crash_image(dir.path());
    let recovered = open(image.path(), options);
    let kept = recovered
        .reader()
        .scan(b"", Bound::Unbounded, usize::MAX)
        .unwrap()
        .len();
    assert_eq!(kept, fit + 1, "of {count}");
    drop(recovered);
    drop(writer);
}

#[test]
fn a_key_held_again_and_again_counts_once() {
    let (dir, options, mut writer) = deferring();
    let value = vec![5u8; 64 << 10];
    // Far more than the limit written, to one key: held, not written.
    for n in 0..(4 * crate::DEFERRED_BYTES / value.len()) {
        let mut value = value.clone();
        value[0] = n as u8;
        writer.commit(put(b"same", &value), false).unwrap();
    }
    let image = crash_image(dir.path());
    let recovered = open(image.path(), options);
    assert_eq!(recovered.reader().get(b"same").unwrap(), None);
    drop(recovered);
    drop(writer);
}

#[test]
fn a_file_left_open_by_a_crash_opens_without_a_repair() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, options, count) = past_checkpoints(dir.path(), 2);
    until(&mut writer, |_| first_segment_gone(dir.path()));
    // The file as a crash leaves it, while the writer has it open.
    let image = crash_image(dir.path());
    // redb asks before it walks the file to repair it: refused here, so
    // the open fails unless the last commit saved what a repair rebuilds.
    let db = redb::Database::builder()
        .set_repair_callback(|session| session.abort())
        .create(image.path().join(FILE));
    assert!(db.is_ok(), "the crashed file needed a repair");
    drop(db);
    // And the journal on it holds everything.
    assert_eq!(entries(&open(image.path(), options)), count);
}

#[test]
fn what_a_crash_left_is_checkpointed_after_opening_and_replayed_until_then() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default();
    // In the file: 100 keys.
    let mut writer = open(dir.path(), options.clone());
    for n in 0u32..100 {
        writer.commit(put(&n.to_be_bytes(), b"old"), true).unwrap();
    }
    drop(writer);
    // In the journal only: one of them removed, another changed.
    let mut writer = open(dir.path(), options.clone());
    writer
        .commit(
            [(7u32.to_be_bytes().to_vec(), None)].into_iter().collect(),
            true,
        )
        .unwrap();
    writer
        .commit(put(&99u32.to_be_bytes(), b"new"), true)
        .unwrap();
    let first = crash_image(dir.path());
    drop(writer);
    let all = |writer: &Writer| {
        let reader = writer.reader();
        let found = reader.scan(b"", Bound::Unbounded, usize::MAX).unwrap();
        // The 100 keys but the one removed (and the key written later).
        assert_eq!(found.iter().filter(|(key, _)| key.len() == 4).count(), 99);
        assert_eq!(reader.get(&7u32.to_be_bytes()).unwrap(), None);
        assert_eq!(
            reader.get(&99u32.to_be_bytes()).unwrap().as_deref(),
            Some(&b"new"[..])
        );
    };
    // The file as it is until the replay's checkpoint commits.
    let second = tempfile::tempdir().unwrap();
    std::fs::copy(first.path().join(FILE), second.path().join(FILE)).unwrap();
    // Checkpoints are held after they commit, before the writer hears of
    // them, until the test lets them go: the replayed segments stay.
    let (sender, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    let holding = Options {
        on_checkpoint: Some(std::sync::Arc::new(move |_| {
            let _ = held.lock().unwrap().recv();
        })),
        ..options.clone()
    };
    let replayed = segment::segments(&crate::journal_dir(first.path())).unwrap();
    let mut recovered = open(first.path(), holding);
    // (Dropped before the writer if the test fails, so that it can close.)
    let release = sender;
    // Handed to the checkpoint thread, not written by the opening; read at
    // once from memory.
    assert!(recovered.checkpoint_running());
    all(&recovered);
    recovered.commit(put(b"after", b"the crash"), true).unwrap();
    // A crash again before the replay reached the file: the replayed
    // segments, then the new one, are read again.
    let journal = crate::journal_dir(second.path());
    std::fs::create_dir(&journal).unwrap();
    for entry in std::fs::read_dir(crate::journal_dir(first.path())).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), journal.join(entry.file_name())).unwrap();
    }
    let replayed_gone = |dir: &std::path::Path| {
        let now = segment::segments(&crate::journal_dir(dir)).unwrap();
        !replayed.iter().any(|n| now.contains(n))
    };
    assert!(!replayed_gone(second.path()));
    let again = open(second.path(), options.clone());
    all(&again);
    assert_eq!(
        again.reader().get(b"after").unwrap().as_deref(),
        Some(&b"the crash"[..])
    );
    drop(again);
    // Let go: once the writer hears of the commit, those segments go.
    drop(release);
    until(&mut recovered, |_| replayed_gone(first.path()));
    all(&recovered);
    drop(recovered);
    assert_eq!(
        in_file(first.path(), &99u32.to_be_bytes()),
        Some(b"new".to_vec())
    );
    assert_eq!(in_file(first.path(), &7u32.to_be_bytes()), None);
    assert_eq!(in_file(first.path(), b"after"), Some(b"the crash".to_vec()));
}

#[test]
fn a_journal_whose_last_record_was_cut_short_opens_again_after_more_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default();
    let mut writer = open(dir.path(), options.clone());
    writer.commit(put(b"kept", b"yes"), true).unwrap();
    let value = vec![0x5au8; 3000];
    writer.commit(put(b"torn", &value), true).unwrap();
    let first = crash_image(dir.path());
    drop(writer);
    // The crash cut the last record short: its last bytes never reached
    // the disk.
    let path = segment::segment_path(&crate::journal_dir(first.path()), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes
        .windows(value.len())
        .rposition(|w| w == value.as_slice())
        .unwrap()
        + value.len();
    bytes[end - 4..end].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let mut recovered = open(first.path(), options.clone());
    let read = |writer: &Writer, key: &[u8]| writer.reader().get(key).unwrap();
    assert_eq!(read(&recovered, b"kept"), Some(b"yes".to_vec()));
    assert_eq!(read(&recovered, b"torn"), None);
    // The segment that ended early is gone before anything is written after
    // it: read again with later records, it would be damage.
    assert!(first_segment_gone(first.path()));
    // Written after the cut, then a crash again.
    recovered.commit(put(b"after", b"the cut"), true).unwrap();
    let second = crash_image(first.path());
    drop(recovered);
    let again = open(second.path(), options);
    assert_eq!(read(&again, b"kept"), Some(b"yes".to_vec()));
    assert_eq!(read(&again, b"torn"), None);
    assert_eq!(read(&again, b"after"), Some(b"the cut".to_vec()));
}
