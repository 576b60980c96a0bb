//! The commands, one file per group, and what they share: finding the
//! consult or family a short id names.

mod audit;
mod consults;
mod demo;
mod family;
pub(crate) mod json;
mod me;
mod profile;
mod thread;
mod watch;

pub(crate) use watch::CURSOR_FILE as WATCH_CURSOR;

use std::collections::BTreeSet;

use clap::CommandFactory;
use samenop_client::consult::ListScope;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    cli::{Cli, Command},
    config::{self, Config},
    context::Ctx,
    error::Result,
    ids,
    output::Printer,
};

/// Runs the command line `args`.
///
/// # Errors
/// The command's failure, for `main` to report and exit with.
pub(crate) async fn run(args: Cli) -> Result<()> {
    let out = Printer::new(args.json);
    let path = config::path(args.config.as_deref())?;
    match args.command {
        Command::Profile(command) => profile::run(command, &path, args.profile.as_deref(), out),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "samenop",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(|e| crate::error::CliError::new(crate::error::Class::Failure, e.to_string())),
        Command::Demo { server, pki } => demo::run(&server, &pki, out).await,
        command => {
            let (name, profile) = Config::load(&path)?.profile(args.profile.as_deref())?;
            if reads_only(&command) {
                crate::retry::when_unavailable(out, || {
                    let (name, profile, command) = (name.clone(), profile.clone(), command.clone());
                    async move { dispatch(&Ctx::connect(name, profile, out).await?, command).await }
                })
                .await
            } else {
                // Connecting is always safe to try again: nothing was asked.
                let ctx = crate::retry::when_unavailable(out, || {
                    Ctx::connect(name.clone(), profile.clone(), out)
                })
                .await?;
                match command {
                    // Serves until stopped, holding the device.
                    Command::Inbox { web, open } if web || open => {
                        crate::web::serve(ctx, open).await
                    }
                    command => dispatch(&ctx, command).await,
                }
            }
        }
    }
}

/// Whether `command` only reads, so trying it again when the server could
/// not be reached changes nothing. (A read may apply the thread's commits
/// to the device: applying them again is a no-op. Reading is audited, so a
/// retried read may be audited twice, as it was asked twice.)
fn reads_only(command: &Command) -> bool {
    use crate::cli::{AuditCommand, ConsentCommand, DeviceCommand, FamilyCommand};
    use Command as C;
    match command {
        C::Whoami
        | C::Specialists { .. }
        | C::Inbox {
            web: false,
            open: false,
        }
        | C::Consults { .. }
        | C::Show { .. }
        | C::Read { .. }
        | C::Download { .. }
        | C::Report { .. }
        | C::Device(DeviceCommand::List)
        | C::Family(FamilyCommand::Show { .. } | FamilyCommand::Export { .. })
        | C::Consent(ConsentCommand::List { .. })
        | C::Audit(AuditCommand::Query(_) | AuditCommand::Verify | AuditCommand::Export(_)) => true,
        // `send` tries again itself, under the message's request id; `watch`
        // resumes from its cursor.
        _ => false,
    }
}

async fn dispatch(ctx: &Ctx, command: Command) -> Result<()> {
    use Command as C;
    match command {
        C::Whoami => me::whoami(ctx).await,
        C::Specialists {
            expertise,
            available,
        } => me::specialists(ctx, expertise, available).await,
        C::Device(command) => me::device(ctx, command).await,
        C::Availability { value } => me::availability(ctx, value).await,
        C::Inbox { .. } => consults::inbox(ctx).await,
        C::Consults { state } => consults::list(ctx, state).await,
        C::Show { consult } => consults::show(ctx, &consult).await,
        C::Accept { consult } => consults::accept(ctx, &consult).await,
        C::Decline {
            consult,
            reason,
            note,
        } => consults::decline(ctx, &consult, reason, note.as_deref()).await,
        C::Open(open) => consults::open(ctx, open).await,
        C::Invite {
            consult,
            specialist,
            expertise,
        } => consults::invite(ctx, &consult, specialist, expertise).await,
        C::Remove {
            consult,
            professional,
        } => consults::remove(ctx, &consult, professional).await,
        C::Basis { consult, basis } => consults::basis(ctx, &consult, basis).await,
        C::Close { consult, outcome } => consults::close(ctx, &consult, outcome).await,
        C::Leave { consult } => consults::leave(ctx, &consult).await,
        C::Report { from, to } => consults::report(ctx, from.as_deref(), to.as_deref()).await,
        C::Read { consult } => thread::read(ctx, &consult).await,
        C::Send {
            consult,
            text,
            file,
        } => thread::send(ctx, &consult, text.as_deref(), file.as_deref()).await,
        C::Download {
            consult,
            attachment,
            out,
        } => thread::download(ctx, &consult, &attachment, out.as_deref()).await,
        C::Watch { from } => watch::run(ctx, from).await,
        C::Family(command) => family::family(ctx, command).await,
        C::Consent(command) => family::consent(ctx, command).await,
        C::Audit(command) => audit::run(ctx, command).await,
        C::Profile(_) | C::Completions { .. } | C::Man | C::Demo { .. } => Ok(()),
    }
}

/// Ids this profile has seen that no listing gives back (families), kept in
/// its state directory so short ids work for them too.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Known {
    #[serde(default)]
    families: BTreeSet<Uuid>,
    #[serde(default)]
    consults: BTreeSet<Uuid>,
}

const KNOWN_FILE: &str = "known-ids.json";

fn known(ctx: &Ctx) -> Known {
    std::fs::read(ctx.state_file(KNOWN_FILE))
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or_default()
}

/// Remembers ids the profile has seen (best effort: short ids are a
/// convenience, a full id always works).
fn remember(ctx: &Ctx, families: &[Uuid], consults: &[Uuid]) {
    let mut seen = known(ctx);
    seen.families.extend(families);
    seen.consults.extend(consults);
    if let Ok(raw) = serde_json::to_vec(&seen) {
        let _ = ctx.write_state(KNOWN_FILE, &raw);
    }
}

/// The consult `given` names: a whole id, or a prefix of one of the
/// consults the professional owns, takes part in or may accept.
pub(crate) async fn consult_id(ctx: &Ctx, given: &str) -> Result<Uuid> {
    if let Ok(id) = Uuid::try_parse(given) {
        return Ok(id);
    }
    let mut candidates: Vec<Uuid> = known(ctx).consults.into_iter().collect();
    for scope in [ListScope::Owned, ListScope::Participating, ListScope::Inbox] {
        candidates.extend(ctx.client.list_consults(scope).await?.iter().map(|c| c.id));
    }
    ids::resolve(given, &candidates, "consult")
}

/// The family `given` names: a whole id, or a prefix of a family this
/// profile registered or saw, or of one of its consults.
pub(crate) async fn family_id(ctx: &Ctx, given: &str) -> Result<Uuid> {
    if let Ok(id) = Uuid::try_parse(given) {
        return Ok(id);
    }
    let mut candidates: Vec<Uuid> = known(ctx).families.into_iter().collect();
    candidates.extend(
        ctx.client
            .list_consults(ListScope::Owned)
            .await?
            .iter()
            .filter_map(|c| c.family),
    );
    ids::resolve(given, &candidates, "family")
}
