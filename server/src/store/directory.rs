//! Typed directory storage: professionals and devices with their indexes,
//! always written together in one batch.
//!
//! Updates are compare-and-set on the stored bytes of the record: a change
//! made concurrently by another call makes the later one fail with
//! [`StoreError::Conflict`] instead of silently overwriting it.

use std::sync::Arc;

use samenop_proto::v1;

use super::{
    Batch, Keyspace, Store, StoreError,
    records::{self, Stored},
};
use crate::domain::{Device, DeviceId, Expertise, Oin, Professional, ProfessionalId, Role};

/// How many index entries one scan step reads while filtering.
const SCAN_CHUNK: usize = 256;
/// The most index entries one listing call reads; a page that filters out
/// more ends early with a token, so no call walks a whole index.
const SCAN_BUDGET: usize = 4096;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<ProfessionalId>,
}

/// Directory storage over any [`Store`].
#[derive(Clone)]
pub struct Directory {
    /// The backend.
    store: Arc<dyn Store>,
}

impl Directory {
    /// Directory storage on `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Directory { store }
    }

    /// Reads a professional.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the record is corrupt.
    pub async fn professional(
        &self,
        id: ProfessionalId,
    ) -> Result<Option<Stored<Professional>>, StoreError> {
        self.store
            .get(Keyspace::Professionals, id.as_bytes())
            .await?
            .map(|bytes| Stored::decode(bytes, records::decode_professional))
            .transpose()
    }

    /// Adds to `batch` the precondition that professional `read` is still
    /// as read. For the professional whose call makes a change (`acting`
    /// below), as read when the call began: a write does not land once its
    /// maker was deactivated (or their record changed otherwise) meanwhile,
    /// so an admin deactivated during a call does not finish it.
    pub fn stage_unchanged(&self, batch: &mut Batch, read: &Stored<Professional>) {
        batch.expect(
            Keyspace::Professionals,
            read.id.as_bytes().to_vec(),
            Some(read.raw().to_vec()),
        );
    }

    /// Stores a new professional with its indexes, registered by `acting`
    /// (see [`Directory::stage_unchanged`]; `None`: by the server itself).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the id exists or `acting` changed;
    /// [`StoreError`] when the backend fails.
    pub async fn insert_professional(
        &self,
        acting: Option<&Stored<Professional>>,
        p: &Professional,
        audit: v1::AuditEvent,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        if let Some(acting) = acting {
            self.stage_unchanged(&mut batch, acting);
        }
        batch.expect(Keyspace::Professionals, p.id.as_bytes().to_vec(), None);
        batch.put(
            Keyspace::Professionals,
            p.id.as_bytes().to_vec(),
            records::encode_professional(p),
        );
        batch.put(
            Keyspace::ProfessionalsByOrganisation,
            org_key(&p.organisation, p.id),
            Vec::new(),
        );
        if p.has_role(Role::Specialist) && p.is_active() {
            add_specialist_index(&mut batch, p);
        }
        batch.audit(audit);
        self.store.commit(batch).await
    }

    /// Replaces `old` by `new` (same id), keeping the specialist indexes
    /// true; the change of `acting` (see [`Directory::stage_unchanged`]).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the stored record is no longer `old`, or
    /// `acting` changed.
    pub async fn update_professional(
        &self,
        acting: &Stored<Professional>,
        old: &Stored<Professional>,
        new: &Professional,
        audit: v1::AuditEvent,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        self.stage_unchanged(&mut batch, acting);
        self.stage_professional_update(&mut batch, old, new);
        batch.audit(audit);
        self.store.commit(batch).await
    }

    fn stage_professional_update(
        &self,
        batch: &mut Batch,
        old: &Stored<Professional>,
        new: &Professional,
    ) {
        let key = new.id.as_bytes().to_vec();
        batch.expect(
            Keyspace::Professionals,
            key.clone(),
            Some(old.raw().to_vec()),
        );
        batch.put(
            Keyspace::Professionals,
            key,
            records::encode_professional(new),
        );
        let was = old.has_role(Role::Specialist) && old.is_active();
        let is = new.has_role(Role::Specialist) && new.is_active();
        if was && !is {
            remove_specialist_index(batch, old);
        } else if is && !was {
            add_specialist_index(batch, new);
        }
    }

    /// Deactivates a professional and revokes all their devices, atomically.
    /// Fails with a conflict if a device was registered meanwhile, so no
    /// deactivated professional is ever left with an active device.
    ///
    /// The change of `acting` (see [`Directory::stage_unchanged`]).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the professional, their devices or
    /// `acting` changed meanwhile.
    pub async fn deactivate_professional(
        &self,
        acting: &Stored<Professional>,
        old: &Stored<Professional>,
        now: std::time::SystemTime,
        audit: v1::AuditEvent,
    ) -> Result<Professional, StoreError> {
        let mut new = Professional::clone(old);
        new.deactivated_at = Some(now);
        let mut batch = Batch::new();
        self.stage_unchanged(&mut batch, acting);
        self.stage_professional_update(&mut batch, old, &new);
        let set = self.device_set(old.id).await?;
        batch.expect(
            Keyspace::DeviceSets,
            old.id.as_bytes().to_vec(),
            set.version_bytes(),
        );
        for device in set.devices.iter().filter(|d| d.revoked_at.is_none()) {
            let mut revoked = Device::clone(device);
            revoked.revoked_at = Some(now);
            stage_device_update(&mut batch, device, &revoked);
        }
        batch.audit(audit);
        self.store.commit(batch).await?;
        Ok(new)
    }

    /// Lists the professionals of one organisation, in id (creation) order.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn list_organisation(
        &self,
        organisation: &Oin,
        include_inactive: bool,
        after: Option<ProfessionalId>,
        limit: usize,
    ) -> Result<Page<Professional>, StoreError> {
        let prefix = organisation.as_str().as_bytes().to_vec();
        self.list_indexed(
            Keyspace::ProfessionalsByOrganisation,
            prefix,
            after,
            limit,
            |p| include_inactive || p.is_active(),
        )
        .await
    }

    /// Lists active specialists of the organisations `allowed` accepts,
    /// optionally of one expertise and only the available ones, in id
    /// (creation) order.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn list_specialists(
        &self,
        expertise: Option<Expertise>,
        available_only: bool,
        allowed: impl Fn(&Oin) -> bool,
        after: Option<ProfessionalId>,
        limit: usize,
    ) -> Result<Page<Professional>, StoreError> {
        let (space, prefix) = match expertise {
            Some(e) => (Keyspace::SpecialistsByExpertise, e.code().to_vec()),
            None => (Keyspace::Specialists, Vec::new()),
        };
        self.list_indexed(space, prefix, after, limit, |p| {
            p.is_active()
                && p.has_role(Role::Specialist)
                && allowed(&p.organisation)
                && (!available_only
                    || p.availability == Some(crate::domain::Availability::Available))
        })
        .await
    }

    /// Walks an index whose keys are `prefix` + professional id, loading and
    /// filtering professionals until `limit` match.
    async fn list_indexed(
        &self,
        space: Keyspace,
        prefix: Vec<u8>,
        after: Option<ProfessionalId>,
        limit: usize,
        keep: impl Fn(&Professional) -> bool,
    ) -> Result<Page<Professional>, StoreError> {
        let mut items = Vec::new();
        let mut scanned = 0;
        let mut cursor = after.map(|id| [prefix.as_slice(), id.as_bytes()].concat());
        loop {
            let entries = self
                .store
                .scan(space, &prefix, cursor.as_deref(), SCAN_CHUNK)
                .await?;
            let exhausted = entries.len() < SCAN_CHUNK;
            for (key, _) in entries {
                let id = id_suffix(space, &key)?;
                cursor = Some(key);
                scanned += 1;
                if let Some(p) = self.professional(id).await?
                    && keep(&p)
                {
                    items.push(p.into_value());
                }
                if items.len() == limit || scanned == SCAN_BUDGET {
                    return Ok(Page {
                        items,
                        next: Some(id),
                    });
                }
            }
            if exhausted {
                return Ok(Page { items, next: None });
            }
        }
    }

    /// Reads a device.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the record is corrupt.
    pub async fn device(&self, id: DeviceId) -> Result<Option<Stored<Device>>, StoreError> {
        self.store
            .get(Keyspace::Devices, id.as_bytes())
            .await?
            .map(|bytes| Stored::decode(bytes, records::decode_device))
            .transpose()
    }

    /// Whether device `id` exists and is active (not revoked), read
    /// without decoding the rest of its record.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the record is corrupt.
    pub async fn device_active(&self, id: DeviceId) -> Result<bool, StoreError> {
        match self.store.get(Keyspace::Devices, id.as_bytes()).await? {
            Some(bytes) => Ok(records::decode_device_status(&bytes)?.1),
            None => Ok(false),
        }
    }

    /// The ids of every device of a professional (revoked ones too), in
    /// creation order, from the index.
    async fn device_ids_of(
        &self,
        professional: ProfessionalId,
    ) -> Result<Vec<DeviceId>, StoreError> {
        let entries = self
            .store
            .scan(
                Keyspace::DevicesByProfessional,
                professional.as_bytes(),
                None,
                usize::MAX,
            )
            .await?;
        entries
            .iter()
            .map(|(key, _)| {
                id_bytes(Keyspace::DevicesByProfessional, key).map(DeviceId::from_bytes)
            })
            .collect()
    }

    /// The ids of a professional's active devices, in creation order, read
    /// without decoding the rest of their records: who a change is told to.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn active_device_ids_of(
        &self,
        professional: ProfessionalId,
    ) -> Result<Vec<DeviceId>, StoreError> {
        let keys: Vec<Vec<u8>> = self
            .device_ids_of(professional)
            .await?
            .iter()
            .map(|id| id.as_bytes().to_vec())
            .collect();
        let mut active = Vec::with_capacity(keys.len());
        for bytes in self
            .store
            .get_many(Keyspace::Devices, &keys)
            .await?
            .into_iter()
            .flatten()
        {
            let (id, is_active) = records::decode_device_status(&bytes)?;
            if is_active {
                active.push(id);
            }
        }
        Ok(active)
    }

    /// Stores a new device, provided its owner is still exactly `owner` and
    /// their device set is still `set` (so a device is never added to a
    /// professional being deactivated, and limits checked on `set` hold);
    /// registered by `acting` (see [`Directory::stage_unchanged`]).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the owner, their device set or `acting`
    /// changed, or the id exists.
    pub async fn insert_device(
        &self,
        acting: &Stored<Professional>,
        owner: &Stored<Professional>,
        set: &DeviceSet,
        device: &Device,
        audit: v1::AuditEvent,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        self.stage_unchanged(&mut batch, acting);
        batch.expect(
            Keyspace::Professionals,
            owner.id.as_bytes().to_vec(),
            Some(owner.raw().to_vec()),
        );
        let set_key = owner.id.as_bytes().to_vec();
        batch.expect(Keyspace::DeviceSets, set_key.clone(), set.version_bytes());
        batch.put(
            Keyspace::DeviceSets,
            set_key,
            (set.version + 1).to_be_bytes().to_vec(),
        );
        batch.expect(Keyspace::Devices, device.id.as_bytes().to_vec(), None);
        batch.put(
            Keyspace::Devices,
            device.id.as_bytes().to_vec(),
            records::encode_device(device),
        );
        batch.put(
            Keyspace::DevicesByProfessional,
            [owner.id.as_bytes().as_slice(), device.id.as_bytes()].concat(),
            Vec::new(),
        );
        batch.audit(audit);
        self.store.commit(batch).await
    }

    /// Replaces device `old` by `new`; the change of `acting` (see
    /// [`Directory::stage_unchanged`]).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the stored record is no longer `old`, or
    /// `acting` changed.
    pub async fn update_device(
        &self,
        acting: &Stored<Professional>,
        old: &Stored<Device>,
        new: &Device,
        audit: v1::AuditEvent,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        self.stage_unchanged(&mut batch, acting);
        stage_device_update(&mut batch, old, new);
        batch.audit(audit);
        self.store.commit(batch).await
    }

    /// Every device of a professional, revoked ones included, in creation order.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn devices_of(
        &self,
        professional: ProfessionalId,
    ) -> Result<Vec<Device>, StoreError> {
        Ok(self
            .device_set(professional)
            .await?
            .devices
            .into_iter()
            .map(Stored::into_value)
            .collect())
    }

    /// A professional's devices with the version of the set, for changes
    /// that must not race with other device changes.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn device_set(&self, professional: ProfessionalId) -> Result<DeviceSet, StoreError> {
        // The version is read first: a registration that lands between the
        // two reads bumps it, so a change based on this snapshot conflicts.
        let version = match self
            .store
            .get(Keyspace::DeviceSets, professional.as_bytes())
            .await?
        {
            None => 0,
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    space: Keyspace::DeviceSets,
                    reason: "version is not 8 bytes".into(),
                })?,
        };
        let ids = self.device_ids_of(professional).await?;
        let mut devices = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(device) = self.device(id).await? {
                devices.push(device);
            }
        }
        Ok(DeviceSet { devices, version })
    }
}

/// A professional's devices as read at one version of their device set.
#[derive(Debug, Clone)]
pub struct DeviceSet {
    /// Every device, revoked ones included, in creation order.
    pub devices: Vec<Stored<Device>>,
    /// The set's version when read (0: never changed).
    version: u64,
}

impl DeviceSet {
    /// The stored form of the version, as a precondition expects it.
    fn version_bytes(&self) -> Option<Vec<u8>> {
        (self.version > 0).then(|| self.version.to_be_bytes().to_vec())
    }
}

fn org_key(organisation: &Oin, id: ProfessionalId) -> Vec<u8> {
    [organisation.as_str().as_bytes(), id.as_bytes()].concat()
}

fn add_specialist_index(batch: &mut Batch, p: &Professional) {
    batch.put(Keyspace::Specialists, p.id.as_bytes().to_vec(), Vec::new());
    for e in &p.expertise {
        batch.put(
            Keyspace::SpecialistsByExpertise,
            [e.code().as_slice(), p.id.as_bytes()].concat(),
            Vec::new(),
        );
    }
}

fn remove_specialist_index(batch: &mut Batch, p: &Professional) {
    batch.delete(Keyspace::Specialists, p.id.as_bytes().to_vec());
    for e in &p.expertise {
        batch.delete(
            Keyspace::SpecialistsByExpertise,
            [e.code().as_slice(), p.id.as_bytes()].concat(),
        );
    }
}

fn stage_device_update(batch: &mut Batch, old: &Stored<Device>, new: &Device) {
    let key = new.id.as_bytes().to_vec();
    batch.expect(Keyspace::Devices, key.clone(), Some(old.raw().to_vec()));
    batch.put(Keyspace::Devices, key, records::encode_device(new));
}

/// The last 16 bytes of an index key: the id it points to.
fn id_bytes(space: Keyspace, key: &[u8]) -> Result<[u8; 16], StoreError> {
    key.len()
        .checked_sub(16)
        .and_then(|start| <[u8; 16]>::try_from(&key[start..]).ok())
        .ok_or_else(|| StoreError::Corrupt {
            space,
            reason: "index key shorter than an id".into(),
        })
}

fn id_suffix(space: Keyspace, key: &[u8]) -> Result<ProfessionalId, StoreError> {
    id_bytes(space, key).map(ProfessionalId::from_bytes)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::{
        domain::{DeviceLabel, NewProfessional, SignatureKey},
        store::redb::RedbStore,
    };
    use samenop_proto::v1;

    fn professional() -> Professional {
        let new = NewProfessional::parse(&v1::RegisterProfessionalRequest {
            display_name: "Sanne".into(),
            roles: vec![v1::Role::ContactPerson as i32],
            expertise: vec![],
        })
        .unwrap();
        let oin = Oin::parse("oin", "00000099000000000001").unwrap();
        Professional::register(new, oin, records::from_millis(1_700_000_000_000))
    }

    fn device(owner: &Professional, key: u8) -> Device {
        Device {
            id: DeviceId::generate(),
            professional: owner.id,
            signature_key: SignatureKey::parse("key", &[key; 32]).unwrap(),
            label: DeviceLabel::parse("label", "laptop").unwrap(),
            registered_at: records::from_millis(1_700_000_000_000),
            revoked_at: None,
        }
    }

    /// A directory on a fresh store, holding one professional.
    async fn directory_with_professional() -> (tempfile::TempDir, Directory, Stored<Professional>) {
        let dir = tempfile::tempdir().unwrap();
        let directory = Directory::new(Arc::new(RedbStore::open(dir.path()).unwrap()));
        let sanne = inserted(&directory).await;
        (dir, directory, sanne)
    }

    /// A new professional stored in `directory`, as read back.
    async fn inserted(directory: &Directory) -> Stored<Professional> {
        let new = professional();
        directory
            .insert_professional(None, &new, v1::AuditEvent::default())
            .await
            .unwrap();
        directory.professional(new.id).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_device_registered_during_deactivation_makes_one_of_them_fail() {
        let (_dir, directory, sanne) = directory_with_professional().await;
        let admin = inserted(&directory).await;

        // A registration read the (empty) device set, then deactivation ran.
        let seen = directory.device_set(sanne.id).await.unwrap();
        directory
            .deactivate_professional(&admin, &sanne, SystemTime::now(), v1::AuditEvent::default())
            .await
            .unwrap();
        let late = directory
            .insert_device(
                &admin,
                &sanne,
                &seen,
                &device(&sanne, 1),
                v1::AuditEvent::default(),
            )
            .await;
        assert!(matches!(late, Err(StoreError::Conflict)), "{late:?}");

        // A device registered before deactivation is revoked with it.
        let eva = inserted(&directory).await;
        let before = directory.device_set(eva.id).await.unwrap();
        directory
            .insert_device(
                &admin,
                &eva,
                &before,
                &device(&eva, 2),
                v1::AuditEvent::default(),
            )
            .await
            .unwrap();
        let stopped = directory
            .deactivate_professional(&admin, &eva, SystemTime::now(), v1::AuditEvent::default())
            .await
            .unwrap();
        assert!(!stopped.is_active());
        let devices = directory.devices_of(eva.id).await.unwrap();
        assert_eq!(devices.len(), 1);
        assert!(devices.iter().all(|d| d.revoked_at.is_some()));
    }

    #[tokio::test]
    async fn two_registrations_from_one_snapshot_cannot_both_land() {
        let (_dir, directory, sanne) = directory_with_professional().await;
        let admin = inserted(&directory).await;
        let seen = directory.device_set(sanne.id).await.unwrap();
        directory
            .insert_device(
                &admin,
                &sanne,
                &seen,
                &device(&sanne, 1),
                v1::AuditEvent::default(),
            )
            .await
            .unwrap();
        let second = directory
            .insert_device(
                &admin,
                &sanne,
                &seen,
                &device(&sanne, 1),
                v1::AuditEvent::default(),
            )
            .await;
        assert!(matches!(second, Err(StoreError::Conflict)), "{second:?}");
    }

    #[tokio::test]
    async fn deactivation_keeps_earlier_revocation_times() {
        let (_dir, directory, sanne) = directory_with_professional().await;
        let admin = inserted(&directory).await;
        let old = device(&sanne, 1);
        let set = directory.device_set(sanne.id).await.unwrap();
        directory
            .insert_device(&admin, &sanne, &set, &old, v1::AuditEvent::default())
            .await
            .unwrap();
        let old = directory.device(old.id).await.unwrap().unwrap();
        let mut revoked = Device::clone(&old);
        revoked.revoked_at = Some(records::from_millis(1_700_000_001_000));
        directory
            .update_device(&admin, &old, &revoked, v1::AuditEvent::default())
            .await
            .unwrap();
        directory
            .deactivate_professional(
                &admin,
                &sanne,
                records::from_millis(1_700_000_009_000),
                v1::AuditEvent::default(),
            )
            .await
            .unwrap();
        let devices = directory.devices_of(sanne.id).await.unwrap();
        assert_eq!(devices[0].revoked_at, revoked.revoked_at);
    }

    /// A professional and a device written with a field this server does
    /// not know (by a newer server) can still be changed: preconditions are
    /// the bytes read, not the records encoded again without that field.
    #[tokio::test]
    async fn records_with_a_field_unknown_here_can_be_changed() {
        use crate::store::records::{put_raw, with_unknown_field};
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
        let directory = Directory::new(store.clone());
        let sanne = inserted(&directory).await;
        let admin = inserted(&directory).await;
        let laptop = device(&sanne, 1);
        let set = directory.device_set(sanne.id).await.unwrap();
        directory
            .insert_device(&admin, &sanne, &set, &laptop, v1::AuditEvent::default())
            .await
            .unwrap();
        let raw = with_unknown_field(records::encode_professional(&sanne));
        put_raw(
            store.as_ref(),
            Keyspace::Professionals,
            sanne.id.as_bytes(),
            raw,
        )
        .await;
        let raw = with_unknown_field(records::encode_device(&laptop));
        put_raw(store.as_ref(), Keyspace::Devices, laptop.id.as_bytes(), raw).await;

        let read = directory.professional(sanne.id).await.unwrap().unwrap();
        let mut away = Professional::clone(&read);
        away.availability = Some(crate::domain::Availability::Away);
        directory
            .update_professional(&read, &read, &away, v1::AuditEvent::default())
            .await
            .unwrap();
        let read = directory.professional(sanne.id).await.unwrap().unwrap();
        assert_eq!(*read, away);

        let stored_laptop = directory.device(laptop.id).await.unwrap().unwrap();
        let mut revoked = Device::clone(&stored_laptop);
        revoked.revoked_at = Some(records::from_millis(1_700_000_001_000));
        directory
            .update_device(&admin, &stored_laptop, &revoked, v1::AuditEvent::default())
            .await
            .unwrap();
        assert_eq!(
            *directory.device(laptop.id).await.unwrap().unwrap(),
            revoked
        );

        // A change based on what was read before is refused.
        let again = directory
            .update_device(&admin, &stored_laptop, &laptop, v1::AuditEvent::default())
            .await;
        assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    }

    /// A write made for an admin does not land once the admin's own record
    /// changed since their call read it (here: another admin deactivated
    /// them), and nothing of it is written.
    #[tokio::test]
    async fn a_write_of_an_admin_changed_meanwhile_does_not_land() {
        let (_dir, directory, sanne) = directory_with_professional().await;
        let admin = inserted(&directory).await;
        let other_admin = inserted(&directory).await;
        let set = directory.device_set(sanne.id).await.unwrap();
        let laptop = device(&sanne, 1);
        directory
            .deactivate_professional(
                &other_admin,
                &admin,
                SystemTime::now(),
                v1::AuditEvent::default(),
            )
            .await
            .unwrap();

        let late = directory
            .insert_device(&admin, &sanne, &set, &laptop, v1::AuditEvent::default())
            .await;
        assert!(matches!(late, Err(StoreError::Conflict)), "{late:?}");
        assert!(directory.device(laptop.id).await.unwrap().is_none());
        let registered = professional();
        let late = directory
            .insert_professional(Some(&admin), &registered, v1::AuditEvent::default())
            .await;
        assert!(matches!(late, Err(StoreError::Conflict)), "{late:?}");
        assert!(
            directory
                .professional(registered.id)
                .await
                .unwrap()
                .is_none()
        );
        let late = directory
            .deactivate_professional(&admin, &sanne, SystemTime::now(), v1::AuditEvent::default())
            .await;
        assert!(matches!(late, Err(StoreError::Conflict)), "{late:?}");
        assert!(
            directory
                .professional(sanne.id)
                .await
                .unwrap()
                .unwrap()
                .is_active()
        );

        // The same writes made for an admin as they are now land.
        directory
            .insert_device(
                &other_admin,
                &sanne,
                &set,
                &laptop,
                v1::AuditEvent::default(),
            )
            .await
            .unwrap();

        // Revoking a device and changing a record for a stale admin do not.
        let stored_laptop = directory.device(laptop.id).await.unwrap().unwrap();
        let mut revoked = Device::clone(&stored_laptop);
        revoked.revoked_at = Some(SystemTime::now());
        let late = directory
            .update_device(&admin, &stored_laptop, &revoked, v1::AuditEvent::default())
            .await;
        assert!(matches!(late, Err(StoreError::Conflict)), "{late:?}");
        assert!(
            directory
                .device(laptop.id)
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_none()
        );
        let mut away = Professional::clone(&sanne);
        away.availability = Some(crate::domain::Availability::Away);
        let late = directory
            .update_professional(&admin, &sanne, &away, v1::AuditEvent::default())
            .await;
        assert!(matches!(late, Err(StoreError::Conflict)), "{late:?}");
        assert_eq!(
            *directory.professional(sanne.id).await.unwrap().unwrap(),
            *sanne
        );
    }
}
