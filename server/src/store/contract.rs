//! The contract every [`Store`] backend meets. Each backend's tests call
//! [`run_all`] on a fresh, empty store.

use super::{Batch, Keyspace, Store, StoreError};

/// Runs every contract test against `store`, which must be empty.
pub(crate) async fn run_all(store: &dyn Store) {
    get_put_delete(store).await;
    keyspaces_are_separate(store).await;
    scan_is_ordered_prefixed_and_paged(store).await;
    failed_precondition_writes_nothing(store).await;
    concurrent_conditional_writes_have_one_winner(store).await;
}

async fn get_put_delete(store: &dyn Store) {
    assert_eq!(store.get(Keyspace::Devices, b"a").await.unwrap(), None);
    let mut batch = Batch::new();
    batch.put(Keyspace::Devices, b"a".to_vec(), b"1".to_vec());
    store.commit(batch).await.unwrap();
    assert_eq!(
        store.get(Keyspace::Devices, b"a").await.unwrap(),
        Some(b"1".to_vec())
    );
    let mut batch = Batch::new();
    batch.delete(Keyspace::Devices, b"a".to_vec());
    store.commit(batch).await.unwrap();
    assert_eq!(store.get(Keyspace::Devices, b"a").await.unwrap(), None);
}

async fn keyspaces_are_separate(store: &dyn Store) {
    let mut batch = Batch::new();
    batch.put(Keyspace::Professionals, b"k".to_vec(), b"p".to_vec());
    batch.put(Keyspace::Specialists, b"k".to_vec(), b"s".to_vec());
    store.commit(batch).await.unwrap();
    assert_eq!(
        store.get(Keyspace::Professionals, b"k").await.unwrap(),
        Some(b"p".to_vec())
    );
    assert_eq!(
        store.get(Keyspace::Specialists, b"k").await.unwrap(),
        Some(b"s".to_vec())
    );
    // A scan of one keyspace never runs into the next one.
    let all = store
        .scan(Keyspace::Professionals, b"", None, 100)
        .await
        .unwrap();
    assert_eq!(all, vec![(b"k".to_vec(), b"p".to_vec())]);
}

async fn scan_is_ordered_prefixed_and_paged(store: &dyn Store) {
    let mut batch = Batch::new();
    for key in ["b2", "a1", "b1", "b3", "c1"] {
        batch.put(
            Keyspace::DevicesByProfessional,
            key.as_bytes().to_vec(),
            Vec::new(),
        );
    }
    store.commit(batch).await.unwrap();
    let keys = |entries: Vec<(Vec<u8>, Vec<u8>)>| {
        entries
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect::<Vec<_>>()
    };
    let space = Keyspace::DevicesByProfessional;
    let first = store.scan(space, b"b", None, 2).await.unwrap();
    assert_eq!(keys(first), ["b1", "b2"]);
    let rest = store.scan(space, b"b", Some(b"b2"), 2).await.unwrap();
    assert_eq!(keys(rest), ["b3"]);
    let none = store.scan(space, b"b", Some(b"b3"), 2).await.unwrap();
    assert!(none.is_empty());
    let all = store.scan(space, b"", None, 100).await.unwrap();
    assert_eq!(keys(all), ["a1", "b1", "b2", "b3", "c1"]);
}

async fn failed_precondition_writes_nothing(store: &dyn Store) {
    let mut batch = Batch::new();
    batch.expect(Keyspace::Meta, b"absent".to_vec(), Some(b"x".to_vec()));
    batch.put(Keyspace::Meta, b"written".to_vec(), b"1".to_vec());
    batch.put(Keyspace::Devices, b"written".to_vec(), b"1".to_vec());
    assert!(matches!(
        store.commit(batch).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get(Keyspace::Meta, b"written").await.unwrap(), None);
    assert_eq!(
        store.get(Keyspace::Devices, b"written").await.unwrap(),
        None
    );

    // A precondition that holds lets every write through together.
    let mut batch = Batch::new();
    batch.expect(Keyspace::Meta, b"absent".to_vec(), None);
    batch.put(Keyspace::Meta, b"written".to_vec(), b"1".to_vec());
    batch.put(Keyspace::Devices, b"written".to_vec(), b"1".to_vec());
    store.commit(batch).await.unwrap();
    assert!(
        store
            .get(Keyspace::Meta, b"written")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get(Keyspace::Devices, b"written")
            .await
            .unwrap()
            .is_some()
    );
}

async fn concurrent_conditional_writes_have_one_winner(store: &dyn Store) {
    let attempt = |who: u8| async move {
        let mut batch = Batch::new();
        batch.expect(Keyspace::Meta, b"claim".to_vec(), None);
        batch.put(Keyspace::Meta, b"claim".to_vec(), vec![who]);
        store.commit(batch).await
    };
    let results = futures_join(attempt(1), attempt(2)).await;
    let wins = [&results.0, &results.1]
        .iter()
        .filter(|r| r.is_ok())
        .count();
    assert_eq!(wins, 1, "exactly one conditional write wins");
    let winner = store.get(Keyspace::Meta, b"claim").await.unwrap().unwrap();
    assert!(winner == [1] || winner == [2]);
}

async fn futures_join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}
