//! The acting professional: named in metadata, accepted only when an active
//! professional of the certificate's organisation.

use samenop_client::{ClientError, Expertise, Role};
use samenop_proto::v1::{ListSpecialistsRequest, directory_service_client::DirectoryServiceClient};
use samenop_tests::{ORG_A, ORG_B, TestServer};
use tonic::{Code, Request};

/// ListSpecialists through raw tonic with the given metadata value.
async fn list_with_metadata(server: &TestServer, value: Option<&str>) -> tonic::Status {
    let client = server.connect(ORG_A).await;
    let mut raw = DirectoryServiceClient::new(client.channel());
    let mut request = Request::new(ListSpecialistsRequest::default());
    if let Some(value) = value {
        request
            .metadata_mut()
            .insert("samenop-professional", value.parse().unwrap());
    }
    raw.list_specialists(request)
        .await
        .expect_err("must be refused")
}

#[tokio::test]
async fn missing_or_malformed_professional_metadata_is_unauthenticated() {
    let server = TestServer::start().await;
    let missing = list_with_metadata(&server, None).await;
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("samenop-professional"),
        "{}",
        missing.message()
    );

    for bad in [
        "not-a-uuid",
        "00000000-0000-0000-0000-000000000000",
        "0190a5b000007000800000000000000a",
    ] {
        let status = list_with_metadata(&server, Some(bad)).await;
        assert_eq!(status.code(), Code::Unauthenticated, "{bad}");
        assert!(
            status.message().contains("not a professional id"),
            "{}",
            status.message()
        );
    }
}

#[tokio::test]
async fn an_unknown_professional_is_refused() {
    let server = TestServer::start().await;
    let stranger = uuid::Uuid::now_v7();
    let result = server
        .connect(ORG_A)
        .await
        .acting_as(stranger)
        .list_specialists(None, false)
        .await;
    match result {
        Err(ClientError::PermissionDenied(message)) => {
            assert!(message.contains(&stranger.to_string()), "{message}");
        }
        other => panic!("expected PERMISSION_DENIED, got {other:?}"),
    }
}

#[tokio::test]
async fn organisation_b_cannot_act_as_a_professional_of_organisation_a() {
    let server = TestServer::start().await;
    let admin_a = server.admin(ORG_A).await;
    let contact = admin_a
        .register_professional("Sanne", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    // Org B's system names org A's professional (and org A's admin).
    let b = server.connect(ORG_B).await;
    for impersonated in [contact.id, server.admins[ORG_A]] {
        let as_a = b.acting_as(impersonated);
        let listed = as_a.list_specialists(None, false).await;
        assert!(
            matches!(listed, Err(ClientError::PermissionDenied(_))),
            "{listed:?}"
        );
        let registered = as_a
            .register_professional("Mallory", &[Role::OrgAdmin], &[])
            .await;
        assert!(
            matches!(registered, Err(ClientError::PermissionDenied(_))),
            "{registered:?}"
        );
    }
    // The refusal reads the same as for an id nobody has: nothing is learnt
    // about which ids exist in another organisation.
    let nobody = uuid::Uuid::now_v7();
    let refusal = |id: uuid::Uuid| {
        let b = b.clone();
        async move {
            match b.acting_as(id).list_specialists(None, false).await {
                Err(ClientError::PermissionDenied(m)) => m.replace(&id.to_string(), "ID"),
                other => panic!("expected PERMISSION_DENIED, got {other:?}"),
            }
        }
    };
    assert_eq!(refusal(contact.id).await, refusal(nobody).await);
    // Nothing was registered in org A by org B.
    let listed = admin_a.list_professionals(true).await.unwrap();
    assert!(listed.iter().all(|p| p.display_name != "Mallory"));
}

#[tokio::test]
async fn a_deactivated_professional_is_refused_on_every_call() {
    let server = TestServer::start().await;
    let admin = server.admin(ORG_A).await;
    let specialist = admin
        .register_professional("Eva", &[Role::Specialist], &[Expertise::Child])
        .await
        .unwrap();
    let as_specialist = admin.acting_as(specialist.id);
    assert!(as_specialist.list_specialists(None, false).await.is_ok());
    let device = as_specialist
        .register_device(specialist.id, &[7u8; 32], "laptop")
        .await
        .unwrap();

    let deactivated = admin.deactivate_professional(specialist.id).await.unwrap();
    assert!(!deactivated.active);

    let refused = as_specialist.list_specialists(None, false).await;
    assert!(
        matches!(refused, Err(ClientError::PermissionDenied(_))),
        "{refused:?}"
    );
    let refused = as_specialist
        .set_availability(samenop_client::Availability::Away)
        .await;
    assert!(
        matches!(refused, Err(ClientError::PermissionDenied(_))),
        "{refused:?}"
    );
    // Their device went with them, and they are no longer listed.
    let (_, devices) = admin
        .professional_with_devices(specialist.id)
        .await
        .unwrap();
    assert!(
        devices.iter().all(|d| d.id != device.id),
        "revoked devices are not listed"
    );
    let specialists = admin
        .list_specialists(Some(Expertise::Child), false)
        .await
        .unwrap();
    assert!(specialists.iter().all(|p| p.id != specialist.id));
}

#[tokio::test]
async fn a_deactivated_admin_can_no_longer_administer() {
    let server = TestServer::start().await;
    let admin = server.admin(ORG_A).await;
    let second = admin
        .register_professional("Second admin", &[Role::OrgAdmin], &[])
        .await
        .unwrap();
    let colleague = admin
        .register_professional("Daan", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    let as_second = admin.acting_as(second.id);
    assert_eq!(as_second.list_professionals(false).await.unwrap().len(), 3);
    admin.deactivate_professional(second.id).await.unwrap();

    let calls = [
        as_second
            .register_professional("X", &[Role::OrgAdmin], &[])
            .await
            .map(|_| ()),
        as_second.list_professionals(true).await.map(|_| ()),
        as_second
            .deactivate_professional(colleague.id)
            .await
            .map(|_| ()),
        as_second
            .register_device(colleague.id, &[8u8; 32], "x")
            .await
            .map(|_| ()),
        as_second
            .professional_with_devices(colleague.id)
            .await
            .map(|_| ()),
        as_second.list_specialists(None, false).await.map(|_| ()),
    ];
    for call in calls {
        assert!(
            matches!(call, Err(ClientError::PermissionDenied(_))),
            "{call:?}"
        );
    }
    let (daan, devices) = admin.professional_with_devices(colleague.id).await.unwrap();
    assert!(daan.active);
    assert!(devices.is_empty());
}
