//! The contract every [`Store`] backend meets. Each backend's tests call
//! [`run_all`] on a fresh, empty store.

use std::sync::Arc;

use super::{
    Batch, Keyspace, Store, StoreError,
    audit::{Broken, Fault, GENESIS, HEAD_KEY, Head, Verifier, chain_hash},
};

/// Runs every contract test against `store`, which must be empty. Call it
/// from a multi-threaded runtime, so that concurrent commits really overlap.
pub(crate) async fn run_all(store: Arc<dyn Store>) {
    get_put_delete(store.as_ref()).await;
    keyspaces_are_separate(store.as_ref()).await;
    scan_is_ordered_prefixed_and_paged(store.as_ref()).await;
    failed_precondition_writes_nothing(store.as_ref()).await;
    audit_entries_are_chained_with_their_change(store.as_ref()).await;
    audit_index_is_written_with_the_event(store.as_ref()).await;
    audit_index_walks_many_prefixes_in_order(store.as_ref()).await;
    concurrent_conditional_writes_have_one_winner(store.clone()).await;
    concurrent_audit_appends_stay_gapless(store.clone()).await;
    concurrent_log_appends_are_numbered_without_conflict(store.clone()).await;
    log_appends_go_with_their_batch(store).await;
}

/// The stored chain: (key, raw entry) in order.
pub(super) async fn audit_chain(store: &dyn Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .scan(Keyspace::Audit, b"", None, usize::MAX)
        .await
        .unwrap()
}

/// An event whose action names it.
fn event(action: &str) -> samenop_proto::v1::AuditEvent {
    samenop_proto::v1::AuditEvent {
        action: action.into(),
        ..Default::default()
    }
}

/// Verifies a chain: its events, or the first fault.
pub(super) fn verify(
    chain: &[(Vec<u8>, Vec<u8>)],
    recorded: Head,
) -> Result<Vec<samenop_proto::v1::AuditEvent>, Broken> {
    let mut verifier = Verifier::default();
    let events = chain
        .iter()
        .map(|(key, raw)| verifier.check(key, raw))
        .collect::<Result<Vec<_>, _>>()?;
    verifier.finish(recorded)?;
    Ok(events)
}

pub(super) async fn recorded_head(store: &dyn Store) -> Head {
    let raw = store.get(Keyspace::Meta, HEAD_KEY).await.unwrap();
    Head::decode(raw.as_deref()).unwrap()
}

async fn audit_entries_are_chained_with_their_change(store: &dyn Store) {
    let mut batch = Batch::new();
    batch.put(Keyspace::Devices, b"audited".to_vec(), b"1".to_vec());
    batch.audit(event("first"));
    batch.audit(event("second"));
    store.commit(batch).await.unwrap();
    // A batch that fails its precondition appends nothing.
    let mut failing = Batch::new();
    failing.expect(Keyspace::Devices, b"audited".to_vec(), None);
    failing.audit(event("never"));
    assert!(matches!(
        store.commit(failing).await,
        Err(StoreError::Conflict)
    ));
    let mut only_audit = Batch::new();
    only_audit.audit(event("third"));
    store.commit(only_audit).await.unwrap();

    let chain = audit_chain(store).await;
    let head = recorded_head(store).await;
    let events = verify(&chain, head).unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["first", "second", "third"]);
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(events[0].previous_hash, GENESIS);
    assert_eq!(events[1].previous_hash, events[0].hash);
    // Each event checks on its own: its hash is over the previous hash and
    // its encoding with the hash left empty.
    for event in &events {
        let mut bare = event.clone();
        bare.hash.clear();
        let encoded = prost::Message::encode_to_vec(&bare);
        assert_eq!(
            chain_hash(&event.previous_hash, &encoded).as_slice(),
            event.hash
        );
    }

    // Any change to a stored entry breaks the chain exactly there.
    let mut flipped = chain.clone();
    let last = flipped[1].1.len() - 1;
    flipped[1].1[last] ^= 0x01;
    assert_eq!(verify(&flipped, head).unwrap_err().sequence, 2);
    let mut dropped = chain.clone();
    dropped.remove(1);
    assert_eq!(
        verify(&dropped, head).unwrap_err(),
        Broken {
            sequence: 2,
            fault: Fault::SequenceGap
        }
    );
    let truncated = &chain[..2];
    assert_eq!(
        verify(truncated, head).unwrap_err(),
        Broken {
            sequence: 3,
            fault: Fault::Truncated
        }
    );

    // The last event rewritten to name another previous hash, its own hash
    // recomputed over the true previous hash and the head moved to match:
    // every hash checks, and only the event's own previous hash gives the
    // forgery away.
    let mut forged = chain.clone();
    let mut event = events[2].clone();
    event.previous_hash = vec![0x5a; 32];
    event.hash.clear();
    let body = prost::Message::encode_to_vec(&event);
    let hash = chain_hash(&events[1].hash, &body);
    let entry = super::audit::AuditEntry {
        hash: hash.to_vec(),
        body,
    };
    forged[2].1 = prost::Message::encode_to_vec(&entry);
    let forged_head = Head { sequence: 3, hash };
    assert_eq!(
        verify(&forged, forged_head).unwrap_err(),
        Broken {
            sequence: 3,
            fault: Fault::PreviousHashMismatch
        }
    );
}

/// A walk under several prefixes returns each event named under any of
/// them once, in order, across many steps of its own and of the caller's.
async fn audit_index_walks_many_prefixes_in_order(store: &dyn Store) {
    use super::audit_index::{IndexKind, IndexWalk, prefix};
    use samenop_proto::v1::{AuditObject, AuditObjectType as Object};
    let family = uuid::Uuid::new_v4();
    let consults = [
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
    ];
    let start = recorded_head(store).await.sequence;
    let mut expected = Vec::new();
    for i in 0..600u64 {
        let consult = consults[(i % 3) as usize];
        let mut objects = vec![AuditObject {
            object_type: Object::Consult as i32,
            object_id: consult.to_string(),
        }];
        if i % 5 == 0 {
            objects.push(AuditObject {
                object_type: Object::Family as i32,
                object_id: family.to_string(),
            });
        }
        // The walk is under the family and consults 0 and 2.
        if i % 3 != 1 || i % 5 == 0 {
            expected.push(start + i + 1);
        }
        let mut batch = Batch::new();
        batch.audit(samenop_proto::v1::AuditEvent {
            action: format!("walked-{i}"),
            objects,
            ..Default::default()
        });
        store.commit(batch).await.unwrap();
    }
    let prefixes = [
        prefix(IndexKind::Family, family.as_bytes()),
        prefix(IndexKind::Consult, consults[0].as_bytes()),
        prefix(IndexKind::Consult, consults[2].as_bytes()),
    ];
    let mut walk = IndexWalk::new(&prefixes, start);
    let mut walked: Vec<u64> = Vec::new();
    loop {
        let step = walk.next(store, 7).await.unwrap();
        walked.extend(&step);
        if step.len() < 7 {
            break;
        }
    }
    assert_eq!(walked, expected);
    // From the middle on, as a page token gives it.
    let middle = expected[expected.len() / 2];
    let mut walk = IndexWalk::new(&prefixes, middle);
    let rest = walk.next(store, usize::MAX).await.unwrap();
    assert_eq!(rest, expected[expected.len() / 2 + 1..]);
}

/// Every family, consult and professional an event names (and its actor)
/// is indexed in the event's own transaction, under its sequence.
async fn audit_index_is_written_with_the_event(store: &dyn Store) {
    use super::audit_index::{IndexKind, prefix};
    use samenop_proto::v1::{AuditActor, AuditObject, AuditObjectType as Object};
    let family = uuid::Uuid::new_v4();
    let consult = uuid::Uuid::now_v7();
    let actor = uuid::Uuid::now_v7();
    let named = samenop_proto::v1::AuditEvent {
        action: "indexed".into(),
        actor: Some(AuditActor {
            professional_id: actor.to_string(),
            ..Default::default()
        }),
        objects: vec![
            AuditObject {
                object_type: Object::Family as i32,
                object_id: family.to_string(),
            },
            AuditObject {
                object_type: Object::Consult as i32,
                object_id: consult.to_string(),
            },
            AuditObject {
                object_type: Object::Device as i32,
                object_id: uuid::Uuid::now_v7().to_string(),
            },
        ],
        ..Default::default()
    };
    let mut failing = Batch::new();
    failing.expect(Keyspace::Meta, b"never-there".to_vec(), Some(b"x".to_vec()));
    failing.audit(named.clone());
    assert!(matches!(
        store.commit(failing).await,
        Err(StoreError::Conflict)
    ));
    let mut batch = Batch::new();
    batch.audit(named);
    store.commit(batch).await.unwrap();
    let sequence = recorded_head(store).await.sequence;
    for (kind, id) in [
        (IndexKind::Family, family),
        (IndexKind::Consult, consult),
        (IndexKind::Professional, actor),
    ] {
        let key = prefix(kind, id.as_bytes());
        let entries = store
            .scan(Keyspace::AuditIndex, &key, None, 10)
            .await
            .unwrap();
        let keys: Vec<Vec<u8>> = entries.into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [[key, sequence.to_be_bytes().to_vec()].concat()]);
    }
    let all = store
        .scan(Keyspace::AuditIndex, b"", None, usize::MAX)
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "devices are not indexed");
}

async fn concurrent_audit_appends_stay_gapless(store: Arc<dyn Store>) {
    let before = audit_chain(store.as_ref()).await.len();
    let mut writers = Vec::new();
    for writer in 0..8u8 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..10u8 {
                let mut batch = Batch::new();
                batch.audit(event(&format!("{writer}-{n}")));
                store.commit(batch).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let chain = audit_chain(store.as_ref()).await;
    assert_eq!(chain.len(), before + 80);
    let events = verify(&chain, recorded_head(store.as_ref()).await).unwrap();
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (1..=u64::try_from(chain.len()).unwrap()).collect();
    assert_eq!(sequences, expected, "gapless, in order");
}

/// Many writers appending to the same two device logs at once: no append
/// conflicts, each log is numbered 1, 2, 3 … without gap or repeat, each
/// writer is told the numbers its own events got, and the head is the last.
async fn concurrent_log_appends_are_numbered_without_conflict(store: Arc<dyn Store>) {
    const WRITERS: u8 = 8;
    const EACH: u8 = 10;
    let (a, b) = ([0xa1; 16], [0xb2; 16]);
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut told = Vec::new();
            for n in 0..EACH {
                let mut batch = Batch::new();
                // Two events to a, one to b: a's numbers move by two.
                batch.append_log(a, vec![vec![writer, n, 0], vec![writer, n, 1]]);
                batch.append_log(b, vec![vec![writer, n]]);
                let lasts = store.commit_logged(batch).await.unwrap();
                told.push((vec![writer, n], lasts));
            }
            told
        }));
    }
    let mut told = Vec::new();
    for writer in writers {
        told.extend(writer.await.unwrap());
    }
    let log = |device: [u8; 16]| {
        let store = store.clone();
        async move {
            super::scan_all(store.as_ref(), Keyspace::Events, &device)
                .await
                .unwrap()
        }
    };
    let (log_a, log_b) = (log(a).await, log(b).await);
    let total = usize::from(WRITERS) * usize::from(EACH);
    assert_eq!(log_a.len(), 2 * total);
    assert_eq!(log_b.len(), total);
    for (entries, device) in [(&log_a, a), (&log_b, b)] {
        for (i, (key, _)) in entries.iter().enumerate() {
            let number = u64::from_be_bytes(key[16..24].try_into().unwrap());
            assert_eq!(number, i as u64 + 1, "gapless, in order");
            assert_eq!(key[..16], device);
        }
    }
    for (id, lasts) in told {
        let [last_a, last_b] = lasts[..] else {
            panic!("one number per append, got {lasts:?}");
        };
        let at = |entries: &[(Vec<u8>, Vec<u8>)], n: u64| {
            entries[usize::try_from(n - 1).unwrap()].1.clone()
        };
        assert_eq!(at(&log_a, last_a - 1), [id.as_slice(), &[0]].concat());
        assert_eq!(at(&log_a, last_a), [id.as_slice(), &[1]].concat());
        assert_eq!(at(&log_b, last_b), id);
    }
    let head = store.get(Keyspace::EventHeads, &a).await.unwrap();
    assert_eq!(head, Some((2 * total as u64).to_be_bytes().to_vec()));
}

/// A batch whose precondition fails appends nothing to its logs.
async fn log_appends_go_with_their_batch(store: Arc<dyn Store>) {
    let device = [0xc3; 16];
    let mut batch = Batch::new();
    batch.expect(Keyspace::Meta, b"log-gate".to_vec(), Some(b"open".to_vec()));
    batch.append_log(device, vec![b"never".to_vec()]);
    assert!(matches!(
        store.commit_logged(batch).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.get(Keyspace::EventHeads, &device).await.unwrap(),
        None
    );
    let mut batch = Batch::new();
    batch.append_log(device, vec![b"first".to_vec()]);
    assert_eq!(store.commit_logged(batch).await.unwrap(), vec![1]);
    // The same log twice in one batch: the second goes on after the first.
    let mut batch = Batch::new();
    batch.append_log(device, vec![b"second".to_vec(), b"third".to_vec()]);
    batch.append_log(device, vec![b"fourth".to_vec()]);
    assert_eq!(store.commit_logged(batch).await.unwrap(), vec![3, 4]);
    let log = super::scan_all(store.as_ref(), Keyspace::Events, &device)
        .await
        .unwrap();
    let values: Vec<&[u8]> = log.iter().map(|(_, v)| v.as_slice()).collect();
    assert_eq!(
        values,
        [b"first".as_slice(), b"second", b"third", b"fourth"]
    );
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

async fn concurrent_conditional_writes_have_one_winner(store: Arc<dyn Store>) {
    const ROUNDS: usize = 30;
    const RACERS: u8 = 4;
    for round in 0..ROUNDS {
        let key = format!("claim-{round}").into_bytes();
        let barrier = Arc::new(tokio::sync::Barrier::new(usize::from(RACERS)));
        let mut racers = Vec::new();
        for who in 0..RACERS {
            let (store, key, barrier) = (store.clone(), key.clone(), barrier.clone());
            racers.push(tokio::spawn(async move {
                barrier.wait().await;
                let mut batch = Batch::new();
                batch.expect(Keyspace::Meta, key.clone(), None);
                batch.put(Keyspace::Meta, key, vec![who]);
                (who, store.commit(batch).await)
            }));
        }
        let mut winners = Vec::new();
        for racer in racers {
            match racer.await.unwrap() {
                (who, Ok(())) => winners.push(who),
                (_, Err(StoreError::Conflict)) => {}
                (_, Err(other)) => panic!("a losing racer must get Conflict, got {other}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one conditional write wins"
        );
        let stored = store.get(Keyspace::Meta, &key).await.unwrap();
        assert_eq!(
            stored,
            Some(vec![winners[0]]),
            "the winner's value is stored"
        );
    }
}
