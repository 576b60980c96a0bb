//! The server measures itself: `/metrics` and `/health` on the admin
//! listener, over plain HTTP, with the gRPC names dashboards expect, the
//! store's and the hub's figures, and no id of anyone or anything.

use samenop_client::{
    Expertise, Role, ViolenceType,
    consult::{About, NewConsult, Urgency},
    mls::Messenger,
};
use samenop_tests::{ORG_A, ORG_B, TestServer, within};

const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);

/// GET `path` on the admin listener: (status line, body).
pub(crate) async fn get(server: &TestServer, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.admin_addr)
        .await
        .expect("admin listener");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// The value of the sample whose line starts with `series` (name and
/// labels exactly), if there is one.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_by_method_and_code_and_name_nobody() {
    let server = TestServer::start().await;
    let sanne = server
        .professional(ORG_A, "Sanne", &[Role::ContactPerson], &[])
        .await;
    let eva = server
        .professional(ORG_B, "Eva", &[Role::Specialist], &[ABUSE])
        .await;
    let (status, body) = get(&server, "/health").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "serving");

    // Calls: answered, and refused (Sanne is not Eva's organisation's).
    let eva_id = eva.professional().unwrap();
    sanne
        .professional_with_devices(sanne.professional().unwrap())
        .await
        .unwrap();
    sanne
        .professional_with_devices(sanne.professional().unwrap())
        .await
        .unwrap();
    assert!(sanne.deactivate_professional(eva_id).await.is_err());
    // A pool request waiting, and a live subscription.
    let consult = sanne
        .open_consult(&NewConsult {
            about: About::Anonymous,
            question: "Hoe wegen wij deze signalen?".into(),
            expertise: ABUSE,
            urgency: Urgency::Normal,
            respond_by: None,
            specialist: None,
        })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let device = Messenger::open(&eva, dir.path(), "laptop").await.unwrap();
    let events = device.subscribe(None).await.unwrap();

    let (status, text) = get(&server, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let method = r#"grpc_service="samenop.v1.DirectoryService",grpc_method="GetProfessional",grpc_type="unary""#;
    assert_eq!(
        sample(&text, &format!("grpc_server_started_total{{{method}}}")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"grpc_server_handled_total{{{method},grpc_code="OK"}}"#)
        ),
        Some(2.0)
    );
    let refused = r#"grpc_service="samenop.v1.DirectoryService",grpc_method="DeactivateProfessional",grpc_type="unary""#;
    let refusals: f64 = text
        .lines()
        .filter(|l| l.starts_with(&format!("grpc_server_handled_total{{{refused},grpc_code=")))
        .filter(|l| !l.contains(r#"grpc_code="OK""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(refusals, 1.0, "the refusal is counted under its code");
    assert_eq!(
        sample(
            &text,
            &format!(r#"grpc_server_handling_seconds_count{{{method}}}"#)
        ),
        Some(2.0)
    );
    let stream = r#"grpc_service="samenop.v1.ThreadService",grpc_method="Subscribe",grpc_type="server_stream""#;
    assert_eq!(
        sample(&text, &format!("grpc_server_started_total{{{stream}}}")),
        Some(1.0)
    );
    assert_eq!(sample(&text, "samenop_subscriptions"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            r#"samenop_consult_requests_waiting{expertise="CHILD_ABUSE"}"#
        ),
        Some(1.0)
    );
    // An expertise nothing waits for shows 0, not nothing.
    assert_eq!(
        sample(
            &text,
            r#"samenop_consult_requests_waiting{expertise="ELDER_ABUSE"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"samenop_consult_requests_past_respond_by{expertise="CHILD"}"#
        ),
        Some(0.0)
    );
    assert!(sample(&text, "samenop_store_syncs_total").is_some_and(|n| n > 0.0));
    assert!(sample(&text, "samenop_store_commit_seconds_count").is_some_and(|n| n > 0.0));
    assert!(sample(&text, "samenop_store_commit_batches_sum").is_some_and(|n| n > 0.0));
    // Every call above is in the trail: at least these seven.
    let chain = sample(&text, "samenop_audit_chain_length").unwrap_or(0.0);
    assert!(chain >= 7.0, "audit chain length {chain}");
    for id in [
        sanne.professional().unwrap(),
        eva_id,
        consult.id,
        device.device(),
    ] {
        assert!(
            !text.contains(&id.to_string()),
            "an id in the metrics: {id}"
        );
        assert!(
            !text.contains(&id.simple().to_string()),
            "an id in the metrics: {id}"
        );
    }

    // The stream ends: the subscription is no longer live, and the call is
    // handled.
    drop(events);
    sanne.professional_with_devices(eva_id).await.unwrap();
    within("the subscription to end", async {
        loop {
            let (_, text) = get(&server, "/metrics").await;
            let grown = sample(&text, "samenop_audit_chain_length").unwrap_or(0.0) > chain;
            if grown
                && sample(&text, "samenop_subscriptions") == Some(0.0)
                && text
                    .lines()
                    .any(|l| l.starts_with(&format!("grpc_server_handled_total{{{stream},")))
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}
