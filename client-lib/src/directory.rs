//! Directory calls: professionals, devices, specialists, availability.

use samenop_proto::v1::{self, directory_service_client::DirectoryServiceClient};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{
    Client,
    error::Result,
    types::{Availability, Device, Expertise, Professional, Role, required},
};

/// The page size the library asks for when it follows all pages.
const PAGE: u32 = 200;

impl Client {
    pub(crate) fn directory(&self) -> DirectoryServiceClient<Channel> {
        DirectoryServiceClient::new(self.channel.clone())
    }

    /// Registers a professional of the caller's organisation (ORG_ADMIN).
    ///
    /// # Errors
    /// PermissionDenied without ORG_ADMIN; InvalidArgument for bad input.
    pub async fn register_professional(
        &self,
        display_name: &str,
        roles: &[Role],
        expertise: &[Expertise],
    ) -> Result<Professional> {
        let request = v1::RegisterProfessionalRequest {
            display_name: display_name.to_owned(),
            roles: roles.iter().map(|r| r.to_proto()).collect(),
            expertise: expertise
                .iter()
                .map(|e| e.to_proto())
                .collect::<Result<_>>()?,
        };
        let answer = self
            .directory()
            .register_professional(self.request(request)?)
            .await?;
        required("professional", answer.into_inner().professional)?.try_into()
    }

    /// Deactivates a professional of the caller's organisation (ORG_ADMIN);
    /// their devices are revoked with them.
    ///
    /// # Errors
    /// NotFound for a professional outside the caller's organisation.
    pub async fn deactivate_professional(&self, professional: Uuid) -> Result<Professional> {
        let request = v1::DeactivateProfessionalRequest {
            professional_id: professional.to_string(),
        };
        let answer = self
            .directory()
            .deactivate_professional(self.request(request)?)
            .await?;
        required("professional", answer.into_inner().professional)?.try_into()
    }

    /// Lists the professionals of the caller's organisation (ORG_ADMIN),
    /// following every page.
    ///
    /// # Errors
    /// PermissionDenied without ORG_ADMIN.
    pub async fn list_professionals(&self, include_inactive: bool) -> Result<Vec<Professional>> {
        all_pages(|page_token| async move {
            let request = v1::ListProfessionalsRequest {
                include_inactive,
                page_size: PAGE,
                page_token,
            };
            let page = self
                .directory()
                .list_professionals(self.request(request)?)
                .await?
                .into_inner();
            Ok((page.professionals, page.next_page_token))
        })
        .await
    }

    /// Registers a device with its public Ed25519 signature key, for the
    /// caller themself or (ORG_ADMIN) another professional of the organisation.
    ///
    /// # Errors
    /// InvalidArgument for a key that is not 32 bytes or a bad label.
    pub async fn register_device(
        &self,
        professional: Uuid,
        signature_public_key: &[u8],
        label: &str,
    ) -> Result<Device> {
        let request = v1::RegisterDeviceRequest {
            professional_id: professional.to_string(),
            signature_public_key: signature_public_key.to_vec(),
            label: label.to_owned(),
        };
        let answer = self
            .directory()
            .register_device(self.request(request)?)
            .await?;
        required("device", answer.into_inner().device)?.try_into()
    }

    /// Revokes a device (its owner, or ORG_ADMIN).
    ///
    /// # Errors
    /// NotFound for a device outside the caller's organisation.
    pub async fn revoke_device(&self, device: Uuid) -> Result<Device> {
        let request = v1::RevokeDeviceRequest {
            device_id: device.to_string(),
        };
        let answer = self
            .directory()
            .revoke_device(self.request(request)?)
            .await?;
        required("device", answer.into_inner().device)?.try_into()
    }

    /// Looks up a professional of the network with their active devices.
    ///
    /// # Errors
    /// NotFound when there is no such professional.
    pub async fn professional_with_devices(
        &self,
        professional: Uuid,
    ) -> Result<(Professional, Vec<Device>)> {
        let request = v1::GetProfessionalRequest {
            professional_id: professional.to_string(),
        };
        let answer = self
            .directory()
            .get_professional(self.request(request)?)
            .await?
            .into_inner();
        let devices = answer
            .devices
            .into_iter()
            .map(Device::try_from)
            .collect::<Result<_>>()?;
        Ok((
            required("professional", answer.professional)?.try_into()?,
            devices,
        ))
    }

    /// Lists the network's active specialists, optionally of one expertise
    /// and only the available ones, following every page.
    ///
    /// # Errors
    /// [`crate::ClientError`] when the call fails.
    pub async fn list_specialists(
        &self,
        expertise: Option<Expertise>,
        available_only: bool,
    ) -> Result<Vec<Professional>> {
        let expertise = expertise.map(Expertise::to_proto).transpose()?;
        all_pages(|page_token| async move {
            let request = v1::ListSpecialistsRequest {
                expertise,
                available_only,
                page_size: PAGE,
                page_token,
            };
            let page = self
                .directory()
                .list_specialists(self.request(request)?)
                .await?
                .into_inner();
            Ok((page.specialists, page.next_page_token))
        })
        .await
    }

    /// Sets the acting specialist's own availability.
    ///
    /// # Errors
    /// PermissionDenied when the acting professional is not a specialist.
    pub async fn set_availability(&self, availability: Availability) -> Result<Professional> {
        let request = v1::SetAvailabilityRequest {
            availability: availability.to_proto(),
        };
        let answer = self
            .directory()
            .set_availability(self.request(request)?)
            .await?;
        required("professional", answer.into_inner().professional)?.try_into()
    }
}

/// Follows a listing from its first page to its last: `fetch` takes a page
/// token and gives the page's professionals and the next token.
async fn all_pages<F, Fut>(mut fetch: F) -> Result<Vec<Professional>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<v1::Professional>, String)>>,
{
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let (items, next) = fetch(page_token).await?;
        for item in items {
            all.push(item.try_into()?);
        }
        if next.is_empty() {
            return Ok(all);
        }
        page_token = next;
    }
}
