//! A consult's encrypted thread: `read`, `send`, `download`. Everything is
//! decrypted and encrypted on this machine, by the profile's device.

use std::{path::Path, sync::Arc, time::SystemTime};

use samenop_client::{
    ClientError,
    mls::{Messenger, NewAttachment, ThreadMessage},
};
use serde_json::json;
use uuid::Uuid;

use super::{consult_id, json};
use crate::{
    context::Ctx,
    error::{Class, CliError, Result},
    ids, text, time,
};

/// The device, caught up with the consult's thread: the owner's device
/// first brings the members in line (adding a specialist who accepted).
async fn caught_up(ctx: &Ctx, consult: Uuid) -> Result<&Messenger> {
    let device = ctx.device().await?;
    let c = ctx.client.consult(consult).await?;
    if c.owner == ctx.me() {
        device
            .create_thread(consult)
            .await
            .or_else(|err| match err {
                // Made before, by this or another of the owner's devices.
                ClientError::FailedPrecondition(_) => Ok(()),
                other => Err(other),
            })?;
        if let Err(err) = device.sync_members(consult).await {
            ctx.out
                .progress(&format!("the thread's members are not in line yet: {err}"));
            ctx.out.progress_done();
        }
    }
    device.catch_up(consult).await.map_err(not_member)?;
    Ok(device)
}

fn not_member(err: ClientError) -> CliError {
    let not_in_group =
        matches!(&err, ClientError::FailedPrecondition(m) if m.contains("not in consult"));
    let err = CliError::from(err);
    if not_in_group {
        err.hint(text::HINT_NOT_A_MEMBER)
    } else {
        err
    }
}

pub(crate) async fn read(ctx: &Ctx, given: &str) -> Result<()> {
    let consult = consult_id(ctx, given).await?;
    let device = caught_up(ctx, consult).await?;
    let messages = device.messages(consult).await?;
    let mut names = std::collections::HashMap::new();
    for m in &messages {
        if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(m.sender_professional)
        {
            let name = match ctx
                .client
                .professional_with_devices(m.sender_professional)
                .await
            {
                Ok((p, _)) => format!("{} ({})", p.display_name, p.organisation_oin),
                Err(_) => ids::short(&m.sender_professional),
            };
            slot.insert(name);
        }
    }
    let value = json!({
        "consult_id": consult.to_string(),
        "messages": messages.iter().map(json::message).collect::<Vec<_>>(),
    });
    let now = SystemTime::now();
    ctx.out.show(&value, |out| {
        if messages.is_empty() {
            return format!("nothing in consult {}'s thread yet", ids::short(&consult));
        }
        let mut text = String::new();
        for m in &messages {
            let who = names
                .get(&m.sender_professional)
                .cloned()
                .unwrap_or_default();
            let when = m
                .posted_at
                .map(|t| format!("{}, {}", time::absolute(t), time::relative(t, now)))
                .unwrap_or_default();
            text.push_str(&format!(
                "{} {}{}  {}\n",
                out.dim(&format!("#{}", m.sequence)),
                out.bold(&who),
                if m.own { " (you)" } else { "" },
                out.dim(&when)
            ));
            if let Some(to) = m.reply_to {
                text.push_str(&format!("    {}\n", out.dim(&format!("in reply to #{to}"))));
            }
            for line in m.text.lines() {
                text.push_str(&format!("    {line}\n"));
            }
            for a in &m.attachments {
                text.push_str(&format!(
                    "    [attachment {} {} ({} bytes): samenop download {} {}]\n",
                    ids::short(&a.id),
                    a.name,
                    a.size,
                    ids::short(&consult),
                    ids::short(&a.id)
                ));
            }
        }
        text
    });
    Ok(())
}

/// A file's media type, by its extension.
fn media_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("odt") => "application/vnd.oasis.opendocument.text",
        _ => "application/octet-stream",
    }
}

pub(crate) async fn send(
    ctx: &Ctx,
    given: &str,
    text_arg: Option<&str>,
    file: Option<&Path>,
) -> Result<()> {
    if text_arg.is_none() && file.is_none() {
        return Err(CliError::usage("give a text to send, a --file, or both"));
    }
    let out = ctx.out;
    let consult = crate::retry::when_unavailable(out, || consult_id(ctx, given)).await?;
    let device = crate::retry::when_unavailable(out, || caught_up(ctx, consult)).await?;
    let bytes = match file {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            CliError::new(
                Class::InvalidInput,
                format!("cannot read {}: {e}", path.display()),
            )
        })?),
        None => None,
    };
    let name = file
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let attachments: Vec<NewAttachment<'_>> = match (&bytes, file) {
        (Some(bytes), Some(path)) => vec![NewAttachment {
            name: &name,
            media_type: media_type(path),
            bytes,
        }],
        _ => Vec::new(),
    };
    let progress: samenop_client::mls::Progress = Arc::new(move |sent, total| {
        let percent = (sent * 100).checked_div(total).unwrap_or(100);
        let filled = usize::try_from(percent / 5).unwrap_or(20);
        out.progress(&format!(
            "uploading [{}{}] {percent:>3}%  {sent}/{total} bytes",
            "#".repeat(filled),
            " ".repeat(20 - filled.min(20))
        ));
    });
    // A message an earlier send left unconfirmed (the server was gone, or
    // its answer was lost) goes first, under its own request id.
    if device.pending(consult).await? {
        let earlier = crate::retry::when_unavailable(out, || async {
            Ok(device.deliver_pending(consult).await?)
        })
        .await?;
        if let Some(earlier) = earlier {
            out.note(&crate::text::earlier_delivered(earlier));
        }
    }
    let text = text_arg.unwrap_or_default();
    let progress = (!attachments.is_empty()).then_some(progress);
    let attachments = &attachments;
    let sequence = crate::retry::when_unavailable(out, || {
        let progress = progress.clone();
        async move {
            // Waiting now means this send's own message is stored in the
            // outbox: it goes again under the same request id, so the
            // server keeps it once. Nothing waiting means nothing was
            // stored: the whole send may go again.
            if device.pending(consult).await? {
                return device
                    .deliver_pending(consult)
                    .await
                    .map_err(not_member)?
                    .ok_or_else(|| {
                        CliError::new(Class::Failure, "the message left the outbox unsent")
                    });
            }
            device
                .send_reporting(consult, text, None, attachments, progress)
                .await
                .map_err(not_member)
        }
    })
    .await
    .map_err(|err| {
        if err.class == Class::Precondition && err.hint.is_none() {
            err.hint(text::HINT_NO_POSTS)
        } else {
            err
        }
    })?;
    if !attachments.is_empty() {
        out.progress_done();
    }
    ctx.out.show(
        &json!({"consult_id": consult.to_string(), "sequence": sequence}),
        |_| {
            format!(
                "sent, encrypted, as message #{sequence} of consult {}",
                ids::short(&consult)
            )
        },
    );
    Ok(())
}

pub(crate) async fn download(
    ctx: &Ctx,
    given: &str,
    attachment: &str,
    out_path: Option<&Path>,
) -> Result<()> {
    let consult = consult_id(ctx, given).await?;
    let device = caught_up(ctx, consult).await?;
    let messages: Vec<ThreadMessage> = device.messages(consult).await?;
    let all: Vec<_> = messages.iter().flat_map(|m| m.attachments.iter()).collect();
    let ids_known: Vec<Uuid> = all.iter().map(|a| a.id).collect();
    let id = ids::resolve(attachment, &ids_known, "attachment")?;
    let Some(found) = all.iter().find(|a| a.id == id) else {
        return Err(CliError::new(
            Class::NotFound,
            format!("no attachment {id} in consult {consult}'s thread"),
        ));
    };
    let content = device.open_attachment(consult, found).await?;
    let path = out_path.map_or_else(
        || Path::new(".").join(Path::new(&found.name).file_name().unwrap_or_default()),
        Path::to_path_buf,
    );
    write_new(&path, &content).map_err(|e| {
        CliError::new(
            Class::Failure,
            format!("cannot write {}: {e}", path.display()),
        )
        .hint("give another --out (an existing file is never overwritten)")
    })?;
    ctx.out.show(
        &json!({"attachment_id": id.to_string(), "path": path, "size": content.len()}),
        |_| {
            format!(
                "saved {} ({} bytes), decrypted and checked",
                path.display(),
                content.len()
            )
        },
    );
    Ok(())
}

/// Writes a new file readable by its owner only; an existing one is left.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
