//! What the server acknowledged is still there after it restarts.

use samenop_client::{Availability, Expertise, Role};
use samenop_tests::{ORG_A, TestServer};

#[tokio::test]
async fn data_survives_a_server_restart() {
    let mut server = TestServer::start().await;
    let admin = server.admin(ORG_A).await;
    let eva = admin
        .register_professional("Eva", &[Role::Specialist], &[Expertise::Child])
        .await
        .unwrap();
    let gone = admin
        .register_professional("Gone", &[Role::ContactPerson], &[])
        .await
        .unwrap();
    admin.deactivate_professional(gone.id).await.unwrap();
    let as_eva = admin.acting_as(eva.id);
    let device = as_eva
        .register_device(eva.id, &[9u8; 32], "laptop")
        .await
        .unwrap();
    as_eva.set_availability(Availability::Away).await.unwrap();
    let before = admin.list_professionals(true).await.unwrap();

    server.restart().await;

    let admin = server.admin(ORG_A).await;
    assert_eq!(admin.list_professionals(true).await.unwrap(), before);
    let (eva_after, devices) = admin.professional_with_devices(eva.id).await.unwrap();
    assert_eq!(eva_after.availability, Some(Availability::Away));
    assert_eq!(devices, vec![device]);
    // The deactivated professional is still refused after the restart.
    let refused = admin.acting_as(gone.id).list_specialists(None, false).await;
    assert!(
        matches!(
            refused,
            Err(samenop_client::ClientError::PermissionDenied(_))
        ),
        "{refused:?}"
    );
}
