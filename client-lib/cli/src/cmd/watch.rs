//! `samenop watch`: what happens, as it happens. One subscription of the
//! profile's device; each event is shown (messages decrypted) and its
//! cursor kept in the profile's state directory, so a dropped connection or
//! a server restart resumes after the last event shown, with nothing
//! missed or repeated. The device keeps the thread's groups in line as the
//! library's `Messenger::follow` says. It holds the device only while it
//! handles an event, so other commands of the profile can use it between
//! events.

use std::time::Duration;

use samenop_client::{
    ClientError,
    mls::{Event, EventKind},
};
use serde_json::json;

use super::json;
use crate::{
    context::{Ctx, open_device},
    error::Result,
    ids, text,
};

/// The cursor of the last event shown, in the state directory (shared
/// with `samenop inbox --web`: both follow the one device).
pub(crate) const CURSOR_FILE: &str = "watch-cursor";

fn saved_cursor(ctx: &Ctx) -> Option<String> {
    std::fs::read_to_string(ctx.state_file(CURSOR_FILE))
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
}

/// Keeps the cursor of the last event shown, whole or not at all.
fn save_cursor(ctx: &Ctx, cursor: &str) {
    let _ = ctx.write_state(CURSOR_FILE, cursor.as_bytes());
}

pub(crate) async fn run(ctx: &Ctx, from: Option<String>) -> Result<()> {
    let mut cursor = from.or_else(|| saved_cursor(ctx));
    let mut backoff = Duration::from_millis(250);
    if !ctx.out.json() {
        eprintln!("watching as {} (Ctrl-C stops)", ctx.name);
    }
    loop {
        let device = open_device(&ctx.client, &ctx.profile.state, &ctx.name).await?;
        let subscribed = device.subscribe(cursor.as_deref()).await;
        // Held only while an event is handled: other commands of this
        // profile may use the device meanwhile.
        drop(device);
        let mut events = match subscribed {
            Ok(events) => events,
            Err(ClientError::OutOfRange(message)) => {
                notice(
                    ctx,
                    &format!("{message}; starting from the oldest event kept"),
                );
                cursor = None;
                continue;
            }
            Err(ClientError::Unavailable(_)) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
            Err(other) => return Err(other.into()),
        };
        loop {
            match events.next().await {
                Ok(Some(event)) => {
                    backoff = Duration::from_millis(250);
                    handle(ctx, &event).await?;
                    save_cursor(ctx, &event.cursor);
                    cursor = Some(event.cursor);
                }
                // The server went away (restart, shutdown, dropped
                // connection): resume from the last event shown.
                Ok(None) | Err(ClientError::Unavailable(_) | ClientError::Server { .. }) => {
                    notice(ctx, "connection lost; resuming");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    break;
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
}

fn notice(ctx: &Ctx, what: &str) {
    if !ctx.out.json() {
        eprintln!("{}", ctx.out.dim(what));
    }
}

/// Shows one event, and does what falls to this device.
async fn handle(ctx: &Ctx, event: &Event) -> Result<()> {
    let device = open_device(&ctx.client, &ctx.profile.state, &ctx.name).await?;
    match &event.kind {
        EventKind::Consult(change) => {
            let value = json!({"cursor": event.cursor, "kind": "consult", "event": json::consult_event(change)});
            ctx.out.event(&value, |out| {
                let state = text::state(change.state);
                let said = text::change(change.change);
                // "suspended (consent revoked)" says both the change and the
                // state; "specialist invited (accepted)" needs both.
                let mut line = format!("{} ", out.bold(&ids::short(&change.consult)));
                if state.starts_with(said) {
                    line.push_str(&state);
                } else {
                    line.push_str(&format!("{said} {}", out.dim(&format!("({state})"))));
                }
                if let Some(view) = &change.view {
                    line.push_str(&format!(
                        " — {} ({})",
                        view.question,
                        text::expertise(view.expertise)
                    ));
                }
                line
            });
            match device.follow(change).await {
                Ok(Some(membership))
                    if !membership.added.is_empty() || !membership.removed.is_empty() =>
                {
                    notice(
                        ctx,
                        &format!(
                            "  thread of {}: {} device(s) added, {} removed",
                            ids::short(&change.consult),
                            membership.added.len(),
                            membership.removed.len()
                        ),
                    );
                }
                Ok(_) => {}
                Err(err) => notice(
                    ctx,
                    &format!("  the thread's members are not in line yet: {err}"),
                ),
            }
        }
        EventKind::ThreadEntry(entry) => {
            let Ok(consult) = uuid::Uuid::try_parse(&entry.consult_id) else {
                return Ok(());
            };
            let read = device.apply(consult, vec![entry.clone()]).await;
            show_messages(ctx, consult, &event.cursor, read).await;
        }
        EventKind::Welcome { consult, .. } => {
            let value = json!({"cursor": event.cursor, "kind": "welcome", "consult_id": consult.to_string()});
            ctx.out.event(&value, |out| {
                format!(
                    "{} you were added to the thread",
                    out.bold(&ids::short(consult))
                )
            });
            let read = device.catch_up(*consult).await;
            show_messages(ctx, *consult, &event.cursor, read).await;
        }
        _ => {}
    }
    Ok(())
}

async fn show_messages(
    ctx: &Ctx,
    consult: uuid::Uuid,
    cursor: &str,
    read: samenop_client::Result<Vec<samenop_client::mls::ThreadMessage>>,
) {
    match read {
        Ok(messages) => {
            for m in messages {
                let from = match ctx
                    .client
                    .professional_with_devices(m.sender_professional)
                    .await
                {
                    Ok((p, _)) => p.display_name,
                    Err(_) => ids::short(&m.sender_professional),
                };
                let value =
                    json!({"cursor": cursor, "kind": "message", "message": json::message(&m)});
                ctx.out.event(&value, |out| {
                    format!(
                        "{} {} {}",
                        out.bold(&ids::short(&consult)),
                        out.dim(&format!("#{} {from}:", m.sequence)),
                        m.text
                    )
                });
            }
        }
        Err(err) => notice(
            ctx,
            &format!(
                "  a message of {} is not readable here: {err}",
                ids::short(&consult)
            ),
        ),
    }
}
