//! `samenop audit …`: your share of the audit trail, its verification and
//! its export.

use samenop_client::audit::{AuditEvent, AuditFilter, ObjectKind, Outcome};
use serde_json::json;

use super::{consult_id, family_id};
use crate::{
    cli::{AuditCommand, AuditFilterArgs},
    context::Ctx,
    error::Result,
    ids, time,
};

async fn filter(ctx: &Ctx, args: &AuditFilterArgs) -> Result<AuditFilter> {
    Ok(AuditFilter {
        family: match &args.family {
            Some(f) => Some(family_id(ctx, f).await?),
            None => None,
        },
        consult: match &args.consult {
            Some(c) => Some(consult_id(ctx, c).await?),
            None => None,
        },
        professional: args.professional,
        ..AuditFilter::default()
    })
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Allowed => "allowed",
        Outcome::Denied => "denied",
        Outcome::Failed => "failed",
    }
}

fn event_json(e: &AuditEvent) -> serde_json::Value {
    json!({
        "sequence": e.sequence,
        "id": e.id.to_string(),
        "action": e.action,
        "occurred_at": e.occurred_at.map(time::rfc3339),
        "outcome": outcome(e.outcome),
        "status": e.status_code,
        "reason": e.outcome_reason,
        "professional_id": e.actor.professional.map(|p| p.to_string()),
        "organisation_oin": e.actor.organisation_oin,
        "by_server": e.actor.by_server,
        "objects": e.objects.iter().map(|(kind, id)| json!({"kind": format!("{kind:?}").to_lowercase(), "id": id})).collect::<Vec<_>>(),
        "detail": e.detail,
    })
}

pub(crate) async fn run(ctx: &Ctx, command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Query(args) => {
            let filter = filter(ctx, &args).await?;
            let events = ctx.client.query_audit(&filter).await?;
            let value = json!({"events": events.iter().map(event_json).collect::<Vec<_>>()});
            ctx.out.show(&value, |out| {
                let rows: Vec<Vec<String>> = events
                    .iter()
                    .map(|e| {
                        let who = if e.actor.by_server {
                            "server".to_owned()
                        } else {
                            e.actor
                                .professional
                                .map(|p| format!("{} {}", ids::short(&p), e.actor.organisation_oin))
                                .unwrap_or_else(|| e.actor.organisation_oin.clone())
                        };
                        let consult = e
                            .objects
                            .iter()
                            .find(|(kind, _)| *kind == ObjectKind::Consult)
                            .map(|(_, id)| id.chars().take(8).collect::<String>())
                            .unwrap_or_default();
                        let verdict = outcome(e.outcome);
                        vec![
                            e.sequence.to_string(),
                            e.occurred_at.map(time::absolute).unwrap_or_default(),
                            who,
                            e.action.trim_start_matches("samenop.v1.").to_owned(),
                            consult,
                            if e.outcome == Outcome::Allowed {
                                verdict.into()
                            } else {
                                out.warn(verdict)
                            },
                        ]
                    })
                    .collect();
                format!(
                    "{} events\n{}",
                    events.len(),
                    out.table(
                        &["#", "WHEN (UTC)", "WHO", "ACTION", "CONSULT", "OUTCOME"],
                        &rows
                    )
                )
            });
        }
        AuditCommand::Verify => {
            let v = ctx.client.verify_audit().await?;
            let value = json!({
                "ok": v.ok,
                "events_checked": v.events_checked,
                "last_sequence": v.last_sequence,
                "checkpoints_checked": v.checkpoints_checked,
                "first_broken": v.first_broken,
                "fault": v.fault,
                "detail": v.detail,
            });
            ctx.out.show(&value, |out| {
                if v.ok {
                    format!(
                        "the audit trail is intact: {} events and {} signed checkpoints verified, last event {}",
                        v.events_checked, v.checkpoints_checked, v.last_sequence
                    )
                } else {
                    out.warn(&format!("the audit trail is BROKEN: {}", v.detail))
                }
            });
            if !v.ok {
                return Err(crate::error::CliError::new(
                    crate::error::Class::Failure,
                    format!("the audit trail is broken: {}", v.detail),
                ));
            }
        }
        AuditCommand::Export(args) => {
            let filter = filter(ctx, &args).await?;
            let export = ctx.client.export_audit_json(&filter).await?;
            // The export is JSON lines already, for people and scripts alike.
            print!("{}", export.json_lines);
            if let Some((sequence, key)) = export.checkpoint {
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                eprintln!("signed checkpoint at event {sequence}, audit key {hex}");
            }
        }
    }
    Ok(())
}
