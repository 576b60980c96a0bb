//! `samenop profile …`: the profiles in the configuration file, and one for
//! every demo professional of a running `samenop-server dev`.

use std::path::Path;

use serde::Deserialize;
use serde_json::json;

use crate::{
    cli::ProfileCommand,
    config::{self, Config, Profile},
    error::{CliError, Result},
    output::Printer,
};

pub(crate) fn run(
    command: ProfileCommand,
    path: &Path,
    chosen: Option<&str>,
    out: Printer,
) -> Result<()> {
    let mut config = Config::load(path)?;
    match command {
        ProfileCommand::List => {
            let rows: Vec<Vec<String>> = config
                .profiles
                .iter()
                .map(|(name, p)| {
                    let current = config.current.as_deref() == Some(name.as_str());
                    vec![
                        if current { "*".into() } else { String::new() },
                        name.clone(),
                        p.professional.to_string(),
                        p.server.clone(),
                    ]
                })
                .collect();
            let value = json!({
                "current": config.current,
                "profiles": config.profiles.iter().map(|(name, p)| profile_json(name, p)).collect::<Vec<_>>(),
            });
            out.show(&value, |out| {
                if rows.is_empty() {
                    format!("no profiles in {}", path.display())
                } else {
                    out.table(&["", "PROFILE", "PROFESSIONAL", "SERVER"], &rows)
                }
            });
        }
        ProfileCommand::Show { name } => {
            let (name, profile) = config.profile(name.as_deref().or(chosen))?;
            let value = profile_json(&name, &profile);
            out.show(&value, |out| {
                format!(
                    "{}\n  server        {}{}\n  professional  {}\n  certificate   {}\n  key           {}\n  CA            {}\n  device state  {}",
                    out.bold(&name),
                    profile.server,
                    profile
                        .server_name
                        .as_ref()
                        .map(|n| format!(" (certificate name {n})"))
                        .unwrap_or_default(),
                    profile.professional,
                    profile.certificate.display(),
                    profile.key.display(),
                    profile.ca.display(),
                    profile.state.display()
                )
            });
        }
        ProfileCommand::Use { name } => {
            if !config.profiles.contains_key(&name) {
                return Err(CliError::config(format!("there is no profile {name:?}"))
                    .hint("see `samenop profile list`"));
            }
            config.current = Some(name.clone());
            config.save(path)?;
            out.show(&json!({"current": name}), |_| {
                format!("now acting as {name}")
            });
        }
        ProfileCommand::Add {
            name,
            server,
            server_name,
            ca,
            cert,
            key,
            professional,
            state,
        } => {
            let absolute = |p: std::path::PathBuf| std::path::absolute(&p).unwrap_or(p);
            let profile = Profile {
                server,
                server_name,
                ca: absolute(ca),
                certificate: absolute(cert),
                key: absolute(key),
                professional,
                state: state.map_or_else(|| config::default_state(&name), absolute),
            };
            add(&mut config, &name, profile.clone())?;
            config.save(path)?;
            out.show(&profile_json(&name, &profile), |_| {
                format!("added profile {name}")
            });
        }
        ProfileCommand::Remove { name } => {
            if config.profiles.remove(&name).is_none() {
                return Err(CliError::config(format!("there is no profile {name:?}")));
            }
            if config.current.as_deref() == Some(name.as_str()) {
                config.current = None;
            }
            config.save(path)?;
            out.show(&json!({"removed": name}), |_| {
                format!("removed profile {name} (its device's state stays on disk)")
            });
        }
        ProfileCommand::ImportDev { pki } => {
            let added = import_dev(&mut config, &pki)?;
            config.save(path)?;
            out.show(&json!({"added": added}), |out| {
                let rows: Vec<Vec<String>> = added.iter().map(|n| vec![n.clone()]).collect();
                format!(
                    "{} profiles for the demo network of {}:\n{}\nchoose one with `samenop profile use NAME` or --profile NAME",
                    added.len(),
                    pki.display(),
                    out.table(&["PROFILE"], &rows)
                )
            });
        }
    }
    Ok(())
}

fn profile_json(name: &str, p: &Profile) -> serde_json::Value {
    json!({
        "name": name,
        "server": p.server,
        "server_name": p.server_name,
        "professional_id": p.professional.to_string(),
        "certificate": p.certificate,
        "key": p.key,
        "ca": p.ca,
        "state": p.state,
    })
}

/// Adds `profile` as `name`, refusing a state directory another profile
/// already uses (a device's state belongs to one professional).
fn add(config: &mut Config, name: &str, profile: Profile) -> Result<()> {
    if let Some((other, _)) = config
        .profiles
        .iter()
        .find(|(other, p)| other.as_str() != name && p.state == profile.state)
    {
        return Err(CliError::config(format!(
            "profile {other} already keeps its device in {}",
            profile.state.display()
        ))
        .hint("give each profile a state directory of its own (--state)"));
    }
    if config.current.is_none() {
        config.current = Some(name.to_owned());
    }
    config.profiles.insert(name.to_owned(), profile);
    Ok(())
}

/// `demo-network.json`, as `samenop-server dev` writes it.
#[derive(Debug, Deserialize)]
pub(crate) struct Network {
    pub(crate) server: String,
    pub(crate) ca: std::path::PathBuf,
    pub(crate) organisations: Vec<NetworkOrganisation>,
    pub(crate) people: Vec<NetworkPerson>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NetworkOrganisation {
    pub(crate) slug: String,
    pub(crate) name: String,
    pub(crate) certificate: std::path::PathBuf,
    pub(crate) key: std::path::PathBuf,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NetworkPerson {
    pub(crate) organisation: String,
    pub(crate) id: uuid::Uuid,
    pub(crate) name: String,
}

impl Network {
    /// The network described in the PKI directory `pki`.
    ///
    /// # Errors
    /// Configuration errors when the file is missing or malformed.
    pub(crate) fn load(pki: &Path) -> Result<Self> {
        let file = pki.join("demo-network.json");
        let raw = std::fs::read(&file).map_err(|e| {
            CliError::config(format!("cannot read {}: {e}", file.display()))
                .hint("start `samenop-server dev` first: it writes the file beside its PKI")
        })?;
        serde_json::from_slice(&raw)
            .map_err(|e| CliError::config(format!("{} is not a demo network: {e}", file.display())))
    }
}

/// The profile name of a demo person: the organisation without its demo
/// place, and the first name: `veilig-thuis/jeroen`.
pub(crate) fn dev_name(organisation: &str, person: &str) -> String {
    let org = organisation
        .replace("-demoregio", "")
        .replace("-demostad", "");
    let first = person
        .split_whitespace()
        .next()
        .unwrap_or(person)
        .to_lowercase();
    format!("{org}/{first}")
}

/// Adds a profile for every person of the demo network described in
/// `pki`; returns their names.
fn import_dev(config: &mut Config, pki: &Path) -> Result<Vec<String>> {
    let network = Network::load(pki)?;
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let mut added = Vec::new();
    for person in &network.people {
        let Some(org) = network
            .organisations
            .iter()
            .find(|o| o.slug == person.organisation)
        else {
            continue;
        };
        let name = dev_name(&org.slug, &person.name);
        let profile = Profile {
            server: network.server.clone(),
            server_name: Some("localhost".into()),
            ca: absolute(&network.ca),
            certificate: absolute(&org.certificate),
            key: absolute(&org.key),
            professional: person.id,
            state: config::default_state(&name),
        };
        // An existing profile of that name is kept as it is (its device too).
        if !config.profiles.contains_key(&name) {
            add(config, &name, profile)?;
        }
        added.push(name);
    }
    Ok(added)
}
