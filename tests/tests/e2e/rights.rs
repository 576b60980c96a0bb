//! A family's data rights: the export of everything the server holds about
//! it, and its erasure, which leaves only the (still verifiable) audit trail.

use samenop_client::{ClientError, audit::AuditFilter, consult::Outcome, rights::ErasureReason};
use samenop_proto::v1;
use samenop_server::store::Keyspace;
use samenop_tests::{ThreadedConsult, stored_under, threaded_consult};

#[tokio::test]
async fn a_family_is_exported_whole_and_erased_leaving_only_the_audit_trail() {
    let ThreadedConsult {
        mut server,
        sanne,
        officer,
        eva,
        family,
        consent,
        consult,
        ..
    } = threaded_consult().await;

    // The export holds everything, for the contact person and the privacy
    // officer alike; no one else gets it.
    let export = sanne.export_family_data(family.id).await.unwrap();
    assert_eq!(export.family.id, family.id);
    assert_eq!(export.consents.len(), 1);
    assert_eq!(export.consults.len(), 1);
    assert_eq!(export.consults[0].family, Some(family.id));
    let [thread] = export.threads.as_slice() else {
        panic!("one thread: {:?}", export.threads);
    };
    assert_eq!((thread.messages, thread.attachments), (2, 1));
    assert!(thread.stored_bytes > 4000);
    assert!(export.audit.len() > 5);
    assert!(export.audit.iter().all(|e| {
        e.objects
            .iter()
            .any(|(_, id)| *id == family.id.to_string() || *id == consult.to_string())
    }));
    assert_eq!(
        officer
            .export_family_data(family.id)
            .await
            .unwrap()
            .consults,
        export.consults
    );
    for other in [&eva] {
        let err = other.export_family_data(family.id).await.unwrap_err();
        assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");
    }

    // Not while a consult is open; not by the officer; not with another id
    // as confirmation.
    let err = sanne
        .erase_family(family.id, ErasureReason::DataSubjectRequest, "AVG-2026-17")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::FailedPrecondition(_)), "{err:?}");
    sanne
        .close_consult(consult, Outcome::AdviceGiven)
        .await
        .unwrap();
    let err = officer
        .erase_family(family.id, ErasureReason::DataSubjectRequest, "AVG-2026-17")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");
    let mut audit_service = v1::audit_service_client::AuditServiceClient::new(sanne.channel());
    let mut wrong = tonic::Request::new(v1::EraseFamilyRequest {
        family_id: family.id.to_string(),
        confirm_family_id: consent.to_string(),
        reason: v1::ErasureReason::DataSubjectRequest as i32,
        evidence_reference: "AVG-2026-17".into(),
    });
    wrong.metadata_mut().insert(
        samenop_proto::PROFESSIONAL_METADATA_KEY,
        sanne.professional().unwrap().to_string().parse().unwrap(),
    );
    let status = audit_service.erase_family(wrong).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let erased = sanne
        .erase_family(family.id, ErasureReason::DataSubjectRequest, "AVG-2026-17")
        .await
        .unwrap();
    assert_eq!((erased.consents, erased.consults), (1, 1));
    assert!(matches!(
        sanne.family(family.id).await,
        Err(ClientError::NotFound(_))
    ));
    assert!(matches!(
        eva.consult(consult).await,
        Err(ClientError::NotFound(_))
    ));

    // The trail still verifies and holds the erasure; nothing else is left.
    let verified = officer.verify_audit().await.unwrap();
    assert!(verified.ok, "{verified:?}");
    let trail = officer.query_audit(&AuditFilter::default()).await.unwrap();
    let event = trail
        .iter()
        .find(|e| e.id == erased.audit_event)
        .expect("the erasure is on record");
    assert!(event.detail.contains("DATA_SUBJECT_REQUEST"), "{event:?}");
    server.stop().await;
    for (space, prefix) in [
        (Keyspace::Families, family.id.as_bytes().to_vec()),
        (Keyspace::ConsentsByFamily, family.id.as_bytes().to_vec()),
        (Keyspace::Consents, consent.as_bytes().to_vec()),
        (Keyspace::Consults, consult.as_bytes().to_vec()),
        (Keyspace::ConsultsByFamily, family.id.as_bytes().to_vec()),
        (Keyspace::ThreadEntries, consult.as_bytes().to_vec()),
        (Keyspace::Threads, consult.as_bytes().to_vec()),
        (Keyspace::Welcomes, consult.as_bytes().to_vec()),
        (Keyspace::Attachments, consult.as_bytes().to_vec()),
    ] {
        assert_eq!(
            stored_under(&server, space, &prefix).await,
            0,
            "{space:?} still holds the family's data"
        );
    }
    assert_eq!(
        stored_under(&server, Keyspace::AttachmentChunks, &[]).await,
        0
    );
}
