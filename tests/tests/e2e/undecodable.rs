//! Every `samenop.v1` method, from the server's own descriptor set, given
//! bytes that are not its request (unary, server- and client-streaming
//! alike, and a bad chunk in the middle of an upload): INVALID_ARGUMENT
//! naming the request type, on record with the caller's organisation, and
//! the server well afterwards.

use samenop_client::audit::{AuditFilter, Outcome};
use samenop_proto::v1;
use samenop_tests::{ORG_A, TestServer, within};
use tonic::Code;

use crate::{matrix::matrix, raw};

#[tokio::test]
async fn every_method_answers_undecodable_bytes_with_invalid_argument_on_record() {
    let m = matrix().await;
    let daan = m.daan.professional().unwrap();
    let channel = m.daan.channel();
    let mut failures = Vec::new();
    let mut calls = 0;
    for method in raw::methods() {
        let valid = raw::request(&method, &m.values);
        let mut bodies = vec![vec![0x0a, 0xff], vec![0x08]];
        if valid.len() > 1 {
            // A valid request cut short ends inside a field.
            bodies.push(valid[..valid.len() - 1].to_vec());
        }
        for body in bodies {
            calls += 1;
            let answer = within(
                &method.name,
                raw::call(channel.clone(), &method, Some(daan), vec![body]),
            )
            .await;
            let named = format!(
                "samenop.v1.{}Request",
                method.name.rsplit('/').next().unwrap()
            );
            if answer.code != Code::InvalidArgument || !answer.message.contains(&named) {
                failures.push(format!(
                    "{}: {:?} {:?}",
                    method.name, answer.code, answer.message
                ));
            }
        }
    }
    // A bad chunk in the middle of an upload, after a header that holds.
    let upload = raw::methods()
        .into_iter()
        .find(|m| m.name == "ThreadService/UploadAttachment")
        .unwrap();
    let header = prost::Message::encode_to_vec(&v1::UploadAttachmentRequest {
        part: Some(v1::upload_attachment_request::Part::Header(
            v1::AttachmentHeader {
                consult_id: m.t.consult.to_string(),
                device_id: m.daan_device.device().to_string(),
                size_bytes: 100,
                sha256: vec![7; 32],
            },
        )),
    });
    let answer = raw::call(
        channel.clone(),
        &upload,
        Some(daan),
        vec![header, vec![0x12, 0xff]],
    )
    .await;
    assert_eq!(answer.code, Code::InvalidArgument, "{answer:?}");
    assert!(
        answer
            .message
            .contains("samenop.v1.UploadAttachmentRequest"),
        "{answer:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The server is well, and every refusal is on record with the
    // organisation, certificate and professional, where the
    // organisation's privacy officer finds it.
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, 1, "SERVING");
    let trail =
        m.t.officer
            .query_audit(&AuditFilter {
                professional: Some(daan),
                outcome: Some(Outcome::Failed),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
    let refused: Vec<_> = trail
        .iter()
        .filter(|e| e.status_code == "INVALID_ARGUMENT")
        .collect();
    assert_eq!(refused.len(), calls + 1, "one event per undecodable call");
    for event in refused {
        assert_eq!(event.actor.organisation_oin, TestServer::oin(ORG_A));
        assert_eq!(event.actor.professional, Some(daan));
        assert_eq!(event.actor.certificate_fingerprint.len(), 64);
    }
}
