//! Professionals the server registers itself: each organisation's first
//! ORG_ADMIN from configuration, and the demo network of `dev` mode.
//! Both only add who is missing, so they are safe to run at every start.

use std::time::SystemTime;

use samenop_certs_dev::Organisation as DemoOrganisation;
use samenop_proto::v1::{self, ViolenceType as V};

use crate::{
    audit,
    config::Organisation,
    domain::{
        Availability, DisplayName, Expertise, Oin, Professional, ProfessionalId, Role, Roles,
    },
    store::{StoreError, directory::Directory},
};

/// Registers every configured bootstrap admin that is not registered yet.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn register_admins(
    directory: &Directory,
    organisations: &[Organisation],
    now: SystemTime,
) -> Result<(), StoreError> {
    for org in organisations {
        let Some((id, name)) = &org.bootstrap_admin else {
            continue;
        };
        let person = Professional {
            id: *id,
            organisation: org.oin.clone(),
            display_name: name.clone(),
            roles: Roles::of(&[Role::OrgAdmin]),
            expertise: Vec::new(),
            availability: None,
            registered_at: now,
            deactivated_at: None,
        };
        ensure(directory, &person).await?;
    }
    Ok(())
}

/// Stores `person` unless a professional with its id exists.
async fn ensure(directory: &Directory, person: &Professional) -> Result<bool, StoreError> {
    match directory.professional(person.id).await? {
        Some(existing) => {
            if existing.organisation != person.organisation {
                tracing::warn!(
                    professional = %person.id,
                    "configured professional id is registered under another organisation; left as is"
                );
            }
            Ok(false)
        }
        None => {
            let mut event =
                audit::server_event("server/bootstrap-professional", person.registered_at);
            event.purpose = v1::Purpose::NetworkAdministration as i32;
            event.objects.push(v1::AuditObject {
                object_type: v1::AuditObjectType::Professional as i32,
                object_id: person.id.to_string(),
            });
            directory.insert_professional(None, person, event).await?;
            Ok(true)
        }
    }
}

/// One person of the demo network.
#[derive(Debug, Clone)]
pub struct DemoPerson {
    /// The organisation's slug (names its certificate files).
    pub organisation: &'static str,
    /// The professional as registered.
    pub professional: Professional,
}

/// Who works where in the demo network, by organisation kind: (name, roles,
/// expertise). Together the specialists cover every expertise.
fn staff(kind: &str) -> &'static [(&'static str, &'static [Role], &'static [Expertise])] {
    use Role::{ContactPerson as CP, OrgAdmin as ADMIN, PrivacyOfficer as PO, Specialist as SP};
    match kind {
        "wijkteam" => &[
            ("Anouk Admin", &[ADMIN], &[]),
            ("Sanne Contact", &[CP], &[]),
            ("Daan Contact", &[CP], &[]),
            ("Ilse Privacy", &[PO], &[]),
        ],
        "veilig-thuis" => &[
            ("Bram Admin", &[ADMIN], &[]),
            ("Noor Contact", &[CP], &[]),
            (
                "Eva Kindermishandeling",
                &[SP],
                &[Expertise::Violence(V::ChildAbuse)],
            ),
            (
                "Jeroen Partnergeweld",
                &[SP],
                &[Expertise::Violence(V::PartnerViolence)],
            ),
            (
                "Wim Ouderenmishandeling",
                &[SP],
                &[Expertise::Violence(V::ElderAbuse)],
            ),
            ("Lotte Privacy", &[PO], &[]),
        ],
        "jeugdbescherming" => &[
            ("Karin Admin", &[ADMIN], &[]),
            ("Youssef Contact", &[CP], &[]),
            ("Mila Jeugd", &[SP], &[Expertise::Child]),
            (
                "Ruben Scheiding",
                &[SP],
                &[
                    Expertise::Violence(V::HighConflictDivorce),
                    Expertise::Child,
                ],
            ),
            ("Femke Privacy", &[PO], &[]),
        ],
        "ggz" => &[
            ("Pieter Admin", &[ADMIN], &[]),
            ("Layla Volwassenen", &[SP], &[Expertise::Adult]),
            ("Tom Volwassenen", &[SP, CP], &[Expertise::Adult]),
            ("Hanna Privacy", &[PO], &[]),
        ],
        "expertisecentrum" => &[
            ("Marieke Admin", &[ADMIN], &[]),
            (
                "Sofia Seksueel Geweld",
                &[SP],
                &[Expertise::Violence(V::SexualViolence)],
            ),
            (
                "Amir Eergerelateerd",
                &[SP],
                &[Expertise::Violence(V::HonourRelatedViolence)],
            ),
            (
                "Ingrid Mensenhandel",
                &[SP],
                &[Expertise::Violence(V::HumanTrafficking)],
            ),
            (
                "Hawa Vgv",
                &[SP],
                &[Expertise::Violence(V::FemaleGenitalMutilation)],
            ),
            ("Joost Privacy", &[PO], &[]),
        ],
        _ => &[("Admin", &[ADMIN], &[])],
    }
}

/// A stable id for a demo person, so the ids printed by `dev` stay the same
/// across runs: a UUID v8 made of a SHA-256 of the organisation and name.
fn demo_id(organisation: &DemoOrganisation, name: &str) -> ProfessionalId {
    let seed = format!("samenop demo network/{}/{name}", organisation.slug);
    let digest = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    ProfessionalId::from_bytes(*uuid::Uuid::new_v8(bytes).as_bytes())
}

/// The demo network's people for `organisations`.
pub fn demo_people(organisations: &[DemoOrganisation], now: SystemTime) -> Vec<DemoPerson> {
    let mut people = Vec::new();
    for org in organisations {
        let Ok(oin) = Oin::parse("oin", org.oin) else {
            continue;
        };
        for (name, roles, expertise) in staff(org.kind) {
            let Ok(display_name) = DisplayName::parse("display_name", name) else {
                continue;
            };
            let roles = Roles::of(roles);
            people.push(DemoPerson {
                organisation: org.slug,
                professional: Professional {
                    id: demo_id(org, name),
                    organisation: oin.clone(),
                    display_name,
                    roles,
                    expertise: expertise.to_vec(),
                    availability: roles
                        .contains(Role::Specialist)
                        .then_some(Availability::Available),
                    registered_at: now,
                    deactivated_at: None,
                },
            });
        }
    }
    people
}

/// Registers the demo network's people who are missing; returns everyone,
/// as stored.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn seed_demo_network(
    directory: &Directory,
    organisations: &[DemoOrganisation],
    now: SystemTime,
) -> Result<Vec<DemoPerson>, StoreError> {
    let mut people = demo_people(organisations, now);
    for person in &mut people {
        ensure(directory, &person.professional).await?;
        if let Some(stored) = directory.professional(person.professional.id).await? {
            person.professional = stored.into_value();
        }
    }
    Ok(people)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_specialists_cover_every_expertise() {
        let people = demo_people(samenop_certs_dev::DEMO_ORGANISATIONS, SystemTime::now());
        let covered: Vec<Expertise> = people
            .iter()
            .filter(|p| p.professional.has_role(Role::Specialist))
            .flat_map(|p| p.professional.expertise.clone())
            .collect();
        let mut wanted = vec![Expertise::Child, Expertise::Adult];
        for value in 1..=8 {
            if let Ok(kind) = V::try_from(value) {
                wanted.push(Expertise::Violence(kind));
            }
        }
        for expertise in wanted {
            assert!(covered.contains(&expertise), "{expertise:?} not covered");
        }
    }

    #[test]
    fn demo_ids_are_stable_and_distinct() {
        let a = demo_people(samenop_certs_dev::DEMO_ORGANISATIONS, SystemTime::now());
        let b = demo_people(samenop_certs_dev::DEMO_ORGANISATIONS, SystemTime::now());
        let ids: Vec<_> = a.iter().map(|p| p.professional.id).collect();
        assert_eq!(ids, b.iter().map(|p| p.professional.id).collect::<Vec<_>>());
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }
}
