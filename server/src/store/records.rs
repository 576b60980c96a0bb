//! Stored records: protobuf messages (prost), each with a schema version, and
//! their conversion to and from domain types.
//!
//! The wire protocol and the stored form are separate on purpose: either can
//! change without the other. A record whose version this server does not know
//! is refused as corrupt rather than misread.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;

use super::{Keyspace, StoreError};
use crate::domain::{
    Availability, Device, DeviceId, DeviceLabel, DisplayName, Expertise, Oin, Professional,
    ProfessionalId, Role, Roles, SignatureKey,
};
use samenop_proto::v1;

/// The schema version written by this server.
pub const SCHEMA_VERSION: u32 = 1;

/// A record as read, with the bytes it was read from.
///
/// A change to a record is made on the condition that its key still holds
/// exactly the bytes read, not the record encoded again: a record written
/// by a newer server may carry fields this one does not know, which prost
/// drops when it decodes, and a precondition made of the record encoded
/// again would then never hold. The bytes read also save that encoding.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    value: T,
    raw: Vec<u8>,
}

impl<T> Stored<T> {
    /// `raw` decoded with `decode`, kept together.
    ///
    /// # Errors
    /// What `decode` returns.
    pub fn decode(
        raw: Vec<u8>,
        decode: impl FnOnce(&[u8]) -> Result<T, StoreError>,
    ) -> Result<Self, StoreError> {
        Ok(Stored {
            value: decode(&raw)?,
            raw,
        })
    }

    /// The bytes the record was read from: the precondition of a change.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The record, its bytes dropped.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> std::ops::Deref for Stored<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// A stored professional.
#[derive(Clone, PartialEq, Message)]
pub struct ProfessionalRecord {
    /// Schema version of the record.
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// Professional id (16 bytes).
    #[prost(bytes = "vec", tag = "2")]
    pub id: Vec<u8>,
    /// Organisation OIN.
    #[prost(string, tag = "3")]
    pub organisation: String,
    /// Display name.
    #[prost(string, tag = "4")]
    pub display_name: String,
    /// Roles as protocol numbers.
    #[prost(int32, repeated, tag = "5")]
    pub roles: Vec<i32>,
    /// Expertise as protocol messages.
    #[prost(message, repeated, tag = "6")]
    pub expertise: Vec<v1::Expertise>,
    /// Availability as a protocol number (0: not a specialist).
    #[prost(int32, tag = "7")]
    pub availability: i32,
    /// Registration time, ms since the Unix epoch.
    #[prost(int64, tag = "8")]
    pub registered_at_ms: i64,
    /// Deactivation time, ms since the Unix epoch.
    #[prost(int64, optional, tag = "9")]
    pub deactivated_at_ms: Option<i64>,
}

/// A stored device.
#[derive(Clone, PartialEq, Message)]
pub struct DeviceRecord {
    /// Schema version of the record.
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// Device id (16 bytes).
    #[prost(bytes = "vec", tag = "2")]
    pub id: Vec<u8>,
    /// Owner's professional id (16 bytes).
    #[prost(bytes = "vec", tag = "3")]
    pub professional: Vec<u8>,
    /// Public Ed25519 key (32 bytes).
    #[prost(bytes = "vec", tag = "4")]
    pub signature_key: Vec<u8>,
    /// Label.
    #[prost(string, tag = "5")]
    pub label: String,
    /// Registration time, ms since the Unix epoch.
    #[prost(int64, tag = "6")]
    pub registered_at_ms: i64,
    /// Revocation time, ms since the Unix epoch.
    #[prost(int64, optional, tag = "7")]
    pub revoked_at_ms: Option<i64>,
}

/// Milliseconds since the Unix epoch (negative before it).
pub fn to_millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The time `millis` after the Unix epoch.
pub fn from_millis(millis: i64) -> SystemTime {
    let magnitude = Duration::from_millis(millis.unsigned_abs());
    if millis >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// The key of a deadline index entry: the time (ms since the epoch, 8
/// bytes big-endian, so keys sort by time; times before the epoch count as
/// the epoch) and the id it is for.
pub fn deadline_key(at: SystemTime, id: &[u8]) -> Vec<u8> {
    let ms = u64::try_from(to_millis(at)).unwrap_or(0);
    [ms.to_be_bytes().as_slice(), id].concat()
}

/// A deadline index entry that is due: its key and the id it is for.
pub(crate) type Due = (Vec<u8>, [u8; 16]);

/// The ids of deadline index entries `entries` due at `now`, with their keys.
///
/// # Errors
/// [`StoreError::Corrupt`] when a key is not time + 16-byte id.
pub(crate) fn due_ids(
    space: Keyspace,
    entries: Vec<super::Entry>,
    now: SystemTime,
) -> Result<Vec<Due>, StoreError> {
    let now = u64::try_from(to_millis(now)).unwrap_or(0);
    let mut due = Vec::new();
    for (key, _) in entries {
        let at = key
            .get(..8)
            .and_then(|raw| <[u8; 8]>::try_from(raw).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| corrupt(space, "deadline key is not time + id"))?;
        if at > now {
            break;
        }
        let id = id_bytes(space, key.get(8..).unwrap_or_default())?;
        due.push((key, id));
    }
    Ok(due)
}

/// A corruption error for `space`.
pub(crate) fn corrupt(space: Keyspace, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        space,
        reason: reason.into(),
    }
}

/// Decodes a record of `space` and checks its schema version.
pub(crate) fn decode_versioned<M: Message + Default>(
    space: Keyspace,
    bytes: &[u8],
    version: impl Fn(&M) -> u32,
) -> Result<M, StoreError> {
    let record = decode(space, bytes)?;
    check_version(space, version(&record))?;
    Ok(record)
}

fn decode<M: Message + Default>(space: Keyspace, bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|err| corrupt(space, err.to_string()))
}

fn check_version(space: Keyspace, version: u32) -> Result<(), StoreError> {
    if version == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(corrupt(space, format!("unknown schema version {version}")))
    }
}

/// Reads a stored 16-byte id of `space`.
pub(crate) fn id_bytes(space: Keyspace, raw: &[u8]) -> Result<[u8; 16], StoreError> {
    <[u8; 16]>::try_from(raw).map_err(|_| corrupt(space, "id is not 16 bytes"))
}

/// Encodes a professional.
pub fn encode_professional(p: &Professional) -> Vec<u8> {
    ProfessionalRecord {
        version: SCHEMA_VERSION,
        id: p.id.as_bytes().to_vec(),
        organisation: p.organisation.as_str().to_owned(),
        display_name: p.display_name.as_str().to_owned(),
        roles: p.roles.iter().map(|r| r.to_proto() as i32).collect(),
        expertise: p.expertise.iter().map(|e| e.to_proto()).collect(),
        availability: p.availability.map_or(0, |a| a.to_proto() as i32),
        registered_at_ms: to_millis(p.registered_at),
        deactivated_at_ms: p.deactivated_at.map(to_millis),
    }
    .encode_to_vec()
}

/// Decodes a professional.
///
/// # Errors
/// [`StoreError::Corrupt`] when the bytes are not a valid record.
pub fn decode_professional(bytes: &[u8]) -> Result<Professional, StoreError> {
    const SPACE: Keyspace = Keyspace::Professionals;
    let r: ProfessionalRecord = decode(SPACE, bytes)?;
    check_version(SPACE, r.version)?;
    let bad = |e: crate::domain::InvalidInput| corrupt(SPACE, e.to_string());
    let roles = r
        .roles
        .iter()
        .map(|&v| Role::parse("roles", v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let expertise = r
        .expertise
        .iter()
        .map(|e| Expertise::parse("expertise", e))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let availability = match r.availability {
        0 => None,
        v => Some(Availability::parse("availability", v).map_err(bad)?),
    };
    Ok(Professional {
        id: ProfessionalId::from_bytes(id_bytes(SPACE, &r.id)?),
        organisation: Oin::parse("organisation", &r.organisation).map_err(bad)?,
        display_name: DisplayName::parse("display_name", &r.display_name).map_err(bad)?,
        roles: Roles::of(&roles),
        expertise,
        availability,
        registered_at: from_millis(r.registered_at_ms),
        deactivated_at: r.deactivated_at_ms.map(from_millis),
    })
}

/// Encodes a device.
pub fn encode_device(d: &Device) -> Vec<u8> {
    DeviceRecord {
        version: SCHEMA_VERSION,
        id: d.id.as_bytes().to_vec(),
        professional: d.professional.as_bytes().to_vec(),
        signature_key: d.signature_key.as_bytes().to_vec(),
        label: d.label.as_str().to_owned(),
        registered_at_ms: to_millis(d.registered_at),
        revoked_at_ms: d.revoked_at.map(to_millis),
    }
    .encode_to_vec()
}

/// Decodes a device.
///
/// # Errors
/// [`StoreError::Corrupt`] when the bytes are not a valid record.
pub fn decode_device(bytes: &[u8]) -> Result<Device, StoreError> {
    const SPACE: Keyspace = Keyspace::Devices;
    let r: DeviceRecord = decode(SPACE, bytes)?;
    check_version(SPACE, r.version)?;
    let bad = |e: crate::domain::InvalidInput| corrupt(SPACE, e.to_string());
    Ok(Device {
        id: DeviceId::from_bytes(id_bytes(SPACE, &r.id)?),
        professional: ProfessionalId::from_bytes(id_bytes(SPACE, &r.professional)?),
        signature_key: SignatureKey::parse("signature_key", &r.signature_key).map_err(bad)?,
        label: DeviceLabel::parse("label", &r.label).map_err(bad)?,
        registered_at: from_millis(r.registered_at_ms),
        revoked_at: r.revoked_at_ms.map(from_millis),
    })
}

/// What of a stored device says whether it may be told anything: its
/// record's fields 1, 2 and 7 (prost skips the others without copying
/// them), for reads that need no more than that.
#[derive(Clone, PartialEq, Message)]
struct DeviceStatusRecord {
    /// Schema version of the record.
    #[prost(uint32, tag = "1")]
    version: u32,
    /// Device id (16 bytes).
    #[prost(bytes = "vec", tag = "2")]
    id: Vec<u8>,
    /// Revocation time, ms since the Unix epoch.
    #[prost(int64, optional, tag = "7")]
    revoked_at_ms: Option<i64>,
}

/// A stored device's id, and whether it is active (not revoked), read
/// without the rest of its record.
///
/// # Errors
/// [`StoreError::Corrupt`] for a record that does not decode.
pub fn decode_device_status(bytes: &[u8]) -> Result<(DeviceId, bool), StoreError> {
    const SPACE: Keyspace = Keyspace::Devices;
    let r: DeviceStatusRecord = decode(SPACE, bytes)?;
    check_version(SPACE, r.version)?;
    Ok((
        DeviceId::from_bytes(id_bytes(SPACE, &r.id)?),
        r.revoked_at_ms.is_none(),
    ))
}

/// `raw` with a field this server does not know appended (number 99, a
/// varint), as a newer server could write it.
#[cfg(test)]
pub(crate) fn with_unknown_field(mut raw: Vec<u8>) -> Vec<u8> {
    prost::encoding::encode_key(99, prost::encoding::WireType::Varint, &mut raw);
    prost::encoding::encode_varint(1, &mut raw);
    raw
}

/// Stores `raw` under `key` as it is, bypassing the typed layers.
#[cfg(test)]
pub(crate) async fn put_raw(store: &dyn super::Store, space: Keyspace, key: &[u8], raw: Vec<u8>) {
    let mut batch = super::Batch::new();
    batch.put(space, key.to_vec(), raw);
    store.commit(batch).await.unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NewProfessional;

    #[test]
    fn professional_round_trips() {
        let new = NewProfessional::parse(&v1::RegisterProfessionalRequest {
            display_name: "Fatima".into(),
            roles: vec![2, 1],
            expertise: vec![v1::Expertise {
                domain: 3,
                violence_type: 4,
            }],
        })
        .unwrap();
        let oin = Oin::parse("oin", "00000099000000000001").unwrap();
        let now = from_millis(to_millis(SystemTime::now()));
        let p = Professional::register(new, oin, now);
        assert_eq!(decode_professional(&encode_professional(&p)).unwrap(), p);
    }

    #[test]
    fn unknown_version_and_garbage_are_corrupt() {
        let record = ProfessionalRecord {
            version: 99,
            ..Default::default()
        };
        assert!(matches!(
            decode_professional(&record.encode_to_vec()),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(decode_device(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn a_device_s_status_is_read_from_its_whole_record() {
        let mut device = Device {
            id: DeviceId::from_bytes([7; 16]),
            professional: ProfessionalId::from_bytes([8; 16]),
            signature_key: SignatureKey::parse("key", &[9; 32]).unwrap(),
            label: DeviceLabel::parse("label", "werkplek").unwrap(),
            registered_at: from_millis(1_700_000_000_000),
            revoked_at: None,
        };
        let active = encode_device(&device);
        assert_eq!(decode_device_status(&active).unwrap(), (device.id, true));
        // A field of a newer server is skipped, as in the whole record.
        assert_eq!(
            decode_device_status(&with_unknown_field(active)).unwrap(),
            (device.id, true)
        );
        device.revoked_at = Some(from_millis(1_700_000_100_000));
        assert_eq!(
            decode_device_status(&encode_device(&device)).unwrap(),
            (device.id, false)
        );
        let newer = DeviceRecord {
            version: 99,
            ..Default::default()
        };
        assert!(decode_device_status(&newer.encode_to_vec()).is_err());
        assert!(decode_device_status(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn millis_round_trip_before_and_after_the_epoch() {
        for ms in [-1_500, 0, 1_700_000_000_123] {
            assert_eq!(to_millis(from_millis(ms)), ms);
        }
    }
}
