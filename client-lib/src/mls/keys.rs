//! The device's keys: its signature key, made ready once for signing, and
//! the one-time key packages it keeps on the server (and checks when it
//! claims another device's), with its registration in the directory.

use openmls::prelude::{
    Capabilities, ExtensionType, KeyPackage, KeyPackageIn, MlsMessageBodyIn, MlsMessageIn,
    MlsMessageOut, ProtocolVersion, tls_codec::DeserializeBytes,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::{OpenMlsProvider, types::SignatureScheme};
use samenop_proto::v1;
use uuid::Uuid;

use super::{
    CIPHERSUITE, Inner, KEY_PACKAGES_LOW, KEY_PACKAGES_TARGET, Messenger, local, serialize,
};
use crate::{Client, ClientError, Result};

/// The device's signature key, as OpenMLS signs with it: the key pair as
/// OpenMLS stores it, and the same key made ready once with ring, whose
/// Ed25519 signatures are the same bytes (Ed25519 is deterministic).
/// `openmls_basic_credential` rebuilds the signing key from its seed for
/// every signature, which cost a send as much as its encryption.
pub(super) struct DeviceSigner {
    /// The stored key pair (its seed and public key).
    pair: SignatureKeyPair,
    /// The same key, expanded once.
    ready: ring::signature::Ed25519KeyPair,
}

impl DeviceSigner {
    pub(super) fn new(pair: SignatureKeyPair) -> Result<Self> {
        // The seed is reachable only through the pair's own serde form
        // (its accessor is for OpenMLS's tests): read it there, once.
        let unusable =
            |e: &dyn std::fmt::Display| local("the device's signature key is unusable", e);
        let form = serde_json::to_value(&pair).map_err(|e| unusable(&e))?;
        let seed: Vec<u8> = form
            .get("private")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| unusable(&e))?
            .ok_or_else(|| unusable(&"no private key in it"))?;
        let ready = ring::signature::Ed25519KeyPair::from_seed_and_public_key(&seed, pair.public())
            .map_err(|e| unusable(&e))?;
        Ok(DeviceSigner { pair, ready })
    }
}

impl openmls_traits::signatures::Signer for DeviceSigner {
    fn sign(
        &self,
        payload: &[u8],
    ) -> std::result::Result<Vec<u8>, openmls_traits::signatures::SignerError> {
        Ok(self.ready.sign(payload).as_ref().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        self.pair.signature_scheme()
    }
}

impl Inner {
    fn key_package(&mut self, last_resort: bool) -> Result<Vec<u8>> {
        let mut builder = KeyPackage::builder();
        if last_resort {
            // A key package's extensions must be among its leaf's
            // capabilities, or every member refuses it when it is used.
            builder = builder.mark_as_last_resort().leaf_node_capabilities(
                Capabilities::builder()
                    .extensions(vec![ExtensionType::LastResort])
                    .build(),
            );
        }
        let bundle = builder
            .build(
                CIPHERSUITE,
                self.state.provider(),
                &self.signer,
                self.credential.clone(),
            )
            .map_err(|e| local("cannot make a key package", e))?;
        serialize(&MlsMessageOut::from(bundle.key_package().clone()))
    }
}

/// Parses and validates the key package claimed for `device`.
pub(super) fn validate_key_package(inner: &Inner, device: Uuid, raw: &[u8]) -> Result<KeyPackage> {
    let message = MlsMessageIn::tls_deserialize_exact_bytes(raw).map_err(|e| {
        ClientError::Protocol(format!(
            "the key package claimed for device {device} is malformed: {e}"
        ))
    })?;
    let MlsMessageBodyIn::KeyPackage(package) = message.extract() else {
        return Err(ClientError::Protocol(format!(
            "the key package claimed for device {device} is not one"
        )));
    };
    let package: KeyPackageIn = package;
    package
        .validate(inner.state.provider().crypto(), ProtocolVersion::Mls10)
        .map_err(|e| {
            ClientError::GroupMismatch(format!(
                "the key package claimed for device {device} is invalid: {e}"
            ))
        })
}

/// Registers a device with `signer`'s public key; when an earlier attempt
/// registered it already (and crashed before keeping the answer), finds it.
pub(super) async fn register(
    client: &Client,
    professional: Uuid,
    signer: &SignatureKeyPair,
    label: &str,
) -> Result<Uuid> {
    let public = signer.to_public_vec();
    match client.register_device(professional, &public, label).await {
        Ok(device) => Ok(device.id),
        Err(ClientError::FailedPrecondition(text)) => {
            let (_, devices) = client.professional_with_devices(professional).await?;
            devices
                .into_iter()
                .find(|d| d.signature_public_key == public && d.revoked_at.is_none())
                .map(|d| d.id)
                .ok_or(ClientError::FailedPrecondition(text))
        }
        Err(other) => Err(other),
    }
}

impl Messenger {
    /// Uploads key packages until the server holds at least the target
    /// (and a last-resort one the first time). Returns how many it holds.
    ///
    /// # Errors
    /// [`ClientError`] when the state or the server fails.
    pub async fn top_up_key_packages(&self) -> Result<u32> {
        let mut inner = self.inner.lock().await;
        let first = inner.state.get("key-packages")?.is_none();
        let mut available = match self.upload_key_packages(&mut inner, 1, first).await {
            Ok(available) => available,
            // The server holds as many as it keeps: nothing to top up.
            Err(ClientError::ResourceExhausted(_)) => return Ok(KEY_PACKAGES_TARGET),
            Err(other) => return Err(other),
        };
        if available < KEY_PACKAGES_LOW {
            available = self
                .upload_key_packages(&mut inner, KEY_PACKAGES_TARGET - available, false)
                .await?;
        }
        Ok(available)
    }

    async fn upload_key_packages(
        &self,
        inner: &mut Inner,
        count: u32,
        last_resort: bool,
    ) -> Result<u32> {
        let mut packages = Vec::new();
        for _ in 0..count {
            packages.push(inner.key_package(false)?);
        }
        let last = if last_resort {
            inner.key_package(true)?
        } else {
            Vec::new()
        };
        // Private keys are on disk before the server can hand out their key
        // packages.
        inner
            .state
            .persist(&[("key-packages".into(), Some(b"1".to_vec()))])?;
        let request = v1::UploadKeyPackagesRequest {
            device_id: self.device.to_string(),
            key_packages: packages,
            last_resort_key_package: last,
        };
        let answer = self
            .client
            .directory()
            .upload_key_packages(self.client.request(request)?)
            .await?;
        Ok(answer.into_inner().available)
    }
}
