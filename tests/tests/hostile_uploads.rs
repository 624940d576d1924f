//! Crafted spreadsheets uploaded to a running gateway: each gets a clear 422 and the
//! process stays up (one of them used to abort it with a 512 GiB allocation).

use crate::common;

use std::time::Duration;

use common::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../hub/tests/fixtures");

async fn upload_families(base: &str, xlsx: Vec<u8>) -> (u16, serde_json::Value) {
    let units =
        "房源编号,楼栋,房号,楼层,户型,面积,朝向,租金\nA-1,1栋,101,1,一房一厅,45.5,南,1200\n";
    let form = reqwest::multipart::Form::new()
        .part(
            "units",
            reqwest::multipart::Part::bytes(units.as_bytes().to_vec()).file_name("units.csv"),
        )
        .part(
            "families",
            reqwest::multipart::Part::bytes(xlsx).file_name("families.xlsx"),
        )
        .text("batch_id", "hostile");
    let r = reqwest::Client::new()
        .post(format!("{base}/api/ops/batches"))
        .bearer_auth(operator_token())
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    assert!(
        body.len() < 64 * 1024,
        "a bounded answer: {} bytes",
        body.len()
    );
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_xlsx_uploads_are_refused_and_the_gateway_stays_up() {
    let alloc = redis_engine(&namespace()).await;
    let first = small_batch("calm", Duration::from_secs(600), Duration::from_secs(60));
    alloc.load_batch(first.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &first.id).await;
    let base = format!("http://{}", gw.addr);
    for name in [
        "last_cell",
        "huge_dimension",
        "far_column",
        "shared_string_bomb",
        "big_shared_strings",
        "zip_bomb",
        "bad_shared_string_index",
    ] {
        let bytes = std::fs::read(format!("{FIXTURES}/{name}.xlsx")).unwrap();
        let (status, body) = upload_families(&base, bytes).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert!(
            !body["errors"].as_array().unwrap().is_empty(),
            "{name}: {body}"
        );
        let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert!(
            health.status().is_success(),
            "{name}: the gateway is still up"
        );
    }
    assert_eq!(
        alloc.batches().await.unwrap(),
        vec![first.id],
        "nothing loaded"
    );
}
