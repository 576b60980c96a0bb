//! Typed storage of families and their consents, with the stored records.
//! Every change is compare-and-set on the records it read, so a change
//! based on a family as it was before a handover conflicts instead of
//! landing.

use std::{sync::Arc, time::SystemTime};

use prost::Message;

use super::{
    Batch, Keyspace, Store, StoreError,
    records::{
        SCHEMA_VERSION, Stored, corrupt, decode_versioned, from_millis, id_bytes as id16, to_millis,
    },
};
use crate::domain::{
    Expertise, Oin, ProfessionalId,
    consent::{Consent, ConsentId, Revocation, RevocationReason, Scope},
    family::{
        Age, AgeBand, BirthMonth, ContactTerm, Family, FamilyId, Member, MemberId, MemberRole,
    },
};
use samenop_proto::v1;

/// The most consents one family may have on record.
pub(crate) const CONSENTS_PER_FAMILY_MAX: usize = 500;

/// A stored family member.
#[derive(Clone, PartialEq, Message)]
pub struct MemberRecord {
    /// Member id (16 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    /// Role as a protocol number.
    #[prost(int32, tag = "2")]
    pub role: i32,
    /// Age band as a protocol number (0 when a birth month is given).
    #[prost(int32, tag = "3")]
    pub age_band: i32,
    /// Birth year (0 when none).
    #[prost(int32, tag = "4")]
    pub birth_year: i32,
    /// Birth month (0 when none).
    #[prost(uint32, tag = "5")]
    pub birth_month: u32,
}

/// A stored contact-person term.
#[derive(Clone, PartialEq, Message)]
pub struct TermRecord {
    /// Professional id (16 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub professional: Vec<u8>,
    /// Organisation OIN.
    #[prost(string, tag = "2")]
    pub organisation: String,
    /// Since, ms since the epoch.
    #[prost(int64, tag = "3")]
    pub since_ms: i64,
    /// Until, ms since the epoch.
    #[prost(int64, optional, tag = "4")]
    pub until_ms: Option<i64>,
}

/// A stored family.
#[derive(Clone, PartialEq, Message)]
pub struct FamilyRecord {
    /// Schema version.
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// Family id (16 bytes).
    #[prost(bytes = "vec", tag = "2")]
    pub id: Vec<u8>,
    /// Members in registration order.
    #[prost(message, repeated, tag = "3")]
    pub members: Vec<MemberRecord>,
    /// The current contact person.
    #[prost(message, optional, tag = "4")]
    pub contact: Option<TermRecord>,
    /// Earlier contact persons.
    #[prost(message, repeated, tag = "5")]
    pub previous: Vec<TermRecord>,
    /// Registration time, ms since the epoch.
    #[prost(int64, tag = "6")]
    pub registered_at_ms: i64,
}

/// A stored consent.
#[derive(Clone, PartialEq, Message)]
pub struct ConsentRecord {
    /// Schema version.
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// Consent id (16 bytes).
    #[prost(bytes = "vec", tag = "2")]
    pub id: Vec<u8>,
    /// Family id (16 bytes).
    #[prost(bytes = "vec", tag = "3")]
    pub family: Vec<u8>,
    /// Concerned member ids (16 bytes each).
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub concerned: Vec<Vec<u8>>,
    /// Member ids who gave it (16 bytes each).
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub given_by: Vec<Vec<u8>>,
    /// Scope expertise.
    #[prost(message, repeated, tag = "6")]
    pub expertise: Vec<v1::Expertise>,
    /// Scope organisations (OINs).
    #[prost(string, repeated, tag = "7")]
    pub organisations: Vec<String>,
    /// Valid from, ms.
    #[prost(int64, tag = "8")]
    pub valid_from_ms: i64,
    /// Valid until, ms.
    #[prost(int64, tag = "9")]
    pub valid_until_ms: i64,
    /// Evidence reference.
    #[prost(string, tag = "10")]
    pub evidence: String,
    /// Recorded by (16 bytes).
    #[prost(bytes = "vec", tag = "11")]
    pub recorded_by: Vec<u8>,
    /// Recorded at, ms.
    #[prost(int64, tag = "12")]
    pub recorded_at_ms: i64,
    /// Revoked at, ms.
    #[prost(int64, optional, tag = "13")]
    pub revoked_at_ms: Option<i64>,
    /// Revoked by (16 bytes).
    #[prost(bytes = "vec", tag = "14")]
    pub revoked_by: Vec<u8>,
    /// Revocation reason as a protocol number.
    #[prost(int32, tag = "15")]
    pub revocation_reason: i32,
    /// Revocation evidence.
    #[prost(string, optional, tag = "16")]
    pub revocation_evidence: Option<String>,
}

fn encode_term(t: &ContactTerm) -> TermRecord {
    TermRecord {
        professional: t.professional.as_bytes().to_vec(),
        organisation: t.organisation.as_str().to_owned(),
        since_ms: to_millis(t.since),
        until_ms: t.until.map(to_millis),
    }
}

fn decode_term(r: &TermRecord) -> Result<ContactTerm, StoreError> {
    const S: Keyspace = Keyspace::Families;
    Ok(ContactTerm {
        professional: ProfessionalId::from_bytes(id16(S, &r.professional)?),
        organisation: Oin::parse("organisation", &r.organisation)
            .map_err(|e| corrupt(S, e.to_string()))?,
        since: from_millis(r.since_ms),
        until: r.until_ms.map(from_millis),
    })
}

/// Encodes a family.
pub fn encode_family(f: &Family) -> Vec<u8> {
    let members = f
        .members
        .iter()
        .map(|m| {
            let (age_band, birth_year, birth_month) = match m.age {
                Age::Band(band) => (band.to_proto() as i32, 0, 0),
                Age::Born(b) => (0, b.year, u32::from(b.month)),
            };
            MemberRecord {
                id: m.id.as_bytes().to_vec(),
                role: m.role.to_proto() as i32,
                age_band,
                birth_year,
                birth_month,
            }
        })
        .collect();
    FamilyRecord {
        version: SCHEMA_VERSION,
        id: f.id.as_bytes().to_vec(),
        members,
        contact: Some(encode_term(&f.contact)),
        previous: f.previous.iter().map(encode_term).collect(),
        registered_at_ms: to_millis(f.registered_at),
    }
    .encode_to_vec()
}

/// Decodes a family.
///
/// # Errors
/// [`StoreError::Corrupt`] when the bytes are not a valid record.
pub fn decode_family(bytes: &[u8]) -> Result<Family, StoreError> {
    const S: Keyspace = Keyspace::Families;
    let r: FamilyRecord = decode_versioned(S, bytes, |r: &FamilyRecord| r.version)?;
    let bad = |e: crate::domain::InvalidInput| corrupt(S, e.to_string());
    let members = r
        .members
        .iter()
        .map(|m| {
            let age = if m.birth_month == 0 {
                Age::Band(AgeBand::parse("age_band", m.age_band).map_err(bad)?)
            } else {
                let month = u8::try_from(m.birth_month).map_err(|_| corrupt(S, "birth month"))?;
                Age::Born(BirthMonth {
                    year: m.birth_year,
                    month,
                })
            };
            Ok(Member {
                id: MemberId::from_bytes(id16(S, &m.id)?),
                role: MemberRole::parse("role", m.role).map_err(bad)?,
                age,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let contact = r
        .contact
        .as_ref()
        .ok_or_else(|| corrupt(S, "no contact person"))?;
    Ok(Family {
        id: FamilyId::from_bytes(id16(S, &r.id)?),
        members,
        contact: decode_term(contact)?,
        previous: r
            .previous
            .iter()
            .map(decode_term)
            .collect::<Result<_, _>>()?,
        registered_at: from_millis(r.registered_at_ms),
    })
}

/// Encodes a consent.
pub fn encode_consent(c: &Consent) -> Vec<u8> {
    let revocation = c.revocation.as_ref();
    ConsentRecord {
        version: SCHEMA_VERSION,
        id: c.id.as_bytes().to_vec(),
        family: c.family.as_bytes().to_vec(),
        concerned: c.concerned.iter().map(|m| m.as_bytes().to_vec()).collect(),
        given_by: c.given_by.iter().map(|m| m.as_bytes().to_vec()).collect(),
        expertise: c.scope.expertise.iter().map(|e| e.to_proto()).collect(),
        organisations: c
            .scope
            .organisations
            .iter()
            .map(|o| o.as_str().to_owned())
            .collect(),
        valid_from_ms: to_millis(c.valid_from),
        valid_until_ms: to_millis(c.valid_until),
        evidence: c.evidence.clone(),
        recorded_by: c.recorded_by.as_bytes().to_vec(),
        recorded_at_ms: to_millis(c.recorded_at),
        revoked_at_ms: revocation.map(|r| to_millis(r.at)),
        revoked_by: revocation
            .map(|r| r.by.as_bytes().to_vec())
            .unwrap_or_default(),
        revocation_reason: revocation.map_or(0, |r| r.reason.to_proto() as i32),
        revocation_evidence: revocation.and_then(|r| r.evidence.clone()),
    }
    .encode_to_vec()
}

/// Decodes a consent.
///
/// # Errors
/// [`StoreError::Corrupt`] when the bytes are not a valid record.
pub fn decode_consent(bytes: &[u8]) -> Result<Consent, StoreError> {
    const S: Keyspace = Keyspace::Consents;
    let r: ConsentRecord = decode_versioned(S, bytes, |r: &ConsentRecord| r.version)?;
    let bad = |e: crate::domain::InvalidInput| corrupt(S, e.to_string());
    let members = |list: &[Vec<u8>]| {
        list.iter()
            .map(|m| id16(S, m).map(MemberId::from_bytes))
            .collect::<Result<Vec<_>, _>>()
    };
    let revocation = match r.revoked_at_ms {
        None => None,
        Some(at) => Some(Revocation {
            at: from_millis(at),
            by: ProfessionalId::from_bytes(id16(S, &r.revoked_by)?),
            reason: RevocationReason::parse("reason", r.revocation_reason).map_err(bad)?,
            evidence: r.revocation_evidence.clone(),
        }),
    };
    Ok(Consent {
        id: ConsentId::from_bytes(id16(S, &r.id)?),
        family: FamilyId::from_bytes(id16(S, &r.family)?),
        concerned: members(&r.concerned)?,
        given_by: members(&r.given_by)?,
        scope: Scope {
            expertise: r
                .expertise
                .iter()
                .map(|e| Expertise::parse("expertise", e))
                .collect::<Result<_, _>>()
                .map_err(bad)?,
            organisations: r
                .organisations
                .iter()
                .map(|o| Oin::parse("organisation", o))
                .collect::<Result<_, _>>()
                .map_err(bad)?,
        },
        valid_from: from_millis(r.valid_from_ms),
        valid_until: from_millis(r.valid_until_ms),
        evidence: r.evidence,
        recorded_by: ProfessionalId::from_bytes(id16(S, &r.recorded_by)?),
        recorded_at: from_millis(r.recorded_at_ms),
        revocation,
    })
}

/// Family and consent storage over any [`Store`].
#[derive(Clone)]
pub struct Families {
    /// The backend.
    store: Arc<dyn Store>,
}

impl Families {
    /// Family storage on `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Families { store }
    }

    /// Reads a family.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the record is corrupt.
    pub async fn family(&self, id: FamilyId) -> Result<Option<Stored<Family>>, StoreError> {
        self.store
            .get(Keyspace::Families, id.as_bytes())
            .await?
            .map(|bytes| Stored::decode(bytes, decode_family))
            .transpose()
    }

    /// Stores a new family.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the id exists.
    pub async fn insert_family(
        &self,
        family: &Family,
        audit: v1::AuditEvent,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        let key = family.id.as_bytes().to_vec();
        batch.expect(Keyspace::Families, key.clone(), None);
        batch.put(Keyspace::Families, key, encode_family(family));
        batch.audit(audit);
        self.store.commit(batch).await
    }

    /// Reads a consent.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the record is corrupt.
    pub async fn consent(&self, id: ConsentId) -> Result<Option<Stored<Consent>>, StoreError> {
        self.store
            .get(Keyspace::Consents, id.as_bytes())
            .await?
            .map(|bytes| Stored::decode(bytes, decode_consent))
            .transpose()
    }

    /// Stores a new consent of `family`, provided the family is still as
    /// read (so no consent lands for a contact person who just handed over).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the family changed or the id exists.
    pub async fn insert_consent(
        &self,
        family: &Stored<Family>,
        consent: &Consent,
        audit: v1::AuditEvent,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.expect(
            Keyspace::Families,
            family.id.as_bytes().to_vec(),
            Some(family.raw().to_vec()),
        );
        let key = consent.id.as_bytes().to_vec();
        batch.expect(Keyspace::Consents, key.clone(), None);
        batch.put(Keyspace::Consents, key, encode_consent(consent));
        batch.put(
            Keyspace::ConsentDeadlines,
            super::records::deadline_key(consent.valid_until, consent.id.as_bytes()),
            Vec::new(),
        );
        batch.put(
            Keyspace::ConsentsByFamily,
            [family.id.as_bytes().as_slice(), consent.id.as_bytes()].concat(),
            Vec::new(),
        );
        batch.audit(audit);
        self.store.commit(batch).await
    }

    /// Adds to `batch` the revocation of consent `old` (as read) of
    /// `family` (as read); returns the revoked consent.
    pub fn stage_revocation(
        &self,
        batch: &mut Batch,
        family: &Stored<Family>,
        old: &Stored<Consent>,
        revocation: Revocation,
    ) -> Consent {
        let mut new = Consent::clone(old);
        new.revocation = Some(revocation);
        batch.expect(
            Keyspace::Families,
            family.id.as_bytes().to_vec(),
            Some(family.raw().to_vec()),
        );
        let key = old.id.as_bytes().to_vec();
        batch.expect(Keyspace::Consents, key.clone(), Some(old.raw().to_vec()));
        batch.put(Keyspace::Consents, key, encode_consent(&new));
        // Revocation suspends its consults at once: nothing left to sweep.
        batch.delete(
            Keyspace::ConsentDeadlines,
            super::records::deadline_key(old.valid_until, old.id.as_bytes()),
        );
        new
    }

    /// Up to `limit` consents, not revoked, whose valid-until time is at or
    /// before `now` and whose consults were not swept yet, with the index
    /// key that [`Families::stage_swept`] removes.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or an index key is corrupt.
    pub async fn consents_due(
        &self,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, ConsentId)>, StoreError> {
        let entries = self
            .store
            .scan(Keyspace::ConsentDeadlines, &[], None, limit)
            .await?;
        Ok(
            super::records::due_ids(Keyspace::ConsentDeadlines, entries, now)?
                .into_iter()
                .map(|(key, id)| (key, ConsentId::from_bytes(id)))
                .collect(),
        )
    }

    /// Adds to `batch` that the consults of the consent under deadline key
    /// `key` were swept.
    pub fn stage_swept(&self, batch: &mut Batch, key: Vec<u8>) {
        batch.delete(Keyspace::ConsentDeadlines, key);
    }

    /// Adds to `batch` the removal of consent `read` (as read) and its
    /// index entries.
    pub fn stage_erase_consent(&self, batch: &mut Batch, read: &Stored<Consent>) {
        let key = read.id.as_bytes().to_vec();
        batch.expect(Keyspace::Consents, key.clone(), Some(read.raw().to_vec()));
        batch.delete(Keyspace::Consents, key);
        batch.delete(
            Keyspace::ConsentsByFamily,
            [read.family.as_bytes().as_slice(), read.id.as_bytes()].concat(),
        );
        batch.delete(
            Keyspace::ConsentDeadlines,
            super::records::deadline_key(read.valid_until, read.id.as_bytes()),
        );
    }

    /// Adds to `batch` the removal of family `read` (as read).
    pub fn stage_erase_family(&self, batch: &mut Batch, read: &Stored<Family>) {
        let key = read.id.as_bytes().to_vec();
        batch.expect(Keyspace::Families, key.clone(), Some(read.raw().to_vec()));
        batch.delete(Keyspace::Families, key);
    }

    /// Every stored family: the retention job's work list.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn all(&self) -> Result<Vec<Stored<Family>>, StoreError> {
        super::scan_all(self.store.as_ref(), Keyspace::Families, &[])
            .await?
            .into_iter()
            .map(|(_, raw)| Stored::decode(raw, decode_family))
            .collect()
    }

    /// Adds to `batch` the precondition that family `read` is still as
    /// read, for a change that depends on it without changing it.
    pub fn stage_unchanged(&self, batch: &mut Batch, read: &Stored<Family>) {
        batch.expect(
            Keyspace::Families,
            read.id.as_bytes().to_vec(),
            Some(read.raw().to_vec()),
        );
    }

    /// Adds to `batch` the change of family `old` (as read) to `new`.
    pub fn stage_family(&self, batch: &mut Batch, old: &Stored<Family>, new: &Family) {
        let key = new.id.as_bytes().to_vec();
        batch.expect(Keyspace::Families, key.clone(), Some(old.raw().to_vec()));
        batch.put(Keyspace::Families, key, encode_family(new));
    }

    /// Every consent of a family, in recording order.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn consents_of(&self, family: FamilyId) -> Result<Vec<Stored<Consent>>, StoreError> {
        let entries = self
            .store
            .scan(
                Keyspace::ConsentsByFamily,
                family.as_bytes(),
                None,
                CONSENTS_PER_FAMILY_MAX,
            )
            .await?;
        let mut consents = Vec::with_capacity(entries.len());
        for (key, _) in entries {
            let id = key
                .get(16..32)
                .and_then(|s| <[u8; 16]>::try_from(s).ok())
                .ok_or_else(|| corrupt(Keyspace::ConsentsByFamily, "key is not two ids"))?;
            if let Some(consent) = self.consent(ConsentId::from_bytes(id)).await? {
                consents.push(consent);
            }
        }
        Ok(consents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time `now` as stored.
    fn stored(now: SystemTime) -> SystemTime {
        from_millis(to_millis(now))
    }

    #[test]
    fn family_and_consent_round_trip() {
        let now = stored(SystemTime::now());
        let request = v1::RegisterFamilyRequest {
            members: vec![
                v1::FamilyMember {
                    role: 1,
                    age_band: 3,
                    ..Default::default()
                },
                v1::FamilyMember {
                    role: 2,
                    birth_month: Some(v1::BirthMonth {
                        year: 2016,
                        month: 4,
                    }),
                    ..Default::default()
                },
            ],
        };
        let oin = Oin::parse("o", "00000099000000000001").unwrap();
        let mut family =
            Family::register(&request, (ProfessionalId::generate(), oin.clone()), now).unwrap();
        family.hand_over((ProfessionalId::generate(), oin.clone()), now);
        assert_eq!(decode_family(&encode_family(&family)).unwrap(), family);

        let consent = Consent {
            id: ConsentId::generate(),
            family: family.id,
            concerned: vec![family.members[1].id],
            given_by: vec![family.members[0].id],
            scope: Scope {
                expertise: vec![Expertise::Child],
                organisations: vec![oin],
            },
            valid_from: now,
            valid_until: now + std::time::Duration::from_secs(3600),
            evidence: "DOC-1".into(),
            recorded_by: family.contact.professional,
            recorded_at: now,
            revocation: Some(Revocation {
                at: now,
                by: family.contact.professional,
                reason: RevocationReason::Withdrawn,
                evidence: None,
            }),
        };
        assert_eq!(decode_consent(&encode_consent(&consent)).unwrap(), consent);
    }

    /// A family and a consent written with a field this server does not
    /// know (by a newer server) can still be changed: preconditions are the
    /// bytes read, not the records encoded again without that field.
    #[tokio::test]
    async fn records_with_a_field_unknown_here_can_be_changed() {
        use crate::store::{
            records::{put_raw, with_unknown_field},
            redb::RedbStore,
        };
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
        let families = Families::new(store.clone());
        let now = stored(SystemTime::now());
        let request = v1::RegisterFamilyRequest {
            members: vec![v1::FamilyMember {
                role: 1,
                age_band: 3,
                ..Default::default()
            }],
        };
        let oin = Oin::parse("o", "00000099000000000001").unwrap();
        let family =
            Family::register(&request, (ProfessionalId::generate(), oin.clone()), now).unwrap();
        let consent = Consent {
            id: ConsentId::generate(),
            family: family.id,
            concerned: vec![family.members[0].id],
            given_by: vec![family.members[0].id],
            scope: Scope {
                expertise: vec![Expertise::Child],
                organisations: vec![oin.clone()],
            },
            valid_from: now,
            valid_until: now + std::time::Duration::from_secs(3600),
            evidence: "DOC-1".into(),
            recorded_by: family.contact.professional,
            recorded_at: now,
            revocation: None,
        };
        let raw_family = with_unknown_field(encode_family(&family));
        put_raw(
            store.as_ref(),
            Keyspace::Families,
            family.id.as_bytes(),
            raw_family,
        )
        .await;
        let raw_consent = with_unknown_field(encode_consent(&consent));
        put_raw(
            store.as_ref(),
            Keyspace::Consents,
            consent.id.as_bytes(),
            raw_consent,
        )
        .await;

        let read_family = families.family(family.id).await.unwrap().unwrap();
        let read_consent = families.consent(consent.id).await.unwrap().unwrap();
        assert_eq!((&*read_family, &*read_consent), (&family, &consent));
        let mut batch = Batch::new();
        let revoked = families.stage_revocation(
            &mut batch,
            &read_family,
            &read_consent,
            Revocation {
                at: now,
                by: family.contact.professional,
                reason: RevocationReason::Withdrawn,
                evidence: None,
            },
        );
        store.commit(batch).await.unwrap();
        assert_eq!(
            *families.consent(consent.id).await.unwrap().unwrap(),
            revoked
        );

        let mut handed = family.clone();
        handed.hand_over((ProfessionalId::generate(), oin), now);
        let mut batch = Batch::new();
        families.stage_family(&mut batch, &read_family, &handed);
        store.commit(batch).await.unwrap();
        assert_eq!(*families.family(family.id).await.unwrap().unwrap(), handed);

        // A change based on what was read before is refused.
        let mut batch = Batch::new();
        families.stage_unchanged(&mut batch, &read_family);
        assert!(matches!(
            store.commit(batch).await,
            Err(StoreError::Conflict)
        ));
    }
}
