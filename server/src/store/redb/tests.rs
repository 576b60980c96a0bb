//! The redb backend: the store contract, and what its journal promises.

use std::collections::BTreeMap;

use redb::ReadableDatabase;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    super::super::contract::run_all(Arc::new(store)).await;
}

/// Copies the store's files as they are while it runs: what a crash
/// leaves behind.
fn crash_image(dir: &Path) -> tempfile::TempDir {
    let image = tempfile::tempdir().unwrap();
    std::fs::copy(RedbStore::file(dir), RedbStore::file(image.path())).unwrap();
    let journal = RedbStore::journal_dir(image.path());
    std::fs::create_dir(&journal).unwrap();
    for entry in std::fs::read_dir(RedbStore::journal_dir(dir)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), journal.join(entry.file_name())).unwrap();
    }
    image
}

/// What redb's file itself holds under `key`, without the journal.
fn in_file(dir: &Path, space: Keyspace, key: &[u8]) -> Option<Vec<u8>> {
    let db = redb::Database::open(RedbStore::file(dir)).unwrap();
    let tx = db.begin_read().unwrap();
    let table = tx.open_table(TABLE).unwrap();
    table
        .get(full_key(space, key).as_slice())
        .unwrap()
        .map(|v| v.value().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_acknowledged_is_replayed_from_the_journal_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    for n in 0u32..50 {
        let mut batch = Batch::new();
        batch.put(Keyspace::Devices, n.to_be_bytes(), vec![n as u8; 100]);
        if n % 2 == 1 {
            batch.delete(Keyspace::Devices, (n - 1).to_be_bytes());
        }
        batch.audit(samenop_proto::v1::AuditEvent {
            action: format!("write {n}"),
            ..Default::default()
        });
        store.commit(batch).await.unwrap();
    }
    let image = crash_image(dir.path());
    let untouched = crash_image(dir.path());
    // The file alone does not hold them: the journal carries them.
    assert_eq!(
        in_file(untouched.path(), Keyspace::Devices, &1u32.to_be_bytes()),
        None
    );

    let recovered = RedbStore::open(image.path()).unwrap();
    for n in 0u32..50 {
        let expected = (n % 2 == 1).then(|| vec![n as u8; 100]);
        assert_eq!(
            recovered
                .get(Keyspace::Devices, &n.to_be_bytes())
                .await
                .unwrap(),
            expected,
            "device {n}"
        );
    }
    assert_eq!(
        recovered
            .scan(Keyspace::Audit, b"", None, 1000)
            .await
            .unwrap()
            .len(),
        50
    );
    // Its checkpoint (or its close) put them into the file.
    drop(recovered);
    assert_eq!(
        in_file(image.path(), Keyspace::Devices, &1u32.to_be_bytes()),
        Some(vec![1; 100])
    );
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_the_journal_over_the_file() {
    // A model of the keyspace, changed in rounds; each reopen moves what
    // the journal held into the file, so reads merge both.
    let dir = tempfile::tempdir().unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut seed = 0x2545_f491_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..4 {
        let store = RedbStore::open(dir.path()).unwrap();
        for _ in 0..60 {
            let key = vec![b'k', (next() % 40) as u8];
            let mut batch = Batch::new();
            if next() % 3 == 0 {
                batch.delete(Keyspace::Consults, key.clone());
                model.remove(&key);
            } else {
                let value = vec![round as u8, (next() % 256) as u8];
                batch.put(Keyspace::Consults, key.clone(), value.clone());
                model.insert(key, value);
            }
            store.commit(batch).await.unwrap();
        }
        // Another keyspace right after it must never show.
        let mut other = Batch::new();
        other.put(Keyspace::ConsultsByOwner, b"k".to_vec(), b"x".to_vec());
        store.commit(other).await.unwrap();
        for limit in [1, 3, 7, 100] {
            for after in [
                None,
                Some(vec![b'k', 10]),
                Some(vec![b'a']),
                Some(vec![b'k', 39]),
            ] {
                let expected: Vec<_> = model
                    .iter()
                    .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let got = store
                    .scan(Keyspace::Consults, b"k", after.as_deref(), limit)
                    .await
                    .unwrap();
                assert_eq!(
                    got, expected,
                    "round {round}, limit {limit}, after {after:?}"
                );
            }
        }
        for key in 0..40u8 {
            let key = vec![b'k', key];
            assert_eq!(
                store.get(Keyspace::Consults, &key).await.unwrap().as_ref(),
                model.get(&key)
            );
        }
    }
}

/// Commits one at a time (after a few, written by their caller's thread), bursts of
/// concurrent ones (grouped by the writer thread) and both at once, with
/// checkpoints running between: every commit lands once, in one audit
/// chain, and survives a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_and_grouped_commits_interleave() {
    let dir = tempfile::tempdir().unwrap();
    // Checkpoints every few commits.
    let store = RedbStore::open_tuned(dir.path(), true, 4 << 10).unwrap();
    let write = |store: RedbStore, n: u32| async move {
        let mut batch = Batch::new();
        batch.put(Keyspace::Devices, n.to_be_bytes(), vec![7; 200]);
        batch.audit(samenop_proto::v1::AuditEvent {
            action: format!("write {n}"),
            ..Default::default()
        });
        store.commit(batch).await.unwrap();
    };
    let mut n = 0u32;
    for _ in 0..6 {
        for _ in 0..20 {
            write(store.clone(), n).await;
            n += 1;
        }
        let mut burst = Vec::new();
        for _ in 0..40 {
            burst.push(tokio::spawn(write(store.clone(), n)));
            n += 1;
            if n.is_multiple_of(5) {
                // One at a time while the burst is being written.
                write(store.clone(), n).await;
                n += 1;
            }
        }
        for task in burst {
            task.await.unwrap();
        }
    }
    assert!(
        store.writer.state.lone.get() > 0,
        "commits one at a time were written by their callers"
    );
    drop(store);
    let store = RedbStore::open(dir.path()).unwrap();
    for k in 0..n {
        assert_eq!(
            store
                .get(Keyspace::Devices, &k.to_be_bytes())
                .await
                .unwrap(),
            Some(vec![7; 200]),
            "write {k}"
        );
    }
    let chain = super::super::contract::audit_chain(&store).await;
    assert_eq!(chain.len() as u32, n, "one audit event per commit");
    let head = super::super::contract::recorded_head(&store).await;
    let events = super::super::contract::verify(&chain, head).expect("an unbroken chain");
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=u64::from(n)).collect::<Vec<_>>());
}
