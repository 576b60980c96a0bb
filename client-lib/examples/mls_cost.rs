//! What MLS costs a device, per operation, in the ciphersuite samenop uses:
//! encrypting and decrypting one 100-byte thread message, and the commit
//! that adds one member to a group of 2, 5 and 20 members (with the sizes
//! of that commit and its Welcome). Pure OpenMLS work, in memory: the
//! durable write that follows each operation in the client is a disk flush
//! on top of this.
//!
//! Run: `cargo run --release -p samenop-client --example mls_cost`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use openmls::prelude::{
    BasicCredential, CredentialWithKey, KeyPackage, MlsGroup, MlsGroupCreateConfig,
    MlsGroupJoinConfig, MlsMessageBodyIn, MlsMessageIn, ProcessedMessageContent, StagedWelcome,
    tls_codec::{DeserializeBytes, Serialize},
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::{OpenMlsProvider, types::SignatureScheme};
use samenop_client::mls::CIPHERSUITE;

/// One member: its provider (keys, state) and signer.
struct Member {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

fn member(n: usize) -> Member {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
    signer.store(provider.storage()).unwrap();
    let credential = CredentialWithKey {
        credential: BasicCredential::new(format!("device-{n}").into_bytes()).into(),
        signature_key: signer.public().into(),
    };
    Member {
        provider,
        signer,
        credential,
    }
}

fn key_package(m: &Member) -> KeyPackage {
    KeyPackage::builder()
        .build(CIPHERSUITE, &m.provider, &m.signer, m.credential.clone())
        .unwrap()
        .key_package()
        .clone()
}

fn join(m: &Member, welcome: &[u8]) -> MlsGroup {
    let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact_bytes(welcome)
        .unwrap()
        .extract()
    else {
        panic!("a Welcome");
    };
    let config = MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .build();
    StagedWelcome::new_from_welcome(&m.provider, &config, welcome, None)
        .unwrap()
        .into_group(&m.provider)
        .unwrap()
}

fn per_op(total: Duration, ops: u32) -> String {
    format!("{:.1} µs", total.as_secs_f64() * 1e6 / f64::from(ops))
}

fn main() {
    const MESSAGES: u32 = 500;
    let payload = [0x42u8; 100];
    println!("ciphersuite {CIPHERSUITE:?}, release build, one core");
    println!(
        "members | encrypt 100 B | decrypt 100 B | add 1 member (committer) | commit | welcome"
    );
    for size in [2usize, 5, 20] {
        // A group of `size` members, built by its creator.
        let creator = member(0);
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .use_ratchet_tree_extension(true)
            .build();
        let mut group = MlsGroup::new(
            &creator.provider,
            &creator.signer,
            &config,
            creator.credential.clone(),
        )
        .unwrap();
        let others: Vec<Member> = (1..size).map(member).collect();
        let packages: Vec<KeyPackage> = others.iter().map(key_package).collect();
        let (_, welcome, _) = group
            .add_members(&creator.provider, &creator.signer, &packages)
            .unwrap();
        group.merge_pending_commit(&creator.provider).unwrap();
        let welcome = welcome.tls_serialize_detached().unwrap();
        let reader = &others[0];
        let mut reader_group = join(reader, &welcome);

        // Encrypt and decrypt, one message at a time.
        let mut ciphertexts = Vec::with_capacity(MESSAGES as usize);
        let started = Instant::now();
        for _ in 0..MESSAGES {
            let out = group
                .create_message(&creator.provider, &creator.signer, &payload)
                .unwrap();
            ciphertexts.push(out.tls_serialize_detached().unwrap());
        }
        let encrypt = started.elapsed();
        let started = Instant::now();
        for raw in &ciphertexts {
            let message = MlsMessageIn::tls_deserialize_exact_bytes(raw).unwrap();
            let processed = reader_group
                .process_message(
                    &reader.provider,
                    message.try_into_protocol_message().unwrap(),
                )
                .unwrap();
            assert!(matches!(
                processed.into_content(),
                ProcessedMessageContent::ApplicationMessage(_)
            ));
        }
        let decrypt = started.elapsed();

        // Adding one more member to the group of `size`: the committer's
        // work (commit, Welcome, merge). Each round adds a newcomer and
        // removes it again, so every add starts from `size` members; the
        // median of the rounds is shown.
        let mut adds = Vec::new();
        let (mut commit_len, mut welcome_len) = (0, 0);
        for round in 0..15 {
            let newcomer = member(1000 + round);
            let package = key_package(&newcomer);
            let started = Instant::now();
            let (commit, welcome, _) = group
                .add_members(&creator.provider, &creator.signer, &[package])
                .unwrap();
            group.merge_pending_commit(&creator.provider).unwrap();
            adds.push(started.elapsed());
            commit_len = commit.tls_serialize_detached().unwrap().len();
            welcome_len = welcome.tls_serialize_detached().unwrap().len();
            let leaf = group
                .members()
                .find(|m| m.signature_key == newcomer.signer.public())
                .unwrap()
                .index;
            group
                .remove_members(&creator.provider, &creator.signer, &[leaf])
                .unwrap();
            group.merge_pending_commit(&creator.provider).unwrap();
        }
        adds.sort();
        println!(
            "{size:>7} | {:>13} | {:>13} | {:>24} | {commit_len:>6} B | {welcome_len:>7} B",
            per_op(encrypt, MESSAGES),
            per_op(decrypt, MESSAGES),
            format!("{:.2} ms", adds[adds.len() / 2].as_secs_f64() * 1e3),
        );
    }
}
