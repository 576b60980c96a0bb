//! B8: MLS as the client uses it (its ciphersuite, X25519, ChaCha20-Poly1305,
//! SHA-256, Ed25519; the ratchet tree in the Welcome), in memory: per
//! message encryption and decryption and an add-member commit, in groups of
//! 2, 5, 20 and 100, against the raw cost of the primitives a message
//! needs (one AEAD seal or open and one Ed25519 signature or verification
//! of the same size, from ring).

use std::time::Instant;

use openmls::prelude::{
    BasicCredential, CredentialWithKey, KeyPackage, MlsGroup, MlsGroupCreateConfig,
    MlsGroupJoinConfig, MlsMessageBodyIn, MlsMessageIn, StagedWelcome,
    tls_codec::{DeserializeBytes, Serialize as _},
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::types::SignatureScheme;
use ring::{
    aead,
    rand::SystemRandom,
    signature::{self, Ed25519KeyPair, KeyPair as _},
};
use samenop_client::mls::CIPHERSUITE;

use crate::{
    Bench,
    b0::PAYLOAD,
    report::{Line, Target},
    run,
};

/// Group sizes measured.
const SIZES: [usize; 4] = [2, 5, 20, 100];
/// Messages per measurement.
pub(crate) const MESSAGES: usize = 400;
/// Add-member commits per measurement.
const COMMITS: usize = 10;

fn mls(what: &str, err: impl std::fmt::Display) -> String {
    format!("{what}: {err}")
}

/// A member: its provider (with its storage), signer and credential.
struct Member {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

impl Member {
    fn new(n: usize) -> Result<Member, String> {
        let signer = SignatureKeyPair::new(SignatureScheme::ED25519).map_err(|e| mls("key", e))?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(format!("device {n}").into_bytes()).into(),
            signature_key: signer.public().into(),
        };
        Ok(Member {
            provider: OpenMlsRustCrypto::default(),
            signer,
            credential,
        })
    }

    fn key_package(&self) -> Result<KeyPackage, String> {
        KeyPackage::builder()
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .map(|bundle| bundle.key_package().clone())
            .map_err(|e| mls("key package", e))
    }
}

/// A group of `size`: its creator's group, and member 1's (joined).
fn group(size: usize) -> Result<(Member, MlsGroup, Member, MlsGroup), String> {
    let creator = Member::new(0)?;
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
    .map_err(|e| mls("group", e))?;
    let reader = Member::new(1)?;
    let mut packages = vec![reader.key_package()?];
    for n in 2..size {
        packages.push(Member::new(n)?.key_package()?);
    }
    let (_, welcome, _) = group
        .add_members(&creator.provider, &creator.signer, &packages)
        .map_err(|e| mls("add", e))?;
    group
        .merge_pending_commit(&creator.provider)
        .map_err(|e| mls("merge", e))?;
    let welcome = welcome
        .tls_serialize_detached()
        .map_err(|e| mls("welcome", e))?;
    let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact_bytes(&welcome)
        .map_err(|e| mls("welcome", e))?
        .extract()
    else {
        return Err("not a Welcome".into());
    };
    let join = MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .build();
    let joined = StagedWelcome::new_from_welcome(&reader.provider, &join, welcome, None)
        .and_then(|staged| staged.into_group(&reader.provider))
        .map_err(|e| mls("join", e))?;
    Ok((creator, group, reader, joined))
}

fn micros(started: Instant, count: usize) -> f64 {
    started.elapsed().as_secs_f64() * 1e6 / count as f64
}

/// Per message: (encrypt µs, decrypt µs) in a group of `size`.
fn messages(size: usize) -> Result<(f64, f64), String> {
    let (creator, mut group, reader, mut joined) = group(size)?;
    let payload = vec![0x5a; PAYLOAD];
    let started = Instant::now();
    let mut sealed = Vec::with_capacity(MESSAGES);
    for _ in 0..MESSAGES {
        let message = group
            .create_message(&creator.provider, &creator.signer, &payload)
            .map_err(|e| mls("encrypt", e))?;
        sealed.push(
            message
                .tls_serialize_detached()
                .map_err(|e| mls("encode", e))?,
        );
    }
    let encrypt = micros(started, MESSAGES);
    let started = Instant::now();
    for raw in &sealed {
        let protocol = MlsMessageIn::tls_deserialize_exact_bytes(raw)
            .map_err(|e| mls("decode", e))?
            .try_into_protocol_message()
            .map_err(|e| mls("decode", e))?;
        joined
            .process_message(&reader.provider, protocol)
            .map_err(|e| mls("decrypt", e))?;
    }
    Ok((encrypt, micros(started, MESSAGES)))
}

/// µs of one commit adding a member to a group of `size` (made and merged
/// by the adder), each added member removed again untimed.
fn add_commit(size: usize) -> Result<f64, String> {
    let (creator, mut group, _, _) = group(size)?;
    let mut spent = 0.0;
    for n in 0..COMMITS {
        let package = Member::new(1000 + n)?.key_package()?;
        let started = Instant::now();
        group
            .add_members(&creator.provider, &creator.signer, &[package])
            .map_err(|e| mls("add", e))?;
        group
            .merge_pending_commit(&creator.provider)
            .map_err(|e| mls("merge", e))?;
        spent += started.elapsed().as_secs_f64();
        let added = group
            .members()
            .map(|m| m.index)
            .max()
            .ok_or("an empty group")?;
        group
            .remove_members(&creator.provider, &creator.signer, &[added])
            .map_err(|e| mls("remove", e))?;
        group
            .merge_pending_commit(&creator.provider)
            .map_err(|e| mls("merge", e))?;
    }
    Ok(spent * 1e6 / COMMITS as f64)
}

/// The raw cost per message, µs: (seal + sign, open + verify).
fn raw() -> Result<(f64, f64), String> {
    let rng = SystemRandom::new();
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &[7u8; 32]).map_err(|_| "aead key")?,
    );
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "signing key")?;
    let signer = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "signing key")?;
    let public = signature::UnparsedPublicKey::new(
        &signature::ED25519,
        signer.public_key().as_ref().to_vec(),
    );
    let mut sealed = Vec::with_capacity(MESSAGES);
    let started = Instant::now();
    for n in 0..MESSAGES {
        let mut data = vec![0x5a; PAYLOAD];
        let nonce = nonce(n);
        key.seal_in_place_append_tag(nonce, aead::Aad::empty(), &mut data)
            .map_err(|_| "seal")?;
        let signature = signer.sign(&data);
        sealed.push((data, signature));
    }
    let encrypt = micros(started, MESSAGES);
    let started = Instant::now();
    for (n, (data, signature)) in sealed.iter_mut().enumerate() {
        public
            .verify(data, signature.as_ref())
            .map_err(|_| "verify")?;
        key.open_in_place(nonce(n), aead::Aad::empty(), data)
            .map_err(|_| "open")?;
    }
    Ok((encrypt, micros(started, MESSAGES)))
}

fn nonce(n: usize) -> aead::Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&(n as u64).to_be_bytes());
    aead::Nonce::assume_unique_for_key(bytes)
}

/// One measurement of a message's decryption in a group of `size`, µs
/// (the mean over [`MESSAGES`]).
pub(crate) fn decrypt_once_us(size: usize) -> Result<f64, String> {
    messages(size).map(|(_, decrypt)| decrypt)
}

/// The median over five measurements of one message's encryption in a
/// group of `size`, µs.
pub(crate) fn encrypt_cost_us(size: usize) -> Result<f64, String> {
    median_of_five(size, |(encrypt, _)| encrypt)
}

/// The median of `pick` of five measurements of [`messages`].
fn median_of_five(size: usize, pick: fn((f64, f64)) -> f64) -> Result<f64, String> {
    let mut costs = Vec::new();
    for _ in 0..5 {
        costs.push(pick(messages(size)?));
    }
    Ok(run::median(&costs))
}

pub(crate) fn run(bench: &mut Bench) -> Result<(), String> {
    let rounds = bench.options.rounds();
    let mut raw_encrypt = Vec::new();
    let mut raw_decrypt = Vec::new();
    for _ in 0..rounds {
        let (e, d) = raw()?;
        raw_encrypt.push(e);
        raw_decrypt.push(d);
    }
    let (raw_encrypt, raw_decrypt) = (run::median(&raw_encrypt), run::median(&raw_decrypt));
    for size in SIZES {
        let mut encrypt = Vec::new();
        let mut decrypt = Vec::new();
        for _ in 0..rounds {
            let (e, d) = messages(size)?;
            encrypt.push(e);
            decrypt.push(d);
        }
        let (encrypt, decrypt) = (run::median(&encrypt), run::median(&decrypt));
        if size == 2 {
            bench.mls_encrypt_us = Some(encrypt);
        }
        bench.report.add(
            Line::new(
                format!("B8.encrypt.{size}"),
                encrypt / raw_encrypt,
                Target::None,
                "MLS encrypt of 256 bytes / ChaCha20-Poly1305 seal + Ed25519 sign (ring)",
            )
            .figure("mls_us", encrypt)
            .figure("raw_us", raw_encrypt),
        );
        bench.report.add(
            Line::new(
                format!("B8.decrypt.{size}"),
                decrypt / raw_decrypt,
                Target::None,
                "MLS decrypt / ChaCha20-Poly1305 open + Ed25519 verify (ring)",
            )
            .figure("mls_us", decrypt)
            .figure("raw_us", raw_decrypt),
        );
        let commit = add_commit(size)?;
        bench.report.add(
            Line::new(
                format!("B8.add_commit.{size}"),
                commit / raw_encrypt,
                Target::None,
                "an add-member commit, made and merged / one raw seal + sign",
            )
            .figure("commit_us", commit),
        );
    }
    Ok(())
}
