//! Bad input gets INVALID_ARGUMENT or RESOURCE_EXHAUSTED with a message that
//! names what is wrong, and changes nothing. Sent through raw tonic, since
//! the client library refuses some of it before sending.

use samenop_proto::v1::{self, directory_service_client::DirectoryServiceClient};
use samenop_tests::{ORG_A, TestServer};
use tonic::{Code, Request, transport::Channel};
use uuid::Uuid;

fn acting<T>(message: T, professional: Uuid) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "samenop-professional",
        professional.to_string().parse().unwrap(),
    );
    request
}

async fn raw(server: &TestServer) -> DirectoryServiceClient<Channel> {
    DirectoryServiceClient::new(server.connect(ORG_A).await.channel())
        .max_encoding_message_size(64 * 1024 * 1024)
}

fn register(
    name: &str,
    roles: Vec<i32>,
    expertise: Vec<v1::Expertise>,
) -> v1::RegisterProfessionalRequest {
    v1::RegisterProfessionalRequest {
        display_name: name.into(),
        roles,
        expertise,
    }
}

fn expertise(domain: i32, violence_type: i32) -> v1::Expertise {
    v1::Expertise {
        domain,
        violence_type,
    }
}

/// Asserts the status code and that the message contains `needle`.
fn assert_refused(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, needle: &str) {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(
                status.message().contains(needle),
                "{:?} lacks {needle:?}",
                status.message()
            );
        }
        Ok(answer) => panic!("expected {code:?}, got {answer:?}"),
    }
}

#[tokio::test]
async fn malformed_registrations_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let admin = server.admins[ORG_A];
    let mut client = raw(&server).await;
    let contact = v1::Role::ContactPerson as i32;
    let specialist = v1::Role::Specialist as i32;
    let cases = [
        (
            register("", vec![contact], vec![]),
            "display_name is required",
        ),
        (
            register("   ", vec![contact], vec![]),
            "display_name is required",
        ),
        (
            register(&"x".repeat(201), vec![contact], vec![]),
            "display_name is too long",
        ),
        (
            register("Ctrl\u{7}", vec![contact], vec![]),
            "display_name is malformed",
        ),
        (
            register("Anna\u{202E}nimda", vec![contact], vec![]),
            "invisible formatting",
        ),
        (register("Sam", vec![], vec![]), "roles is required"),
        (
            register("Sam", vec![0], vec![]),
            "roles has no valid value (got 0)",
        ),
        (
            register("Sam", vec![99], vec![]),
            "roles has no valid value (got 99)",
        ),
        (
            register("Sam", vec![contact, contact], vec![]),
            "roles contains a repeated value",
        ),
        (
            register("Sam", vec![specialist], vec![]),
            "needs at least one expertise",
        ),
        (
            register("Sam", vec![contact], vec![expertise(1, 0)]),
            "only for professionals with ROLE_SPECIALIST",
        ),
        (
            register("Sam", vec![specialist], vec![expertise(42, 0)]),
            "expertise has no valid value (got 42)",
        ),
        (
            register("Sam", vec![specialist], vec![expertise(3, 0)]),
            "needs a violence type",
        ),
        (
            register("Sam", vec![specialist], vec![expertise(3, 77)]),
            "expertise has no valid value (got 77)",
        ),
        (
            register("Sam", vec![specialist], vec![expertise(2, 1)]),
            "belongs only to the VIOLENCE",
        ),
        (
            register(
                "Sam",
                vec![specialist],
                (0..33).map(|i| expertise(3, i % 8 + 1)).collect(),
            ),
            "at most 32",
        ),
    ];
    for (request, needle) in cases {
        let result = client.register_professional(acting(request, admin)).await;
        assert_refused(result, Code::InvalidArgument, needle);
    }
    let listed = client
        .list_professionals(acting(
            v1::ListProfessionalsRequest {
                include_inactive: true,
                ..Default::default()
            },
            admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.professionals.len(),
        1,
        "only the bootstrap admin exists"
    );
}

#[tokio::test]
async fn malformed_ids_keys_and_tokens_are_refused() {
    let server = TestServer::start().await;
    let admin = server.admins[ORG_A];
    let mut client = raw(&server).await;
    for bad in [
        "",
        "42",
        "not-a-uuid",
        "00000000-0000-0000-0000-000000000000",
    ] {
        let request = v1::DeactivateProfessionalRequest {
            professional_id: bad.into(),
        };
        let result = client.deactivate_professional(acting(request, admin)).await;
        assert_refused(result, Code::InvalidArgument, "professional_id");
        let request = v1::RevokeDeviceRequest {
            device_id: bad.into(),
        };
        assert_refused(
            client.revoke_device(acting(request, admin)).await,
            Code::InvalidArgument,
            "device_id",
        );
    }
    let device = |key: Vec<u8>, label: &str| v1::RegisterDeviceRequest {
        professional_id: admin.to_string(),
        signature_public_key: key,
        label: label.into(),
    };
    let cases = [
        (device(vec![], "laptop"), "signature_public_key is required"),
        (device(vec![1; 31], "laptop"), "exactly 32 bytes"),
        (device(vec![1; 33], "laptop"), "exactly 32 bytes"),
        (device(vec![1; 32], ""), "label is required"),
        (device(vec![1; 32], &"é".repeat(101)), "label is too long"),
    ];
    for (request, needle) in cases {
        assert_refused(
            client.register_device(acting(request, admin)).await,
            Code::InvalidArgument,
            needle,
        );
    }
    for bad in ["", "nope", "01234567-89ab-cdef-0123-456789abcdeg"] {
        let request = v1::RegisterDeviceRequest {
            professional_id: bad.into(),
            signature_public_key: vec![1; 32],
            label: "laptop".into(),
        };
        let result = client.register_device(acting(request, admin)).await;
        assert_refused(result, Code::InvalidArgument, "professional_id");
        let request = v1::GetProfessionalRequest {
            professional_id: bad.into(),
        };
        let result = client.get_professional(acting(request, admin)).await;
        assert_refused(result, Code::InvalidArgument, "professional_id");
    }
    let request = v1::ListProfessionalsRequest {
        page_token: "garbage".into(),
        ..Default::default()
    };
    assert_refused(
        client.list_professionals(acting(request, admin)).await,
        Code::InvalidArgument,
        "page_token",
    );
    let request = v1::SetAvailabilityRequest { availability: 9 };
    // The admin is no specialist: authorisation is checked before the value.
    assert_refused(
        client.set_availability(acting(request, admin)).await,
        Code::PermissionDenied,
        "ROLE_SPECIALIST",
    );

    let (_, devices) = server
        .admin(ORG_A)
        .await
        .professional_with_devices(admin)
        .await
        .unwrap();
    assert!(devices.is_empty(), "no device was registered");
}

#[tokio::test]
async fn an_unknown_availability_value_is_refused() {
    let server = TestServer::start().await;
    let admin = server.admin(ORG_A).await;
    let specialist = admin
        .register_professional(
            "Eva",
            &[samenop_client::Role::Specialist],
            &[samenop_client::Expertise::Adult],
        )
        .await
        .unwrap();
    let mut client = raw(&server).await;
    for value in [0, 4, -1] {
        let request = v1::SetAvailabilityRequest {
            availability: value,
        };
        let result = client
            .set_availability(acting(request, specialist.id))
            .await;
        assert_refused(
            result,
            Code::InvalidArgument,
            "availability has no valid value",
        );
    }
    let (now, _) = admin
        .professional_with_devices(specialist.id)
        .await
        .unwrap();
    assert_eq!(
        now.availability,
        Some(samenop_client::Availability::Available)
    );
}

#[tokio::test]
async fn an_oversized_message_is_resource_exhausted() {
    let server = TestServer::start().await;
    let admin = server.admins[ORG_A];
    let mut client = raw(&server).await;
    let huge = "x".repeat(5 * 1024 * 1024);
    let request = register(&huge, vec![v1::Role::ContactPerson as i32], vec![]);
    let result = client.register_professional(acting(request, admin)).await;
    assert_refused(result, Code::ResourceExhausted, "too large");
    // The connection is still usable and nothing was registered.
    let listed = client
        .list_professionals(acting(v1::ListProfessionalsRequest::default(), admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.professionals.len(), 1);
}
