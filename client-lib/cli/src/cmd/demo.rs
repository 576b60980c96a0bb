//! `samenop demo`: the story of samenop, played against a running
//! `samenop-server dev` with its demo network. Each step is said as a
//! person would say it, and so is what the server refuses where it should.
//! A new family every run, so it can be played again and again; the demo
//! people's devices live under the platform's data directory and are made
//! again when the server no longer knows them.

use std::{path::Path, time::SystemTime};

use samenop_client::{
    Client, ClientConfig, ClientError, Expertise, ViolenceType,
    audit::AuditFilter,
    consult::{About, LegalBasis, ListScope, NewConsult, Outcome, Urgency},
    family::{AgeBand, ConsentRequest, MemberAge, MemberRole, NewMember, RevocationReason},
    mls::Messenger,
};
use serde_json::{Value, json};

use super::profile::Network;
use crate::{
    error::{Class, CliError, Result},
    ids,
    output::Printer,
    text,
};

const PARTNER: Expertise = Expertise::Violence(ViolenceType::PartnerViolence);

/// The story's narrator: numbered steps, what happened, what was refused.
struct Story {
    out: Printer,
    steps: Vec<Value>,
}

impl Story {
    fn step(&mut self, text: &str) {
        let n = self.steps.len() + 1;
        self.steps
            .push(json!({"step": n, "says": text, "then": []}));
        if !self.out.json() {
            println!("\n{} {text}", self.out.bold(&format!("{n}.")));
        }
    }

    fn then(&mut self, text: &str) {
        if let Some(Value::Array(then)) = self.steps.last_mut().and_then(|s| s.get_mut("then")) {
            then.push(json!(text));
        }
        if !self.out.json() {
            println!("   {text}");
        }
    }

    fn refused(&mut self, err: &ClientError) {
        let said = match err {
            ClientError::FailedPrecondition(m)
            | ClientError::PermissionDenied(m)
            | ClientError::NotFound(m)
            | ClientError::InvalidArgument(m) => m.clone(),
            other => other.to_string(),
        };
        if let Some(step) = self.steps.last_mut() {
            step["refused"] = json!(said);
        }
        if !self.out.json() {
            println!("   {} {said}", self.out.warn("the server refuses:"));
        }
    }
}

/// One person of the demo, connected with their organisation's
/// certificate.
struct Person {
    client: Client,
    name: String,
    organisation: String,
}

async fn person(network: &Network, server: &str, slug_start: &str, first: &str) -> Result<Person> {
    let found = network
        .people
        .iter()
        .find(|p| p.organisation.starts_with(slug_start) && p.name.starts_with(first))
        .ok_or_else(|| {
            CliError::config(format!("the demo network has no {first} at {slug_start}"))
        })?;
    let org = network
        .organisations
        .iter()
        .find(|o| o.slug == found.organisation)
        .ok_or_else(|| CliError::config(format!("no organisation {}", found.organisation)))?;
    let mut config = ClientConfig::from_files(server, &network.ca, &org.certificate, &org.key)?;
    config.server_name = Some("localhost".into());
    Ok(Person {
        client: Client::connect(config).await?.acting_as(found.id),
        name: found
            .name
            .split_whitespace()
            .next()
            .unwrap_or(&found.name)
            .to_owned(),
        organisation: org.name.clone(),
    })
}

/// The demo device of `who`, made again when the server no longer lists
/// it (the dev server's data was reset since).
async fn device(who: &Person) -> Result<Messenger> {
    let dir = dirs::data_local_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("samenop")
        .join("demo-devices")
        .join(who.name.to_lowercase());
    let device = Messenger::open(&who.client, &dir, "samenop demo").await?;
    let me = who.client.professional().unwrap_or_default();
    let (_, listed) = who.client.professional_with_devices(me).await?;
    if listed
        .iter()
        .any(|d| d.id == device.device() && d.revoked_at.is_none())
    {
        return Ok(device);
    }
    drop(device);
    std::fs::remove_dir_all(&dir).map_err(|e| {
        CliError::new(
            Class::Failure,
            format!("cannot reset {}: {e}", dir.display()),
        )
    })?;
    Ok(Messenger::open(&who.client, &dir, "samenop demo").await?)
}

pub(crate) async fn run(server: &str, pki: &Path, out: Printer) -> Result<()> {
    let network = Network::load(pki)?;
    let sanne = person(&network, server, "wijkteam-demostad-oost", "Sanne").await?;
    let jeroen = person(&network, server, "veilig-thuis", "Jeroen").await?;
    let mila = person(&network, server, "jeugdbescherming", "Mila").await?;
    let ilse = person(&network, server, "wijkteam-demostad-oost", "Ilse").await?;
    let mut story = Story {
        out,
        steps: Vec::new(),
    };
    if !out.json() {
        println!(
            "{}",
            out.bold("samenop: one contact person stays with the family; specialists are brought in, not handed the family.")
        );
    }

    story.step(&format!(
        "{} ({}, contact person) registers a family: a mother, a 16-year-old and a 9-year-old.",
        sanne.name, sanne.organisation
    ));
    let family = sanne
        .client
        .register_family(&[
            NewMember {
                role: MemberRole::ParentOrCarer,
                age: MemberAge::Band(AgeBand::From16),
            },
            NewMember {
                role: MemberRole::Child,
                age: MemberAge::Band(AgeBand::From16),
            },
            NewMember {
                role: MemberRole::Child,
                age: MemberAge::Band(AgeBand::Under12),
            },
        ])
        .await?;
    let [mother, teen, young] = [
        family.members[0].id,
        family.members[1].id,
        family.members[2].id,
    ];
    story.then(&format!(
        "family {} on record: a pseudonym and age bands, no names, no BSN",
        ids::short(&family.id)
    ));

    story.step("The mother and the 16-year-old agree that partner-violence and child expertise may be consulted.");
    let until = SystemTime::now() + std::time::Duration::from_secs(90 * 86_400);
    let consent = sanne
        .client
        .record_consent(
            family.id,
            &ConsentRequest {
                concerned: vec![mother, teen],
                given_by: vec![mother, teen],
                expertise: vec![PARTNER, Expertise::Child],
                organisations: Vec::new(),
                valid_from: None,
                valid_until: until,
                evidence_reference: "gesprek met moeder en zoon".into(),
            },
        )
        .await?;
    story.then(&format!(
        "consent {} recorded, valid for 90 days",
        ids::short(&consent.id)
    ));

    story.step("Sanne asks the 9-year-old to consent too, on her own.");
    let refused = sanne
        .client
        .record_consent(
            family.id,
            &ConsentRequest {
                concerned: vec![young],
                given_by: vec![young],
                expertise: vec![PARTNER],
                organisations: Vec::new(),
                valid_from: None,
                valid_until: until,
                evidence_reference: "gesprek".into(),
            },
        )
        .await;
    match refused {
        Err(err @ ClientError::FailedPrecondition(_)) => story.refused(&err),
        Ok(_) => story.then("(the server should have refused this)"),
        Err(other) => return Err(other.into()),
    }

    story.step("Sanne opens a consult to the partner-violence pool: how safe is it at home?");
    let sanne_device = device(&sanne).await?;
    let consult = sanne
        .client
        .open_consult(&NewConsult {
            about: About::Family {
                family: family.id,
                concerned: vec![mother, teen],
                basis: LegalBasis::consent(consent.id),
            },
            question: "Hoe schatten jullie de veiligheid thuis in?".into(),
            expertise: PARTNER,
            urgency: Urgency::Soon,
            respond_by: None,
            specialist: None,
        })
        .await?;
    sanne_device.create_thread(consult.id).await?;
    story.then(&format!(
        "consult {} waits in the pool, encrypted thread ready",
        ids::short(&consult.id)
    ));

    story.step(&format!(
        "{} ({}) sees it in his inbox, accepts, and answers in the thread.",
        jeroen.name, jeroen.organisation
    ));
    let jeroen_device = device(&jeroen).await?;
    let inbox = jeroen.client.list_consults(ListScope::Inbox).await?;
    story.then(&format!(
        "his inbox holds it: \"{}\" ({})",
        consult.question,
        if inbox.iter().any(|c| c.id == consult.id) {
            "pool request"
        } else {
            "missing!"
        }
    ));
    jeroen.client.accept_consult(consult.id).await?;
    sanne_device.sync_members(consult.id).await?;
    jeroen_device.catch_up(consult.id).await?;
    let answer =
        "Ik zie signalen van dwingende controle. Laten we samen een veiligheidsplan maken.";
    jeroen_device.send(consult.id, answer, None).await?;
    let read = sanne_device.catch_up(consult.id).await?;
    story.then(&format!(
        "Sanne reads, decrypted on her machine: \"{}\"",
        read.first().map_or("", |m| m.text.as_str())
    ));

    story.step(&format!(
        "Sanne invites {} ({}, child expertise) for the 16-year-old.",
        mila.name, mila.organisation
    ));
    let mila_device = device(&mila).await?;
    let mila_id = mila.client.professional().unwrap_or_default();
    sanne
        .client
        .invite_specialist(consult.id, mila_id, Expertise::Child)
        .await?;
    mila.client.accept_consult(consult.id).await?;
    sanne_device.sync_members(consult.id).await?;
    let summary =
        "Samenvatting voor Mila: er is een veiligheidsplan in de maak; de zoon wil praten.";
    sanne_device.send(consult.id, summary, None).await?;
    mila_device.catch_up(consult.id).await?;
    let seen = mila_device.messages(consult.id).await?;
    story.then(&format!(
        "{} reads only what followed her joining: {} message(s), the first \"{}\"; Jeroen's answer is not hers to read",
        mila.name,
        seen.len(),
        seen.first().map_or("", |m| m.text.as_str())
    ));

    story.step("The mother withdraws her consent.");
    let (_, suspended) = sanne
        .client
        .revoke_consent(consent.id, RevocationReason::Withdrawn, Some("telefonisch"))
        .await?;
    story.then(&format!(
        "{} consult(s) suspended at once: {}",
        suspended.len(),
        text::state(sanne.client.consult(consult.id).await?.state)
    ));
    match jeroen_device.send(consult.id, "Nog één ding…", None).await {
        Err(err) => story.refused(&err),
        Ok(_) => story.then("(the server should have refused this post)"),
    }

    story.step("Sanne closes the consult with its outcome.");
    let closed = sanne
        .client
        .close_consult(consult.id, Outcome::JointApproach)
        .await?;
    story.then(&format!(
        "consult {}: {}",
        ids::short(&consult.id),
        text::state(closed.state)
    ));

    story.step(&format!(
        "{} ({}, privacy officer) reads the family's trail and verifies it.",
        ilse.name, ilse.organisation
    ));
    let trail = ilse
        .client
        .query_audit(&AuditFilter {
            family: Some(family.id),
            ..AuditFilter::default()
        })
        .await?;
    let denied = trail
        .iter()
        .filter(|e| e.outcome != samenop_client::audit::Outcome::Allowed)
        .count();
    story.then(&format!(
        "{} events about this family, {denied} of them refusals, each with who, what, on which basis and when",
        trail.len()
    ));
    let verified = ilse.client.verify_audit().await?;
    story.then(&if verified.ok {
        format!(
            "the trail verifies: {} events, {} signed checkpoints",
            verified.events_checked, verified.checkpoints_checked
        )
    } else {
        format!("the trail is BROKEN: {}", verified.detail)
    });
    if out.json() {
        println!(
            "{}",
            json!({
                "family_id": family.id.to_string(),
                "consult_id": consult.id.to_string(),
                "steps": story.steps,
            })
        );
    }
    Ok(())
}
