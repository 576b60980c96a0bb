//! DirectoryService: professionals, devices, specialists and availability.

use samenop_proto::v1::{self, directory_service_server::DirectoryService};
use tonic::{Request, Response, Status};

use super::{Context, timestamp};
use crate::{
    auth::{Authenticator, Caller},
    domain::{
        self, Availability, Device, DeviceId, DeviceLabel, Expertise, NewProfessional,
        Professional, ProfessionalId, Role, SignatureKey,
    },
    error::{ServiceError, ServiceResult},
    store::records::Stored,
};

use v1::AuditObjectType as Object;

/// The most active devices one professional may have.
pub(crate) const ACTIVE_DEVICES_MAX: usize = 32;
/// The most devices one professional may ever register (revoked included),
/// which bounds the work of reading a device set.
pub(crate) const DEVICE_HISTORY_MAX: usize = 1024;

/// The DirectoryService implementation.
#[derive(Clone)]
pub struct DirectoryApi {
    /// Shared service state.
    ctx: Context,
}

impl DirectoryApi {
    /// The service over `ctx`.
    pub fn new(ctx: Context) -> Self {
        DirectoryApi { ctx }
    }

    /// Loads a professional of the caller's own organisation; others are
    /// NOT_FOUND, so nothing is learnt about other organisations.
    async fn own_professional(
        &self,
        caller: &Caller,
        id: ProfessionalId,
    ) -> ServiceResult<Stored<Professional>> {
        match self.ctx.directory.professional(id).await? {
            Some(p) if p.organisation == caller.peer.organisation => {
                caller.audit.object(Object::Professional, id);
                Ok(p)
            }
            _ => Err(ServiceError::NotFound(format!(
                "no professional {id} in your organisation"
            ))),
        }
    }

    /// Refuses unless the caller is `owner` or an ORG_ADMIN (of the same
    /// organisation, which the caller of `own_professional` has checked).
    fn require_self_or_admin(
        caller: &Caller,
        owner: ProfessionalId,
        what: &str,
    ) -> ServiceResult<()> {
        if caller.professional.id == owner {
            Ok(())
        } else if caller.professional.has_role(Role::OrgAdmin) {
            caller.audit.role(Role::OrgAdmin);
            caller.audit.on_behalf_of(owner);
            Ok(())
        } else {
            Err(ServiceError::PermissionDenied(format!(
                "{what} of another professional needs the role ROLE_ORG_ADMIN"
            )))
        }
    }
}

fn professional_to_proto(auth: &Authenticator, p: &Professional) -> v1::Professional {
    v1::Professional {
        professional_id: p.id.to_string(),
        organisation_oin: p.organisation.to_string(),
        organisation_name: auth
            .organisation_name(&p.organisation)
            .unwrap_or_default()
            .to_owned(),
        display_name: p.display_name.as_str().to_owned(),
        roles: p.roles.iter().map(|r| r.to_proto() as i32).collect(),
        expertise: p.expertise.iter().map(|e| e.to_proto()).collect(),
        availability: p.availability.map_or(0, |a| a.to_proto() as i32),
        active: p.is_active(),
        registered_at: Some(timestamp(p.registered_at)),
        deactivated_at: p.deactivated_at.map(timestamp),
    }
}

fn device_to_proto(d: &Device) -> v1::Device {
    v1::Device {
        device_id: d.id.to_string(),
        professional_id: d.professional.to_string(),
        signature_public_key: d.signature_key.as_bytes().to_vec(),
        label: d.label.as_str().to_owned(),
        registered_at: Some(timestamp(d.registered_at)),
        revoked_at: d.revoked_at.map(timestamp),
    }
}

fn page_token_out(next: Option<ProfessionalId>) -> String {
    next.map(|id| id.to_string()).unwrap_or_default()
}

#[tonic::async_trait]
impl DirectoryService for DirectoryApi {
    async fn register_professional(
        &self,
        request: Request<v1::RegisterProfessionalRequest>,
    ) -> Result<Response<v1::RegisterProfessionalResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        caller.require(Role::OrgAdmin)?;
        let new = NewProfessional::parse(request.get_ref()).map_err(ServiceError::from)?;
        let professional =
            Professional::register(new, caller.peer.organisation.clone(), self.ctx.now());
        self.ctx
            .directory
            .insert_professional(Some(&caller.professional), &professional, {
                caller.audit.object(Object::Professional, professional.id);
                caller.audit.allowed()
            })
            .await
            .map_err(ServiceError::from)?;
        tracing::info!(registered = %professional.id, "professional registered");
        Ok(Response::new(v1::RegisterProfessionalResponse {
            professional: Some(professional_to_proto(&self.ctx.auth, &professional)),
        }))
    }

    async fn deactivate_professional(
        &self,
        request: Request<v1::DeactivateProfessionalRequest>,
    ) -> Result<Response<v1::DeactivateProfessionalResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        caller.require(Role::OrgAdmin)?;
        let id = ProfessionalId::parse("professional_id", &request.get_ref().professional_id)
            .map_err(ServiceError::from)?;
        caller.audit.object(Object::Professional, id);
        let target = self.own_professional(&caller, id).await?;
        if target.id == caller.professional.id {
            return Err(ServiceError::FailedPrecondition(
                "an admin cannot deactivate themself; ask another ORG_ADMIN".into(),
            )
            .into());
        }
        let result = if target.is_active() {
            let now = self.ctx.now();
            let done = self
                .ctx
                .directory
                .deactivate_professional(&caller.professional, &target, now, caller.audit.allowed())
                .await;
            let done = done.map_err(ServiceError::from)?;
            tracing::info!(deactivated = %id, "professional deactivated");
            done
        } else {
            target.into_value()
        };
        Ok(Response::new(v1::DeactivateProfessionalResponse {
            professional: Some(professional_to_proto(&self.ctx.auth, &result)),
        }))
    }

    async fn list_professionals(
        &self,
        request: Request<v1::ListProfessionalsRequest>,
    ) -> Result<Response<v1::ListProfessionalsResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        caller.require(Role::OrgAdmin)?;
        let req = request.get_ref();
        let after = domain::page_token(&req.page_token).map_err(ServiceError::from)?;
        let page = self
            .ctx
            .directory
            .list_organisation(
                &caller.peer.organisation,
                req.include_inactive,
                after,
                domain::page_size(req.page_size),
            )
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(v1::ListProfessionalsResponse {
            professionals: page
                .items
                .iter()
                .map(|p| professional_to_proto(&self.ctx.auth, p))
                .collect(),
            next_page_token: page_token_out(page.next),
        }))
    }

    async fn register_device(
        &self,
        request: Request<v1::RegisterDeviceRequest>,
    ) -> Result<Response<v1::RegisterDeviceResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let owner_id = ProfessionalId::parse("professional_id", &req.professional_id)
            .map_err(ServiceError::from)?;
        caller.audit.object(Object::Professional, owner_id);
        let key = SignatureKey::parse("signature_public_key", &req.signature_public_key)
            .map_err(ServiceError::from)?;
        let label = DeviceLabel::parse("label", &req.label).map_err(ServiceError::from)?;
        let owner = self.own_professional(&caller, owner_id).await?;
        Self::require_self_or_admin(&caller, owner.id, "registering a device")?;
        if !owner.is_active() {
            return Err(ServiceError::FailedPrecondition(format!(
                "professional {owner_id} is deactivated"
            ))
            .into());
        }
        let set = self
            .ctx
            .directory
            .device_set(owner.id)
            .await
            .map_err(ServiceError::from)?;
        let active: Vec<&Device> = set
            .devices
            .iter()
            .map(|d| &**d)
            .filter(|d| d.revoked_at.is_none())
            .collect();
        if active.len() >= ACTIVE_DEVICES_MAX || set.devices.len() >= DEVICE_HISTORY_MAX {
            return Err(ServiceError::ResourceExhausted(format!(
                "a professional may have at most {ACTIVE_DEVICES_MAX} active devices \
                 ({DEVICE_HISTORY_MAX} ever registered); revoke one first"
            ))
            .into());
        }
        if active.iter().any(|d| d.signature_key == key) {
            return Err(ServiceError::FailedPrecondition(
                "this signature key is already registered for an active device".into(),
            )
            .into());
        }
        let device = Device {
            id: DeviceId::generate(),
            professional: owner.id,
            signature_key: key,
            label,
            registered_at: self.ctx.now(),
            revoked_at: None,
        };
        self.ctx
            .directory
            .insert_device(&caller.professional, &owner, &set, &device, {
                caller.audit.object(Object::Device, device.id);
                caller.audit.allowed()
            })
            .await
            .map_err(ServiceError::from)?;
        tracing::info!(device = %device.id, owner = %owner.id, "device registered");
        Ok(Response::new(v1::RegisterDeviceResponse {
            device: Some(device_to_proto(&device)),
        }))
    }

    async fn revoke_device(
        &self,
        request: Request<v1::RevokeDeviceRequest>,
    ) -> Result<Response<v1::RevokeDeviceResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let id = DeviceId::parse("device_id", &request.get_ref().device_id)
            .map_err(ServiceError::from)?;
        caller.audit.object(Object::Device, id);
        let not_found = || ServiceError::NotFound(format!("no device {id} in your organisation"));
        let device = self
            .ctx
            .directory
            .device(id)
            .await
            .map_err(ServiceError::from)?;
        let device = device.ok_or_else(not_found)?;
        let owner = match self.own_professional(&caller, device.professional).await {
            Ok(owner) => owner,
            Err(ServiceError::NotFound(_)) => return Err(not_found().into()),
            Err(other) => return Err(other.into()),
        };
        Self::require_self_or_admin(&caller, owner.id, "revoking a device")?;
        let result = if device.revoked_at.is_none() {
            let mut revoked = Device::clone(&device);
            revoked.revoked_at = Some(self.ctx.now());
            self.ctx
                .directory
                .update_device(
                    &caller.professional,
                    &device,
                    &revoked,
                    caller.audit.allowed(),
                )
                .await
                .map_err(ServiceError::from)?;
            tracing::info!(device = %id, "device revoked");
            revoked
        } else {
            device.into_value()
        };
        Ok(Response::new(v1::RevokeDeviceResponse {
            device: Some(device_to_proto(&result)),
        }))
    }

    async fn get_professional(
        &self,
        request: Request<v1::GetProfessionalRequest>,
    ) -> Result<Response<v1::GetProfessionalResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let id = ProfessionalId::parse("professional_id", &request.get_ref().professional_id)
            .map_err(ServiceError::from)?;
        caller.audit.object(Object::Professional, id);
        let professional = self
            .ctx
            .directory
            .professional(id)
            .await
            .map_err(ServiceError::from)?
            .ok_or_else(|| ServiceError::NotFound(format!("no professional {id}")))?;
        // A deactivated professional's devices were revoked with them; list
        // none, whatever a racing call may have left.
        let devices = if professional.is_active() {
            self.ctx
                .directory
                .devices_of(id)
                .await
                .map_err(ServiceError::from)?
        } else {
            Vec::new()
        };
        Ok(Response::new(v1::GetProfessionalResponse {
            professional: Some(professional_to_proto(&self.ctx.auth, &professional)),
            devices: devices
                .iter()
                .filter(|d| d.revoked_at.is_none())
                .map(device_to_proto)
                .collect(),
        }))
    }

    async fn list_specialists(
        &self,
        request: Request<v1::ListSpecialistsRequest>,
    ) -> Result<Response<v1::ListSpecialistsResponse>, Status> {
        self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let expertise = req
            .expertise
            .as_ref()
            .map(|e| Expertise::parse("expertise", e))
            .transpose()
            .map_err(ServiceError::from)?;
        let after = domain::page_token(&req.page_token).map_err(ServiceError::from)?;
        let page = self
            .ctx
            .directory
            .list_specialists(
                expertise,
                req.available_only,
                |oin| self.ctx.auth.allows(oin),
                after,
                domain::page_size(req.page_size),
            )
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(v1::ListSpecialistsResponse {
            specialists: page
                .items
                .iter()
                .map(|p| professional_to_proto(&self.ctx.auth, p))
                .collect(),
            next_page_token: page_token_out(page.next),
        }))
    }

    async fn set_availability(
        &self,
        request: Request<v1::SetAvailabilityRequest>,
    ) -> Result<Response<v1::SetAvailabilityResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        caller.require(Role::Specialist)?;
        let availability = Availability::parse("availability", request.get_ref().availability)
            .map_err(ServiceError::from)?;
        let old = caller.professional;
        let mut new = Professional::clone(&old);
        new.availability = Some(availability);
        if new != *old {
            self.ctx
                .directory
                .update_professional(&old, &old, &new, caller.audit.allowed())
                .await
                .map_err(ServiceError::from)?;
        }
        Ok(Response::new(v1::SetAvailabilityResponse {
            professional: Some(professional_to_proto(&self.ctx.auth, &new)),
        }))
    }

    async fn upload_key_packages(
        &self,
        request: Request<v1::UploadKeyPackagesRequest>,
    ) -> Result<Response<v1::UploadKeyPackagesResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let answer = super::key_packages::upload(&self.ctx, &caller, request.get_ref()).await?;
        Ok(Response::new(answer))
    }

    async fn claim_key_packages(
        &self,
        request: Request<v1::ClaimKeyPackagesRequest>,
    ) -> Result<Response<v1::ClaimKeyPackagesResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let answer = super::key_packages::claim(&self.ctx, &caller, request.get_ref()).await?;
        Ok(Response::new(answer))
    }
}
