//! Signing's blobs in an S3 store (`--blob-url s3://…`): [`ObjectBlobs`] against a real S3
//! server (s3s-fs: the S3 protocol, signed requests, over a directory) on a loopback port.
//! The store's rules hold there (random ids, changed bytes never served, named files,
//! idempotent deletes), and two gateways sharing the bucket serve each other's files:
//! what one stored, the other hands to the operator and the family.

use crate::common;

use std::sync::Arc;

use common::signing::png;
use common::*;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::Value;
use xuanfang_allocator::SigningStore;
use xuanfang_gateway::blobs::{BlobStore, ObjectBlobs, S3Options};
use xuanfang_gateway::signing_api::{DepositRule, Signing};
use xuanfang_hub::SigningEvent;
use xuanfang_tests::s3::{files, S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};

const PAY_KEY: [u8; 32] = *b"sandbox-payment-key-for-tests!!!";

/// The client settings for `s3` with its key pair.
fn options(s3: &S3Server) -> S3Options {
    S3Options {
        endpoint: Some(s3.endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
    }
}

/// A gateway's store of `url` on `s3` (its own client, as each gateway process has).
fn store(s3: &S3Server, url: &str) -> Arc<ObjectBlobs> {
    Arc::new(ObjectBlobs::s3(url, &options(s3)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_round_trip_through_a_real_s3_server_and_a_changed_one_is_never_served() {
    let s3 = S3Server::start().await;
    let blobs = store(&s3, &format!("s3://{BUCKET}/hub/blobs"));

    let front = blobs.put(b"front photo", "image/png").await.unwrap();
    let back = blobs.put(b"back photo", "image/jpeg").await.unwrap();
    assert_ne!(front.id, back.id);
    assert_eq!(
        blobs.get(&front).await.unwrap().as_deref(),
        Some(&b"front photo"[..])
    );
    // The bucket holds them under the prefix, by the store's own random ids.
    assert_eq!(files(&s3.dir("hub/blobs")), {
        let mut ids = vec![front.id.clone(), back.id.clone()];
        ids.sort();
        ids
    });

    // Named files (a batch's sealed identities): replaced by a second put.
    blobs.put_named("identities-b1", b"sealed 1").await.unwrap();
    blobs.put_named("identities-b1", b"sealed 2").await.unwrap();
    assert_eq!(
        blobs.get_named("identities-b1").await.unwrap().as_deref(),
        Some(&b"sealed 2"[..])
    );
    assert_eq!(files(&s3.dir("hub/blobs/named")), ["identities-b1"]);
    assert_eq!(blobs.get_named("identities-b2").await.unwrap(), None);
    // Another gateway's client reads the same.
    let other = store(&s3, &format!("s3://{BUCKET}/hub/blobs"));
    assert_eq!(
        other.get(&back).await.unwrap().as_deref(),
        Some(&b"back photo"[..])
    );

    // Changed by another writer of the bucket (a signed PUT over the S3 protocol): the
    // bytes no longer match the reference's SHA-256 and are not served.
    let raw = AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(BUCKET)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()
        .unwrap();
    let key = object_store::path::Path::from(format!("hub/blobs/{}", front.id));
    raw.put(&key, PutPayload::from_static(b"other photo"))
        .await
        .unwrap();
    assert_eq!(blobs.get(&front).await.unwrap(), None);
    // Changed in the server's own directory: the same.
    std::fs::write(s3.dir("hub/blobs").join(&back.id), b"BACK PHOTO").unwrap();
    assert_eq!(blobs.get(&back).await.unwrap(), None);

    // Deleted, and deleting again is no error; an id this store never makes is refused.
    blobs.delete(&front).await.unwrap();
    blobs.delete(&front).await.unwrap();
    assert_eq!(blobs.get(&front).await.unwrap(), None);
    assert_eq!(files(&s3.dir("hub/blobs")), std::slice::from_ref(&back.id));
    let mut odd = back.clone();
    odd.id = "named/identities-b1".into();
    assert!(blobs.delete(&odd).await.is_err());
    assert_eq!(blobs.get(&odd).await.unwrap(), None);
    assert_eq!(files(&s3.dir("hub/blobs/named")), ["identities-b1"]);

    // A wrong secret: refused by the server's signature check, an error (never an empty
    // answer or a blob said to be stored).
    let wrong = ObjectBlobs::s3(
        &format!("s3://{BUCKET}/hub/blobs"),
        &S3Options {
            secret_access_key: Some("not-the-secret".into()),
            ..options(&s3)
        },
    )
    .unwrap();
    assert!(wrong.put(b"x", "image/png").await.is_err());
    assert!(wrong.get(&back).await.is_err());
}

/// The contract's PDF hash in the signing log (its latest `ContractSigned`).
fn logged_contract(events: &[xuanfang_hub::SigningEntry], family: &str) -> Option<String> {
    (events.iter().rev())
        .filter(|e| e.family.0 == family)
        .find_map(|e| match &e.event {
            SigningEvent::ContractSigned { pdf, .. } => Some(pdf.sha256.to_string()),
            _ => None,
        })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_the_bucket_serve_each_others_photos_and_documents() {
    let s3 = S3Server::start().await;
    let url = format!("s3://{BUCKET}/xuanfang");
    let day = signing::signing_day("s3", &[("F1", "U01")]).await;
    // Two gateways on one engine, each with its own client of the bucket (no shared
    // directory between them).
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let app = app_on_clock(
            day.engine.clone(),
            day.clock.clone(),
            signing::unthrottled(),
        );
        let signing = Signing::sandbox(
            day.engine.clone(),
            store(&s3, &url),
            PAY_KEY,
            DepositRule::default(),
        );
        assert!(app.enable_signing(signing));
        let addr = serve_on_free_port(&app, &day.batch.id).await;
        gateways.push(signing::Journey::new(addr));
    }
    let (a, b) = (&gateways[0], &gateways[1]);
    let (f1, op) = (family_token("F1"), operator_token());

    // The family walks details, face and contract on gateway A.
    a.up_to_deposit("F1").await;
    let stored = files(&s3.dir("xuanfang"));
    // Two card photos, the signature and the signed PDF.
    assert_eq!(stored.len(), 4, "{stored:?}");

    // Gateway B hands the operator the photos A stored, byte for byte as A serves them.
    for photo in ["card_front", "card_back"] {
        let path = format!("/api/ops/signing/F1/{photo}");
        let from_b = b.get(&op, &path).await;
        assert_eq!(from_b.status(), 200, "{photo}");
        assert_eq!(from_b.headers()["content-type"], "image/png");
        let from_b = from_b.bytes().await.unwrap();
        let from_a = a.get(&op, &path).await.bytes().await.unwrap();
        assert_eq!(from_b, from_a);
        assert!(image::load_from_memory(&from_b).is_ok());
    }

    // The contract signed on A downloads from B, with the hash of the signing log.
    let events = day.engine.signing_events(&day.batch.id, 0, 1000).await;
    let logged = logged_contract(&events.unwrap(), "F1").expect("ContractSigned logged");
    let r = b.get(&f1, "/api/me/signing/contract.pdf").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let pdf = r.bytes().await.unwrap();
    assert_eq!(sha256_hex(&pdf), logged);
    let r = b.get(&op, "/api/ops/signing/F1/contract.pdf").await;
    assert_eq!(r.bytes().await.unwrap(), pdf);

    // The other way: paid on A, approved on B and the notice issued there; the family
    // downloads it from A.
    a.deposit_paid_at_sandbox("F1").await;
    let r = b.post(&op, "/api/ops/signing/F1/approve", "ap").await;
    assert_eq!(r.status(), 200);
    let r = b.post(&op, "/api/ops/signing/F1/notice", "n-1").await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["status"]["status"], "completed");
    let from_a = a.get(&f1, "/api/me/signing/notice.pdf").await;
    assert_eq!(from_a.status(), 200);
    let from_a = from_a.bytes().await.unwrap();
    assert!(from_a.starts_with(b"%PDF"));
    let from_b = b.get(&op, "/api/ops/signing/F1/notice.pdf").await;
    assert_eq!(from_b.bytes().await.unwrap(), from_a);
    assert_eq!(files(&s3.dir("xuanfang")).len(), 5);

    // The card's photos changed in the bucket are served by neither gateway (the test's
    // photos and signature are one image: every file holding the served bytes changes).
    let served = a.get(&op, "/api/ops/signing/F1/card_front").await;
    let served = served.bytes().await.unwrap();
    let photos: Vec<String> = (files(&s3.dir("xuanfang")).into_iter())
        .filter(|name| std::fs::read(s3.dir("xuanfang").join(name)).unwrap() == served)
        .collect();
    assert!(photos.len() >= 2, "{photos:?}");
    for name in photos {
        std::fs::write(s3.dir("xuanfang").join(name), png(8, 8)).unwrap();
    }
    for g in [a, b] {
        for photo in ["card_front", "card_back"] {
            let path = format!("/api/ops/signing/F1/{photo}");
            assert_eq!(g.get(&op, &path).await.status(), 404, "{photo}");
        }
    }
}
