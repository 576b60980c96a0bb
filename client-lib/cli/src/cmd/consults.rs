//! Consults: the inbox, your consults, one consult, and every change to
//! one (accept, decline, open, invite, remove, basis, close, leave), and
//! the network's report.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use samenop_client::{
    Expertise,
    consult::{
        About, Consult, ConsultState, DeclineReason, LegalBasis, LegalGround, ListScope,
        NewConsult, Outcome, Urgency,
    },
};
use serde_json::json;
use uuid::Uuid;

use super::{consult_id, family_id, json, remember};
use crate::{
    cli::{BasisArgs, DeclineArg, GroundArg, OpenArgs, OutcomeArg, StateFilter, UrgencyArg},
    context::Ctx,
    error::{Class, CliError, Result},
    ids, text, time,
};

/// Names of professionals, looked up once each.
struct Names<'a> {
    ctx: &'a Ctx,
    known: HashMap<Uuid, String>,
}

impl<'a> Names<'a> {
    fn new(ctx: &'a Ctx) -> Self {
        Names {
            ctx,
            known: HashMap::new(),
        }
    }

    async fn of(&mut self, id: Uuid) -> String {
        if let Some(name) = self.known.get(&id) {
            return name.clone();
        }
        let name = match self.ctx.client.professional_with_devices(id).await {
            Ok((p, _)) => p.display_name,
            Err(_) => ids::short(&id),
        };
        self.known.insert(id, name.clone());
        name
    }
}

/// How long is left to accept a consult, and whether it is overdue.
fn time_left(c: &Consult, now: SystemTime) -> (String, bool) {
    match c.respond_by {
        Some(by) if by < now => (format!("overdue {}", time::relative(by, now)), true),
        Some(by) => (time::relative(by, now), false),
        None => (String::new(), false),
    }
}

fn owner_oin(c: &Consult) -> &str {
    c.participants
        .iter()
        .find(|p| p.owner && p.professional == c.owner)
        .map_or("", |p| p.organisation_oin.as_str())
}

pub(crate) async fn inbox(ctx: &Ctx) -> Result<()> {
    let mut requests = ctx.client.list_consults(ListScope::Inbox).await?;
    // Most urgent first; then whichever must be accepted soonest.
    let rank = |u: Urgency| match u {
        Urgency::Acute => 0,
        Urgency::Soon => 1,
        Urgency::Normal => 2,
    };
    requests.sort_by_key(|c| (rank(c.urgency), c.respond_by));
    remember(ctx, &[], &requests.iter().map(|c| c.id).collect::<Vec<_>>());
    let now = SystemTime::now();
    let mut names = Names::new(ctx);
    let mut rows = Vec::new();
    for c in &requests {
        let (left, overdue) = time_left(c, now);
        let from = format!("{} ({})", names.of(c.owner).await, owner_oin(c));
        let addressed = if c.addressed == Some(ctx.me()) {
            "you"
        } else {
            "pool"
        };
        rows.push((c, left, overdue, from, addressed));
    }
    let value = json!({"requests": requests.iter().map(json::consult).collect::<Vec<_>>()});
    ctx.out.show(&value, |out| {
        if rows.is_empty() {
            return "no requests waiting for you".into();
        }
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|(c, left, overdue, from, addressed)| {
                let urgency = text::urgency(c.urgency);
                vec![
                    ids::short(&c.id),
                    if c.urgency == Urgency::Acute {
                        out.warn(urgency)
                    } else {
                        urgency.into()
                    },
                    if *overdue {
                        out.warn(left)
                    } else {
                        left.clone()
                    },
                    text::expertise(c.expertise).into(),
                    (*addressed).into(),
                    from.clone(),
                    c.question.clone(),
                ]
            })
            .collect();
        format!(
            "{} waiting\n{}",
            out.bold(&format!(
                "{} request{}",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            )),
            out.table(
                &[
                    "CONSULT",
                    "URGENCY",
                    "TIME LEFT",
                    "EXPERTISE",
                    "TO",
                    "FROM",
                    "QUESTION"
                ],
                &table
            )
        )
    });
    Ok(())
}

fn matches(state: ConsultState, filter: StateFilter) -> bool {
    matches!(
        (state, filter),
        (ConsultState::Requested, StateFilter::Requested)
            | (ConsultState::Accepted, StateFilter::Accepted)
            | (ConsultState::Declined, StateFilter::Declined)
            | (ConsultState::Expired, StateFilter::Expired)
            | (ConsultState::Suspended(_), StateFilter::Suspended)
            | (ConsultState::Closed(_), StateFilter::Closed)
    )
}

pub(crate) async fn list(ctx: &Ctx, state: Option<StateFilter>) -> Result<()> {
    let mut all = ctx.client.list_consults(ListScope::Owned).await?;
    for c in ctx.client.list_consults(ListScope::Participating).await? {
        if !all.iter().any(|o| o.id == c.id) {
            all.push(c);
        }
    }
    all.retain(|c| state.is_none_or(|s| matches(c.state, s)));
    all.sort_by_key(|c| std::cmp::Reverse(c.id));
    remember(
        ctx,
        &all.iter().filter_map(|c| c.family).collect::<Vec<_>>(),
        &all.iter().map(|c| c.id).collect::<Vec<_>>(),
    );
    let me = ctx.me();
    let value = json!({"consults": all.iter().map(json::consult).collect::<Vec<_>>()});
    ctx.out.show(&value, |out| {
        if all.is_empty() {
            return "no consults".into();
        }
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|c| {
                let state = text::state(c.state);
                vec![
                    ids::short(&c.id),
                    if matches!(c.state, ConsultState::Suspended(_)) {
                        out.warn(&state)
                    } else {
                        state
                    },
                    if c.owner == me { "owner" } else { "specialist" }.into(),
                    text::expertise(c.expertise).into(),
                    c.question.clone(),
                ]
            })
            .collect();
        out.table(&["CONSULT", "STATE", "YOU", "EXPERTISE", "QUESTION"], &rows)
    });
    Ok(())
}

pub(crate) async fn show(ctx: &Ctx, given: &str) -> Result<()> {
    let id = consult_id(ctx, given).await?;
    let c = ctx.client.consult(id).await?;
    let mut names = Names::new(ctx);
    let mut people = Vec::new();
    for p in &c.participants {
        people.push((names.of(p.professional).await, p));
    }
    let now = SystemTime::now();
    ctx.out.show(&json::consult(&c), |out| {
        let mut text = format!(
            "{} {}\n  {}\n  expertise   {} ({})\n  state       {}",
            out.bold("consult"),
            c.id,
            c.question,
            text::expertise(c.expertise),
            text::urgency(c.urgency),
            text::state(c.state)
        );
        if let Some(family) = c.family {
            text.push_str(&format!(
                "\n  family      {family} ({} concerned)",
                c.concerned.len()
            ));
        }
        if let Some(ground) = c.ground {
            text.push_str(&format!("\n  basis       {}", text::ground(ground)));
            if let LegalGround::Consent(consent) = ground {
                text.push_str(&format!(" {}", ids::short(&consent)));
            }
            if c.flagged_for_review {
                text.push_str(" (without consent: flagged for review)");
            }
            if !c.justification.is_empty() {
                text.push_str(&format!("\n              \"{}\"", c.justification));
            }
        }
        if c.state == ConsultState::Requested
            && let Some(by) = c.respond_by
        {
            let (left, overdue) = time_left(&c, now);
            let left = if overdue { out.warn(&left) } else { left };
            text.push_str(&format!("\n  respond by  {} ({left})", time::absolute(by)));
        }
        text.push_str(&format!("\n{}", out.bold("participants")));
        for (name, p) in &people {
            text.push_str(&format!(
                "\n  {:<24} {}  {}{}",
                name,
                p.organisation_oin,
                format!("{:?}", p.status).to_lowercase(),
                if p.owner { ", owner" } else { "" }
            ));
        }
        text
    });
    Ok(())
}

pub(crate) async fn accept(ctx: &Ctx, given: &str) -> Result<()> {
    let id = consult_id(ctx, given).await?;
    // The device is registered (with key packages) before the accept, so
    // the owner's device can add it to the thread at once.
    ctx.device().await?;
    let c = ctx.client.accept_consult(id).await.map_err(|err| {
        let err = CliError::from(err);
        if err.class == Class::Conflict {
            err.hint("a colleague accepted it first: it is theirs now")
        } else {
            err
        }
    })?;
    ctx.out.show(&json::consult(&c), |_| {
        format!(
            "accepted consult {}: \"{}\"\nthe contact person's device adds yours to the thread; then `samenop read {}`",
            ids::short(&c.id),
            c.question,
            ids::short(&c.id)
        )
    });
    Ok(())
}

pub(crate) async fn decline(
    ctx: &Ctx,
    given: &str,
    reason: DeclineArg,
    note: Option<&str>,
) -> Result<()> {
    let id = consult_id(ctx, given).await?;
    let reason = match reason {
        DeclineArg::NoCapacity => DeclineReason::NoCapacity,
        DeclineArg::OutsideExpertise => DeclineReason::OutsideExpertise,
        DeclineArg::ConflictOfInterest => DeclineReason::ConflictOfInterest,
        DeclineArg::Other => DeclineReason::Other,
    };
    if reason == DeclineReason::Other && note.is_none_or(str::is_empty) {
        return Err(CliError::usage("--reason other needs a --note saying why"));
    }
    let after = ctx
        .client
        .decline_consult(id, reason, note.unwrap_or_default())
        .await?;
    let value = json!({"consult_id": id.to_string(), "declined": true, "consult": after.as_ref().map(json::consult)});
    ctx.out
        .show(&value, |_| format!("declined consult {}", ids::short(&id)));
    Ok(())
}

/// A legal basis from the command line: a consent, or a ground without
/// consent with its justification.
async fn basis_from(ctx: &Ctx, args: &BasisArgs, family: Option<Uuid>) -> Result<LegalBasis> {
    match (&args.consent, args.ground) {
        (Some(consent), None) => {
            let consent = match (Uuid::try_parse(consent), family) {
                (Ok(id), _) => id,
                (Err(_), Some(family)) => {
                    let known: Vec<Uuid> = ctx
                        .client
                        .list_consents(family, true)
                        .await?
                        .iter()
                        .map(|c| c.id)
                        .collect();
                    ids::resolve(consent, &known, "consent")?
                }
                (Err(_), None) => {
                    return Err(CliError::usage("give the consent's whole id"));
                }
            };
            let mut basis = LegalBasis::consent(consent);
            basis.safety_sensitive = args.safety_sensitive;
            Ok(basis)
        }
        (None, Some(ground)) => Ok(LegalBasis {
            ground: match ground {
                GroundArg::VeiligThuisReport => LegalGround::VeiligThuisReport,
                GroundArg::ChildProtectionBoardRequest => LegalGround::ChildProtectionBoardRequest,
                GroundArg::SupervisionOrder => LegalGround::SupervisionOrder,
                GroundArg::ConflictOfDuties => LegalGround::ConflictOfDuties,
            },
            justification: args.justification.clone().unwrap_or_default(),
            safety_sensitive: args.safety_sensitive,
        }),
        _ => Err(CliError::usage(
            "a family consult rests on --consent CONSENT, or on --ground … --justification …",
        )),
    }
}

/// Members given by number (as `samenop family show` lists them) or id.
pub(crate) async fn members(ctx: &Ctx, family: Uuid, given: &[String]) -> Result<Vec<Uuid>> {
    let f = ctx.client.family(family).await?;
    let all: Vec<Uuid> = f.members.iter().map(|m| m.id).collect();
    given
        .iter()
        .map(|g| match g.parse::<usize>() {
            Ok(n) if n >= 1 && n <= all.len() => Ok(all[n - 1]),
            Ok(n) => Err(CliError::usage(format!(
                "the family has {} members; there is no member {n}",
                all.len()
            ))),
            Err(_) => ids::resolve(g, &all, "member"),
        })
        .collect()
}

pub(crate) async fn open(ctx: &Ctx, args: OpenArgs) -> Result<()> {
    let about = if args.anonymous {
        About::Anonymous
    } else {
        let Some(given) = &args.family else {
            return Err(CliError::usage("give --family FAMILY, or --anonymous"));
        };
        let family = family_id(ctx, given).await?;
        let concerned = members(ctx, family, &args.concerned).await?;
        if concerned.is_empty() {
            return Err(CliError::usage(
                "name the members the question is about with --concerned (numbers from `samenop family show`)",
            ));
        }
        About::Family {
            family,
            concerned,
            basis: basis_from(ctx, &args.basis, Some(family)).await?,
        }
    };
    let urgency = match args.urgency {
        UrgencyArg::Acute => Urgency::Acute,
        UrgencyArg::Soon => Urgency::Soon,
        UrgencyArg::Normal => Urgency::Normal,
    };
    let opened = ctx
        .client
        .open_consult(&NewConsult {
            about,
            question: args.question,
            expertise: args.expertise,
            urgency,
            respond_by: None,
            specialist: args.to,
        })
        .await
        .map_err(|err| {
            let err = CliError::from(err);
            if err.class == Class::Precondition && err.message.contains("consent") {
                err.hint(text::HINT_CONSENT)
            } else {
                err
            }
        })?;
    remember(
        ctx,
        &opened.family.into_iter().collect::<Vec<_>>(),
        &[opened.id],
    );
    // The thread's group is made at once, by this device.
    ctx.device().await?.create_thread(opened.id).await?;
    ctx.out.show(&json::consult(&opened), |_| {
        format!(
            "opened consult {} ({}), {} — {}",
            ids::short(&opened.id),
            text::expertise(opened.expertise),
            match args.to {
                Some(_) => "sent to the specialist",
                None => "sent to the expertise's pool",
            },
            opened
                .respond_by
                .map(|by| format!("to be accepted {}", time::relative(by, SystemTime::now())))
                .unwrap_or_default()
        )
    });
    Ok(())
}

/// Brings the thread's members in line with the consult, when this
/// device is in its group (owner's changes; best effort: `watch` and the
/// next `send` do it too).
async fn resync(ctx: &Ctx, id: Uuid) {
    if let Ok(device) = ctx.device().await
        && let Err(err) = device.sync_members(id).await
    {
        ctx.out
            .progress(&format!("the thread's members are not in line yet: {err}"));
        ctx.out.progress_done();
    }
}

pub(crate) async fn invite(
    ctx: &Ctx,
    given: &str,
    specialist: Uuid,
    expertise: Expertise,
) -> Result<()> {
    let id = consult_id(ctx, given).await?;
    let c = ctx
        .client
        .invite_specialist(id, specialist, expertise)
        .await?;
    ctx.out.show(&json::consult(&c), |_| {
        format!(
            "invited {specialist} to consult {}; they are added to the thread when they accept",
            ids::short(&id)
        )
    });
    Ok(())
}

pub(crate) async fn remove(ctx: &Ctx, given: &str, professional: Uuid) -> Result<()> {
    let id = consult_id(ctx, given).await?;
    let c = ctx.client.remove_participant(id, professional).await?;
    resync(ctx, id).await;
    ctx.out.show(&json::consult(&c), |_| {
        format!(
            "removed {professional} from consult {}: they read nothing that follows",
            ids::short(&id)
        )
    });
    Ok(())
}

pub(crate) async fn basis(ctx: &Ctx, given: &str, args: BasisArgs) -> Result<()> {
    let id = consult_id(ctx, given).await?;
    let family = ctx.client.consult(id).await?.family;
    let basis = basis_from(ctx, &args, family).await?;
    let c = ctx.client.change_legal_basis(id, &basis).await?;
    resync(ctx, id).await;
    ctx.out.show(&json::consult(&c), |_| {
        format!(
            "consult {} now rests on {}: {}",
            ids::short(&id),
            text::ground(basis.ground),
            text::state(c.state)
        )
    });
    Ok(())
}

pub(crate) async fn close(ctx: &Ctx, given: &str, outcome: OutcomeArg) -> Result<()> {
    let id = consult_id(ctx, given).await?;
    let outcome = match outcome {
        OutcomeArg::AdviceGiven => Outcome::AdviceGiven,
        OutcomeArg::JointApproach => Outcome::JointApproach,
        OutcomeArg::Referred => Outcome::Referred,
        OutcomeArg::Withdrawn => Outcome::Withdrawn,
        OutcomeArg::BasisEnded => Outcome::BasisEnded,
    };
    let c = ctx.client.close_consult(id, outcome).await?;
    resync(ctx, id).await;
    ctx.out.show(&json::consult(&c), |_| {
        format!(
            "closed consult {}: {}",
            ids::short(&id),
            text::outcome(outcome)
        )
    });
    Ok(())
}

pub(crate) async fn leave(ctx: &Ctx, given: &str) -> Result<()> {
    let id = consult_id(ctx, given).await?;
    ctx.client.leave_consult(id).await?;
    ctx.out
        .show(&json!({"consult_id": id.to_string(), "left": true}), |_| {
            format!("you left consult {}", ids::short(&id))
        });
    Ok(())
}

pub(crate) async fn report(ctx: &Ctx, from: Option<&str>, to: Option<&str>) -> Result<()> {
    let now = SystemTime::now();
    let end = match to {
        Some(text) => time::parse_moment(text, now)?,
        None => now,
    };
    let start = match from {
        Some(text) => time::parse_moment(text, now)?,
        None => end - Duration::from_secs(30 * 86_400),
    };
    let rows = ctx.client.consult_report(start, end).await?;
    let span = |d: Option<Duration>| d.and_then(time::span).unwrap_or_else(|| "-".into());
    let value = json!({
        "from": time::rfc3339(start),
        "to": time::rfc3339(end),
        "rows": rows.iter().map(|r| json!({
            "expertise": text::expertise(r.expertise),
            "urgency": text::urgency(r.urgency),
            "consults": r.consults,
            "accepted": r.accepted,
            "accepted_in_time": r.accepted_in_time,
            "accepted_in_time_share": r.accepted_in_time_share,
            "median_time_to_accept_seconds": r.median_time_to_accept.map(|d| d.as_secs()),
            "p90_time_to_accept_seconds": r.p90_time_to_accept.map(|d| d.as_secs()),
            "answered": r.answered,
            "expired": r.expired,
        })).collect::<Vec<_>>(),
    });
    ctx.out.show(&value, |out| {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    text::expertise(r.expertise).into(),
                    text::urgency(r.urgency).into(),
                    r.consults.to_string(),
                    format!("{:.0}%", r.accepted_in_time_share * 100.0),
                    span(r.median_time_to_accept),
                    span(r.p90_time_to_accept),
                    r.expired.to_string(),
                ]
            })
            .collect();
        format!(
            "consults requested {} to {}\n{}",
            time::absolute(start),
            time::absolute(end),
            out.table(
                &[
                    "EXPERTISE",
                    "URGENCY",
                    "CONSULTS",
                    "IN TIME",
                    "MEDIAN",
                    "P90",
                    "EXPIRED"
                ],
                &table
            )
        )
    });
    Ok(())
}
