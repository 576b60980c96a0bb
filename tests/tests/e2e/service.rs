//! The standard gRPC services beside samenop.v1: health and reflection, both
//! behind mutual TLS.

use samenop_tests::{ORG_A, TestServer};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

#[tokio::test]
async fn health_reports_serving() {
    let server = TestServer::start().await;
    assert_eq!(server.connect(ORG_A).await.health().await, Ok(true));
}

#[tokio::test]
async fn reflection_lists_every_samenop_service() {
    let server = TestServer::start().await;
    let mut reflection = ServerReflectionClient::new(server.connect(ORG_A).await.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = samenop_tests::within("the reflection service's answer", answers.message())
        .await
        .unwrap()
        .unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("expected a service list, got {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "samenop.v1.DirectoryService",
        "samenop.v1.FamilyService",
        "samenop.v1.ConsultService",
        "samenop.v1.ThreadService",
        "samenop.v1.AuditService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }
}
