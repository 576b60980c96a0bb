//! The directory service end to end: admins register, list and deactivate
//! their own professionals and devices; everyone finds specialists; nothing
//! of one organisation can be changed by another.

use samenop_client::{
    Availability, ClientError, Expertise, Role, ViolenceType,
    consult::{About, NewConsult, Urgency},
};
use samenop_tests::{ORG_A, ORG_B, TestServer};

#[tokio::test]
async fn an_admin_registers_lists_and_deactivates_professionals() {
    let server = TestServer::start().await;
    let admin = server.admin(ORG_A).await;
    let sanne = admin
        .register_professional("Sanne de Boer", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    assert_eq!(sanne.organisation_oin, TestServer::oin(ORG_A));
    assert_eq!(sanne.roles, vec![Role::ContactPerson]);
    assert!(sanne.active);
    assert_eq!(sanne.availability, None);
    let eva = admin
        .register_professional(
            "Eva",
            &[Role::Specialist, Role::ContactPerson],
            &[
                Expertise::Violence(ViolenceType::ChildAbuse),
                Expertise::Child,
            ],
        )
        .await
        .unwrap();
    assert_eq!(eva.availability, Some(Availability::Available));

    let names = |list: Vec<samenop_client::Professional>| {
        list.into_iter().map(|p| p.display_name).collect::<Vec<_>>()
    };
    let listed = admin.list_professionals(false).await.unwrap();
    assert_eq!(
        names(listed),
        [
            format!("Admin {ORG_A}"),
            "Sanne de Boer".into(),
            "Eva".into()
        ]
    );

    admin.deactivate_professional(sanne.id).await.unwrap();
    assert_eq!(
        names(admin.list_professionals(false).await.unwrap()),
        [format!("Admin {ORG_A}"), "Eva".to_owned()]
    );
    let all = admin.list_professionals(true).await.unwrap();
    let sanne_now = all.iter().find(|p| p.id == sanne.id).unwrap();
    assert!(!sanne_now.active);
    assert!(sanne_now.deactivated_at.is_some());
    // Deactivating again changes nothing and is not an error.
    assert_eq!(
        admin
            .deactivate_professional(sanne.id)
            .await
            .unwrap()
            .deactivated_at,
        sanne_now.deactivated_at
    );
    // An admin cannot lock themself out.
    let own = admin.deactivate_professional(server.admins[ORG_A]).await;
    assert!(
        matches!(own, Err(ClientError::FailedPrecondition(_))),
        "{own:?}"
    );
}

#[tokio::test]
async fn listing_pages_through_many_professionals() {
    let server = TestServer::start().await;
    let admin = server.admin(ORG_A).await;
    for i in 0..7 {
        admin
            .register_professional(&format!("Contact {i}"), &[Role::ContactPerson], &[])
            .await
            .unwrap();
    }
    // Raw pages of 3: 8 professionals (admin included) come as 3 + 3 + 2.
    use samenop_proto::v1::{
        ListProfessionalsRequest, directory_service_client::DirectoryServiceClient,
    };
    let mut raw = DirectoryServiceClient::new(admin.channel());
    let mut token = String::new();
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    loop {
        let mut request = tonic::Request::new(ListProfessionalsRequest {
            include_inactive: false,
            page_size: 3,
            page_token: token.clone(),
        });
        request.metadata_mut().insert(
            "samenop-professional",
            server.admins[ORG_A].to_string().parse().unwrap(),
        );
        let page = raw.list_professionals(request).await.unwrap().into_inner();
        sizes.push(page.professionals.len());
        seen.extend(page.professionals.into_iter().map(|p| p.professional_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(sizes, [3, 3, 2]);
    let mut expected: Vec<String> = admin
        .list_professionals(false)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id.to_string())
        .collect();
    assert_eq!(seen, expected, "every professional once, in creation order");
    expected.sort();
    expected.dedup();
    assert_eq!(expected.len(), 8);
}

#[tokio::test]
async fn only_admins_manage_professionals() {
    let server = TestServer::start().await;
    let admin = server.admin(ORG_A).await;
    let contact = admin
        .register_professional("Daan", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    let as_contact = admin.acting_as(contact.id);
    let attempts = [
        as_contact
            .register_professional("X", &[Role::OrgAdmin], &[])
            .await
            .map(|_| ()),
        as_contact.list_professionals(true).await.map(|_| ()),
        as_contact
            .deactivate_professional(server.admins[ORG_A])
            .await
            .map(|_| ()),
    ];
    for attempt in attempts {
        match attempt {
            Err(ClientError::PermissionDenied(m)) => assert!(m.contains("ROLE_ORG_ADMIN"), "{m}"),
            other => panic!("expected PERMISSION_DENIED, got {other:?}"),
        }
    }
    assert_eq!(admin.list_professionals(true).await.unwrap().len(), 2);
}

#[tokio::test]
async fn another_organisation_changes_nothing_of_ours() {
    let server = TestServer::start().await;
    let admin_a = server.admin(ORG_A).await;
    let admin_b = server.admin(ORG_B).await;
    let sanne = admin_a
        .register_professional("Sanne", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    let device = admin_a
        .acting_as(sanne.id)
        .register_device(sanne.id, &[1u8; 32], "werkplek 1")
        .await
        .unwrap();

    let deactivate = admin_b.deactivate_professional(sanne.id).await;
    assert!(
        matches!(deactivate, Err(ClientError::NotFound(_))),
        "{deactivate:?}"
    );
    let register = admin_b.register_device(sanne.id, &[2u8; 32], "evil").await;
    assert!(
        matches!(register, Err(ClientError::NotFound(_))),
        "{register:?}"
    );
    let revoke = admin_b.revoke_device(device.id).await;
    assert!(
        matches!(revoke, Err(ClientError::NotFound(_))),
        "{revoke:?}"
    );
    let listed_by_b = admin_b.list_professionals(true).await.unwrap();
    assert!(
        listed_by_b.iter().all(|p| p.id != sanne.id),
        "B lists only its own"
    );

    let (after, devices) = admin_a.professional_with_devices(sanne.id).await.unwrap();
    assert!(after.active);
    assert_eq!(devices, vec![device]);
}

#[tokio::test]
async fn devices_are_registered_by_their_owner_or_an_admin_and_revoked() {
    let server = TestServer::start().await;
    let admin = server.admin(ORG_A).await;
    let sanne = admin
        .register_professional("Sanne", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    let daan = admin
        .register_professional("Daan", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    let as_sanne = admin.acting_as(sanne.id);

    let own = as_sanne
        .register_device(sanne.id, &[3u8; 32], "laptop")
        .await
        .unwrap();
    assert_eq!(own.professional, sanne.id);
    assert_eq!(own.signature_public_key, vec![3u8; 32]);
    let by_admin = admin
        .register_device(sanne.id, &[4u8; 32], "telefoon")
        .await
        .unwrap();
    let for_colleague = as_sanne
        .register_device(daan.id, &[5u8; 32], "not mine")
        .await;
    assert!(
        matches!(for_colleague, Err(ClientError::PermissionDenied(_))),
        "{for_colleague:?}"
    );
    let same_key = as_sanne
        .register_device(sanne.id, &[3u8; 32], "again")
        .await;
    assert!(
        matches!(same_key, Err(ClientError::FailedPrecondition(_))),
        "{same_key:?}"
    );

    // Anyone in the network sees Sanne's active device keys.
    let admin_b = server.admin(ORG_B).await;
    let (_, devices) = admin_b.professional_with_devices(sanne.id).await.unwrap();
    assert_eq!(devices.len(), 2);

    let as_daan = admin.acting_as(daan.id);
    let not_owner = as_daan.revoke_device(own.id).await;
    assert!(
        matches!(not_owner, Err(ClientError::PermissionDenied(_))),
        "{not_owner:?}"
    );
    let revoked = as_sanne.revoke_device(own.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    admin.revoke_device(by_admin.id).await.unwrap();
    let (_, devices) = admin_b.professional_with_devices(sanne.id).await.unwrap();
    assert!(devices.is_empty());
}

#[tokio::test]
async fn specialists_are_found_by_expertise_and_availability() {
    let server = TestServer::start().await;
    let admin_a = server.admin(ORG_A).await;
    let admin_b = server.admin(ORG_B).await;
    let partner = Expertise::Violence(ViolenceType::PartnerViolence);
    let jeroen = admin_b
        .register_professional("Jeroen", &[Role::Specialist], &[partner])
        .await
        .unwrap();
    let layla = admin_b
        .register_professional("Layla", &[Role::Specialist], &[partner, Expertise::Adult])
        .await
        .unwrap();
    let mila = admin_a
        .register_professional("Mila", &[Role::Specialist], &[Expertise::Child])
        .await
        .unwrap();
    let contact = admin_a
        .register_professional("Sanne", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    let as_contact = admin_a.acting_as(contact.id);

    let ids = |list: Vec<samenop_client::Professional>| {
        list.into_iter().map(|p| p.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(as_contact
            .list_specialists(Some(partner), false)
            .await
            .unwrap()),
        [jeroen.id, layla.id]
    );
    assert_eq!(
        ids(as_contact
            .list_specialists(Some(Expertise::Child), false)
            .await
            .unwrap()),
        [mila.id]
    );
    assert_eq!(
        ids(as_contact.list_specialists(None, false).await.unwrap()),
        [jeroen.id, layla.id, mila.id]
    );
    let elder = Expertise::Violence(ViolenceType::ElderAbuse);
    assert!(
        as_contact
            .list_specialists(Some(elder), false)
            .await
            .unwrap()
            .is_empty()
    );

    let busy = admin_b
        .acting_as(jeroen.id)
        .set_availability(Availability::Busy)
        .await
        .unwrap();
    assert_eq!(busy.availability, Some(Availability::Busy));
    assert_eq!(
        ids(as_contact
            .list_specialists(Some(partner), true)
            .await
            .unwrap()),
        [layla.id]
    );
    assert_eq!(
        ids(as_contact
            .list_specialists(Some(partner), false)
            .await
            .unwrap()),
        [jeroen.id, layla.id]
    );

    // Only specialists set availability.
    let not_specialist = as_contact.set_availability(Availability::Away).await;
    assert!(
        matches!(not_specialist, Err(ClientError::PermissionDenied(_))),
        "{not_specialist:?}"
    );
}

/// An organisation taken out of the server's configuration keeps its
/// professionals in the directory, but its specialists are no longer
/// offered: not listed, and not addressable by name.
#[tokio::test]
async fn specialists_of_an_organisation_no_longer_allowed_are_not_offered() {
    let mut server = TestServer::start().await;
    let partner = Expertise::Violence(ViolenceType::PartnerViolence);
    let jeroen = server
        .admin(ORG_B)
        .await
        .register_professional("Jeroen", &[Role::Specialist], &[partner])
        .await
        .unwrap();
    let mila = server
        .admin(ORG_A)
        .await
        .register_professional("Mila", &[Role::Specialist], &[partner])
        .await
        .unwrap();
    let contact = server
        .admin(ORG_A)
        .await
        .register_professional("Sanne", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    let ids = |list: Vec<samenop_client::Professional>| {
        list.into_iter().map(|p| p.id).collect::<Vec<_>>()
    };
    let listed = server
        .admin(ORG_A)
        .await
        .acting_as(contact.id)
        .list_specialists(Some(partner), false)
        .await
        .unwrap();
    assert_eq!(ids(listed), [jeroen.id, mila.id]);

    server.remove_organisation(ORG_B);
    server.restart().await;
    let as_contact = server.admin(ORG_A).await.acting_as(contact.id);
    let listed = as_contact.list_specialists(Some(partner), false).await;
    assert_eq!(ids(listed.unwrap()), [mila.id]);
    let listed = as_contact.list_specialists(None, false).await;
    assert_eq!(ids(listed.unwrap()), [mila.id]);
    let named = as_contact
        .open_consult(&NewConsult {
            about: About::Anonymous,
            question: "Hoe wegen wij deze signalen?".into(),
            expertise: partner,
            urgency: Urgency::Normal,
            respond_by: None,
            specialist: Some(jeroen.id),
        })
        .await;
    assert!(matches!(named, Err(ClientError::NotFound(_))), "{named:?}");
}

#[tokio::test]
async fn device_limits_hold() {
    let server = TestServer::start().await;
    let admin = server.admin(ORG_A).await;
    let sanne = admin
        .register_professional("Sanne", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    let mut devices = Vec::new();
    for i in 0..32u8 {
        let device = admin
            .register_device(sanne.id, &[i + 1; 32], &format!("device {i}"))
            .await
            .unwrap();
        devices.push(device);
    }
    let over = admin
        .register_device(sanne.id, &[99; 32], "one too many")
        .await;
    match over {
        Err(ClientError::ResourceExhausted(m)) => assert!(m.contains("32 active devices"), "{m}"),
        other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
    }
    // Revoking one makes room again: only active devices count.
    admin.revoke_device(devices[0].id).await.unwrap();
    admin
        .register_device(sanne.id, &[99; 32], "replacement")
        .await
        .unwrap();

    // No device for a deactivated professional.
    admin.deactivate_professional(sanne.id).await.unwrap();
    let late = admin.register_device(sanne.id, &[100; 32], "late").await;
    assert!(
        matches!(late, Err(ClientError::FailedPrecondition(_))),
        "{late:?}"
    );
}
