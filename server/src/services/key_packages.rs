//! MLS key packages: devices upload them, the participants of a consult
//! claim them to add each other's devices to the consult's group. Each
//! one-time key package is handed out once; the last-resort one when the
//! one-time ones are used up.

use openmls::prelude::{
    BasicCredential, MlsMessageBodyIn, MlsMessageIn, tls_codec::DeserializeBytes,
};
use samenop_proto::v1::{self, AuditObjectType as Object};

use super::{Context, consult::ConsultApi, thread};
use crate::{
    auth::Caller,
    domain::{Device, InvalidInput, ProfessionalId, consult::ConsultId},
    error::{ServiceError, ServiceResult},
    store::{Batch, StoreError, threads::KEY_PACKAGES_MAX},
};

/// The largest key package accepted, in bytes.
const KEY_PACKAGE_MAX_BYTES: usize = 16 * 1024;
/// How often a claim is retried when another claim took a key package first.
const CLAIM_ATTEMPTS: usize = 8;

fn malformed(field: &'static str, problem: &'static str) -> ServiceError {
    ServiceError::Invalid(InvalidInput::Malformed { field, problem })
}

/// Checks one uploaded key package: an MLS KeyPackage, within the size
/// limit, whose credential carries the device's registered signature key.
fn check_key_package(field: &'static str, raw: &[u8], device: &Device) -> ServiceResult<()> {
    if raw.len() > KEY_PACKAGE_MAX_BYTES {
        return Err(ServiceError::ResourceExhausted(format!(
            "{field}: a key package may be at most {KEY_PACKAGE_MAX_BYTES} bytes"
        )));
    }
    let message = MlsMessageIn::tls_deserialize_exact_bytes(raw)
        .map_err(|_| malformed(field, "is not a TLS-serialised MLS message"))?;
    let MlsMessageBodyIn::KeyPackage(package) = message.extract() else {
        return Err(malformed(field, "is not an MLS KeyPackage"));
    };
    let credential = package.unverified_credential();
    if credential.signature_key.as_slice() != device.signature_key.as_bytes().as_slice() {
        return Err(malformed(
            field,
            "is signed for another key than the device's registered signature key",
        ));
    }
    let names_device = BasicCredential::try_from(credential.credential)
        .is_ok_and(|basic| basic.identity() == device.id.as_bytes().as_slice());
    if !names_device {
        return Err(malformed(
            field,
            "has a credential that does not name the device (a basic credential whose \
             identity is the device id's 16 bytes)",
        ));
    }
    Ok(())
}

/// DirectoryService.UploadKeyPackages.
pub(super) async fn upload(
    ctx: &Context,
    caller: &Caller,
    req: &v1::UploadKeyPackagesRequest,
) -> ServiceResult<v1::UploadKeyPackagesResponse> {
    let device = thread::own_device(ctx, caller, &req.device_id).await?;
    if req.key_packages.is_empty() && req.last_resort_key_package.is_empty() {
        return Err(ServiceError::Invalid(InvalidInput::Missing {
            field: "key_packages",
        }));
    }
    for package in &req.key_packages {
        check_key_package("key_packages", package, &device)?;
    }
    let last_resort =
        (!req.last_resort_key_package.is_empty()).then_some(req.last_resort_key_package.as_slice());
    if let Some(package) = last_resort {
        check_key_package("last_resort_key_package", package, &device)?;
    }
    let held = ctx
        .threads
        .key_packages(device.id, KEY_PACKAGES_MAX + 1)
        .await?
        .len();
    let available = held + req.key_packages.len();
    if available > KEY_PACKAGES_MAX {
        return Err(ServiceError::ResourceExhausted(format!(
            "the server holds {held} key packages for this device and keeps at most \
             {KEY_PACKAGES_MAX}"
        )));
    }
    let mut batch = Batch::new();
    ctx.threads
        .stage_key_packages(&mut batch, device.id, &req.key_packages, last_resort);
    batch.audit(caller.audit.allowed());
    ctx.threads.commit(batch).await?;
    Ok(v1::UploadKeyPackagesResponse {
        available: u32::try_from(available).unwrap_or(u32::MAX),
    })
}

/// DirectoryService.ClaimKeyPackages.
pub(super) async fn claim(
    ctx: &Context,
    caller: &Caller,
    req: &v1::ClaimKeyPackagesRequest,
) -> ServiceResult<v1::ClaimKeyPackagesResponse> {
    let consult = ConsultId::parse("consult_id", &req.consult_id).map_err(ServiceError::from)?;
    let target = ProfessionalId::parse("professional_id", &req.professional_id)
        .map_err(ServiceError::from)?;
    caller.audit.object(Object::Professional, target);
    let consults = ConsultApi::new(ctx.clone());
    for _ in 0..CLAIM_ATTEMPTS {
        let loaded = thread::participating(&consults, caller, consult).await?;
        if !thread::active_participants(&loaded.now).contains(&target) {
            return Err(ServiceError::FailedPrecondition(format!(
                "professional {target} is not an active participant of consult {consult}"
            )));
        }
        let mut batch = Batch::new();
        let mut claimed = Vec::new();
        for device in ctx.directory.devices_of(target).await? {
            if device.revoked_at.is_some() {
                continue;
            }
            let one_time = ctx.threads.key_packages(device.id, 1).await?;
            if let Some(entry) = one_time.first() {
                ctx.threads.stage_claim(&mut batch, entry);
                claimed.push(v1::ClaimedKeyPackage {
                    device_id: device.id.to_string(),
                    key_package: entry.1.clone(),
                    last_resort: false,
                });
            } else if let Some(package) = ctx.threads.last_resort(device.id).await? {
                claimed.push(v1::ClaimedKeyPackage {
                    device_id: device.id.to_string(),
                    key_package: package,
                    last_resort: true,
                });
            }
        }
        ctx.consults.stage_unchanged(&mut batch, &loaded.stored);
        batch.audit(caller.audit.allowed());
        match ctx.threads.commit(batch).await {
            Ok(()) => {
                return Ok(v1::ClaimKeyPackagesResponse {
                    key_packages: claimed,
                });
            }
            Err(StoreError::Conflict) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(ServiceError::Aborted(
        "key packages were claimed concurrently; claim again".into(),
    ))
}
