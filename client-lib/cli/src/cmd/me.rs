//! Who you are: `whoami`, `specialists`, `availability`, `device …`.

use samenop_client::{Availability, Expertise};
use serde_json::json;

use super::json;
use crate::{
    cli::{AvailabilityArg, DeviceCommand},
    context::Ctx,
    error::{CliError, Result},
    text, time,
};

pub(crate) async fn whoami(ctx: &Ctx) -> Result<()> {
    let (me, devices) = ctx.client.professional_with_devices(ctx.me()).await?;
    let mut value = json::professional(&me);
    value["profile"] = json!(ctx.name);
    value["devices"] = json!(devices.iter().filter(|d| d.revoked_at.is_none()).count());
    ctx.out.show(&value, |out| {
        let roles: Vec<&str> = me.roles.iter().map(|r| text::role(*r)).collect();
        let mut text = format!(
            "{} ({}), organisation {}\n  profile {}",
            out.bold(&me.display_name),
            roles.join(", "),
            me.organisation_oin,
            ctx.name
        );
        if !me.expertise.is_empty() {
            let expertise: Vec<&str> = me.expertise.iter().map(|e| text::expertise(*e)).collect();
            text.push_str(&format!("\n  expertise {}", expertise.join(", ")));
        }
        if let Some(a) = me.availability {
            text.push_str(&format!("\n  {}", text::availability(a)));
        }
        text
    });
    Ok(())
}

pub(crate) async fn specialists(
    ctx: &Ctx,
    expertise: Option<Expertise>,
    available: bool,
) -> Result<()> {
    let found = ctx.client.list_specialists(expertise, available).await?;
    let value = json!({"specialists": found.iter().map(json::professional).collect::<Vec<_>>()});
    ctx.out.show(&value, |out| {
        if found.is_empty() {
            return "no specialists found".into();
        }
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|p| {
                vec![
                    p.id.to_string(),
                    p.display_name.clone(),
                    p.organisation_oin.clone(),
                    p.expertise
                        .iter()
                        .map(|e| text::expertise(*e))
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.availability.map(text::availability).unwrap_or("").into(),
                ]
            })
            .collect();
        out.table(&["ID", "NAME", "OIN", "EXPERTISE", "AVAILABILITY"], &rows)
    });
    Ok(())
}

pub(crate) async fn availability(ctx: &Ctx, value: AvailabilityArg) -> Result<()> {
    let availability = match value {
        AvailabilityArg::Available => Availability::Available,
        AvailabilityArg::Busy => Availability::Busy,
        AvailabilityArg::Away => Availability::Away,
    };
    let me = ctx
        .client
        .set_availability(availability)
        .await
        .map_err(|err| {
            let err = CliError::from(err);
            if err.class == crate::error::Class::NotAllowed {
                err.hint("only specialists have an availability")
            } else {
                err
            }
        })?;
    ctx.out.show(&json::professional(&me), |_| {
        format!(
            "you are {} for new requests{}",
            text::availability(availability),
            if availability == Availability::Away {
                " (you are left out of pool requests)"
            } else {
                ""
            }
        )
    });
    Ok(())
}

pub(crate) async fn device(ctx: &Ctx, command: DeviceCommand) -> Result<()> {
    match command {
        DeviceCommand::Register { label: _ } => {
            let device = ctx.device().await?;
            let id = device.device();
            ctx.out.show(&json!({"device_id": id.to_string()}), |_| {
                format!(
                    "this machine's device is {id} (its keys are in {})",
                    ctx.profile.state.display()
                )
            });
        }
        DeviceCommand::List => {
            let (_, devices) = ctx.client.professional_with_devices(ctx.me()).await?;
            let now = std::time::SystemTime::now();
            let value = json!({"devices": devices.iter().map(|d| json!({
                "id": d.id.to_string(),
                "label": d.label,
                "registered_at": d.registered_at.map(time::rfc3339),
                "revoked_at": d.revoked_at.map(time::rfc3339),
            })).collect::<Vec<_>>()});
            ctx.out.show(&value, |out| {
                let rows: Vec<Vec<String>> = devices
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.to_string(),
                            d.label.clone(),
                            d.registered_at
                                .map(|t| time::relative(t, now))
                                .unwrap_or_default(),
                            d.revoked_at
                                .map(|t| out.warn(&format!("revoked {}", time::relative(t, now))))
                                .unwrap_or_default(),
                        ]
                    })
                    .collect();
                out.table(&["DEVICE", "LABEL", "REGISTERED", ""], &rows)
            });
        }
        DeviceCommand::Revoke { device } => {
            let revoked = ctx.client.revoke_device(device).await?;
            ctx.out.show(&json!({"device_id": revoked.id.to_string(), "revoked": true}), |_| {
                format!(
                    "device {} revoked: it reads nothing more, and its keys leave every consult",
                    revoked.id
                )
            });
        }
    }
    Ok(())
}
