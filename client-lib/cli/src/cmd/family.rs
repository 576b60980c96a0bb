//! Families and their consent (contact persons), and a family's export
//! and erasure (its rights: privacy officers and contact persons).

use std::time::SystemTime;

use samenop_client::{
    family::{AgeBand, ConsentRequest, Family, MemberAge, MemberRole, NewMember, RevocationReason},
    rights::ErasureReason,
};
use serde_json::json;

use super::{consults::members, family_id, json, remember};
use crate::{
    cli::{ConsentCommand, ErasureArg, FamilyCommand, RevocationArg},
    context::Ctx,
    error::{Class, CliError, Result},
    ids, text, time,
};

/// A member as typed: `ROLE:AGE`, e.g. `parent:16+`, `child:12-15`,
/// `child:2015-04`.
fn member(text: &str) -> Result<NewMember> {
    let bad = || {
        CliError::usage(format!(
            "{text:?} is not ROLE:AGE (roles parent, child, other; ages under-12, 12-15, 16+, or a birth month 2015-04)"
        ))
    };
    let (role, age) = text.split_once(':').ok_or_else(bad)?;
    let role = match role {
        "parent" | "carer" => MemberRole::ParentOrCarer,
        "child" => MemberRole::Child,
        "other" => MemberRole::Other,
        _ => return Err(bad()),
    };
    let age = match age {
        "under-12" | "<12" => MemberAge::Band(AgeBand::Under12),
        "12-15" => MemberAge::Band(AgeBand::From12To15),
        "16+" | "adult" => MemberAge::Band(AgeBand::From16),
        born => {
            let (year, month) = born.split_once('-').ok_or_else(bad)?;
            MemberAge::Born {
                year: year.parse().map_err(|_| bad())?,
                month: month.parse().map_err(|_| bad())?,
            }
        }
    };
    Ok(NewMember { role, age })
}

fn show_family(ctx: &Ctx, f: &Family) {
    ctx.out.show(&json::family(f), |out| {
        let rows: Vec<Vec<String>> = f
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                vec![
                    (i + 1).to_string(),
                    text::member_role(m.role).into(),
                    text::age_band(m.age_band).into(),
                    m.id.to_string(),
                ]
            })
            .collect();
        format!(
            "{} {}\n  contact person {} ({})\n{}",
            out.bold("family"),
            f.id,
            f.contact_person.professional,
            f.contact_person.organisation_oin,
            out.table(&["#", "ROLE", "AGE", "MEMBER"], &rows)
        )
    });
}

pub(crate) async fn family(ctx: &Ctx, command: FamilyCommand) -> Result<()> {
    match command {
        FamilyCommand::Register { members } => {
            let members = members
                .iter()
                .map(|m| member(m))
                .collect::<Result<Vec<_>>>()?;
            let f = ctx.client.register_family(&members).await?;
            remember(ctx, &[f.id], &[]);
            show_family(ctx, &f);
        }
        FamilyCommand::Show { family } => {
            let id = family_id(ctx, &family).await?;
            let f = ctx.client.family(id).await?;
            remember(ctx, &[f.id], &[]);
            show_family(ctx, &f);
        }
        FamilyCommand::Handover { family, to } => {
            let id = family_id(ctx, &family).await?;
            let (f, moved) = ctx.client.hand_over_family(id, to).await?;
            let value = json!({"family": json::family(&f), "moved_consult_ids": moved.iter().map(ToString::to_string).collect::<Vec<_>>()});
            ctx.out.show(&value, |_| {
                format!(
                    "family {} is now led by {to}, with its {} consult(s); you see it no more",
                    ids::short(&id),
                    moved.len()
                )
            });
        }
        FamilyCommand::Export { family } => {
            let id = family_id(ctx, &family).await?;
            let export = ctx.client.export_family_data(id).await?;
            let value = json!({
                "family": json::family(&export.family),
                "consents": export.consents.iter().map(json::consent).collect::<Vec<_>>(),
                "consults": export.consults.iter().map(json::consult).collect::<Vec<_>>(),
                "threads": export.threads.iter().map(|t| json!({
                    "consult_id": t.consult.to_string(),
                    "messages": t.messages,
                    "attachments": t.attachments,
                    "stored_bytes": t.stored_bytes,
                })).collect::<Vec<_>>(),
                "audit_events": export.audit.len(),
            });
            // An export is for keeping: JSON either way.
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
        FamilyCommand::Erase {
            family,
            reason,
            evidence,
            confirm,
        } => {
            let id = family_id(ctx, &family).await?;
            if confirm != id {
                return Err(CliError::usage(format!(
                    "--confirm must repeat the family's whole id ({id})"
                )));
            }
            let reason = match reason {
                ErasureArg::DataSubjectRequest => ErasureReason::DataSubjectRequest,
                ErasureArg::RegisteredInError => ErasureReason::RegisteredInError,
                ErasureArg::NoLongerNeeded => ErasureReason::NoLongerNeeded,
            };
            let erased = ctx
                .client
                .erase_family(id, reason, &evidence)
                .await
                .map_err(|err| {
                    let err = CliError::from(err);
                    if err.class == Class::Precondition {
                        err.hint(
                            "close its consults first: `samenop consults`, then `samenop close …`",
                        )
                    } else {
                        err
                    }
                })?;
            let value = json!({
                "family_id": id.to_string(),
                "consents_erased": erased.consents,
                "consults_erased": erased.consults,
                "audit_event_id": erased.audit_event.to_string(),
            });
            ctx.out.show(&value, |_| {
                format!(
                    "family {id} erased: {} consent(s), {} consult(s) and their threads; the audit trail keeps the pseudonym only",
                    erased.consents, erased.consults
                )
            });
        }
    }
    Ok(())
}

pub(crate) async fn consent(ctx: &Ctx, command: ConsentCommand) -> Result<()> {
    match command {
        ConsentCommand::Record {
            family,
            concerned,
            given_by,
            expertise,
            organisations,
            until,
            evidence,
        } => {
            let id = family_id(ctx, &family).await?;
            let request = ConsentRequest {
                concerned: members(ctx, id, &concerned).await?,
                given_by: members(ctx, id, &given_by).await?,
                expertise,
                organisations,
                valid_from: None,
                valid_until: time::parse_moment(&until, SystemTime::now())?,
                evidence_reference: evidence,
            };
            let recorded = ctx
                .client
                .record_consent(id, &request)
                .await
                .map_err(|err| {
                    let err = CliError::from(err);
                    if err.class == Class::Precondition {
                        err.hint(text::HINT_WHO_CONSENTS)
                    } else {
                        err
                    }
                })?;
            ctx.out.show(&json::consent(&recorded), |_| {
                format!(
                    "consent {} recorded for family {}, valid {}",
                    ids::short(&recorded.id),
                    ids::short(&id),
                    recorded
                        .valid_until
                        .map(|t| format!("until {}", time::absolute(t)))
                        .unwrap_or_default()
                )
            });
        }
        ConsentCommand::Revoke {
            consent,
            family,
            reason,
            evidence,
        } => {
            let family = family_id(ctx, &family).await?;
            let known: Vec<uuid::Uuid> = ctx
                .client
                .list_consents(family, true)
                .await?
                .iter()
                .map(|c| c.id)
                .collect();
            let consent = ids::resolve(&consent, &known, "consent")?;
            let reason = match reason {
                RevocationArg::Withdrawn => RevocationReason::Withdrawn,
                RevocationArg::RecordedInError => RevocationReason::RecordedInError,
            };
            let (revoked, suspended) = ctx
                .client
                .revoke_consent(consent, reason, evidence.as_deref())
                .await?;
            let value = json!({
                "consent": json::consent(&revoked),
                "suspended_consult_ids": suspended.iter().map(ToString::to_string).collect::<Vec<_>>(),
            });
            ctx.out.show(&value, |out| {
                let mut text = format!("consent {} revoked", ids::short(&consent));
                if !suspended.is_empty() {
                    text.push_str(&format!(
                        "; {}",
                        out.warn(&format!(
                            "{} consult(s) suspended at once: {}",
                            suspended.len(),
                            suspended
                                .iter()
                                .map(ids::short)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    ));
                }
                text
            });
        }
        ConsentCommand::List { family, all } => {
            let id = family_id(ctx, &family).await?;
            let f = ctx.client.family(id).await?;
            let consents = ctx.client.list_consents(id, all).await?;
            let number = |m: &uuid::Uuid| {
                f.members.iter().position(|x| x.id == *m).map_or_else(
                    || ids::short(m),
                    |i| format!("{} ({})", i + 1, text::age_band(f.members[i].age_band)),
                )
            };
            let value = json!({"consents": consents.iter().map(json::consent).collect::<Vec<_>>()});
            ctx.out.show(&value, |out| {
                if consents.is_empty() {
                    return "no consents".into();
                }
                let rows: Vec<Vec<String>> = consents
                    .iter()
                    .map(|c| {
                        vec![
                            ids::short(&c.id),
                            json::consent_status(c.status).replace('_', " "),
                            c.concerned
                                .iter()
                                .map(number)
                                .collect::<Vec<_>>()
                                .join(", "),
                            c.given_by.iter().map(number).collect::<Vec<_>>().join(", "),
                            c.expertise
                                .iter()
                                .map(|e| text::expertise(*e))
                                .collect::<Vec<_>>()
                                .join(", "),
                            c.valid_until.map(time::absolute).unwrap_or_default(),
                        ]
                    })
                    .collect();
                out.table(
                    &[
                        "CONSENT",
                        "STATUS",
                        "CONCERNS",
                        "GIVEN BY",
                        "EXPERTISE",
                        "UNTIL",
                    ],
                    &rows,
                )
            });
        }
    }
    Ok(())
}
