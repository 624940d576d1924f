//! The HTTP side of the gateway: operator import and export, health, metrics, shutdown.

use crate::common;

use std::time::Duration;

use common::*;
use xuanfang_hub::protocol::{Encoding, ServerMsg};

fn units_csv(n: usize) -> String {
    let mut s = String::from("\u{feff}房源编号,楼栋,房号,楼层,户型,面积,朝向,租金\n");
    for i in 1..=n {
        s.push_str(&format!(
            "A-{i},1栋,{i},{},一房一厅,45.5,南,1200\n",
            i % 30 + 1
        ));
    }
    s
}

fn families_csv(n: usize) -> String {
    let mut s = String::from("家庭编号,姓名,排位,场次,可选户型\n");
    for i in 1..=n {
        s.push_str(&format!("F{i},张三{i},{i},,一房一厅|两房一厅\n"));
    }
    s
}

async fn upload(
    base: &str,
    units: String,
    families: String,
    replace: bool,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut form = reqwest::multipart::Form::new()
        .part(
            "units",
            reqwest::multipart::Part::bytes(units.into_bytes()).file_name("units.csv"),
        )
        .part(
            "families",
            reqwest::multipart::Part::bytes(families.into_bytes()).file_name("families.csv"),
        )
        .text("batch_id", "uploaded")
        .text("name", "上传批次")
        .text("session_size", "10")
        .text("window_minutes", "3");
    if replace {
        form = form.text("replace", "true");
    }
    let r = reqwest::Client::new()
        .post(format!("{base}/api/ops/batches"))
        .bearer_auth(operator_token())
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_with_one_bad_row_names_it_and_loads_nothing() {
    let alloc = redis_engine(&namespace()).await;
    let first = small_batch("first", Duration::from_secs(60), Duration::from_secs(60));
    alloc.load_batch(first.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &first.id).await;
    let base = format!("http://{}", gw.addr);

    let mut bad = units_csv(1000);
    bad = bad.replacen(
        "A-500,1栋,500,21,一房一厅,45.5",
        "A-500,1栋,500,21,一房一厅,很大",
        1,
    );
    let (status, body) = upload(&base, bad, families_csv(50), true).await;
    assert_eq!(status, 422, "{body}");
    // The error body every refusal has (code, message), and the rows at fault.
    assert_eq!(body["code"], "invalid_batch");
    assert!(
        body["message"]["zh"].is_string() && body["message"]["en"].is_string(),
        "{body}"
    );
    let errors = body["errors"].as_array().expect("errors listed");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["file"], "units");
    assert_eq!(errors[0]["row"], 501, "header is row 1");
    // A code, and the reason in both languages, Chinese with Chinese column names.
    assert_eq!(errors[0]["code"], "bad_number");
    assert_eq!(
        errors[0]["reason"]["zh"],
        "第 501 行：面积“很大”不是有效的数字"
    );
    assert_eq!(
        errors[0]["reason"]["en"],
        "row 501: area: \"很大\" is not a valid number"
    );
    assert_eq!(alloc.batches().await.unwrap().len(), 1, "nothing loaded");

    // A valid upload while the live batch's pre-selection is open is held for a
    // confirmation: 409 naming the running batch, nothing loaded.
    let (status, body) = upload(&base, units_csv(100), families_csv(50), false).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "conflict");
    assert!(body["message"]["zh"].is_string(), "{body}");
    assert_eq!(body["running"]["batch"], "first");
    assert_eq!(alloc.batches().await.unwrap().len(), 1, "nothing loaded");

    let mut old_screen = connect(gw.addr, None, Encoding::Json).await;
    old_screen
        .until(Duration::from_secs(30), |m| {
            matches!(m, ServerMsg::Snapshot { .. }).then_some(())
        })
        .await
        .unwrap();
    let (status, body) = upload(&base, units_csv(100), families_csv(50), true).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["batch"], "uploaded");
    // Loading a batch closes no other batch's socket: the old screen still answers.
    old_screen
        .send(&xuanfang_hub::protocol::ClientMsg::Ping { t0: 1.0 })
        .await;
    let pong = old_screen
        .until(Duration::from_secs(10), |m| {
            matches!(m, ServerMsg::Pong { .. }).then_some(())
        })
        .await;
    assert!(pong.is_some(), "the old batch's screen stayed open");
    // A screen naming no batch gets the live one: the newest loaded.
    let mut new_screen = connect(gw.addr, None, Encoding::Json).await;
    let batch = new_screen
        .until(Duration::from_secs(30), |m| match m {
            ServerMsg::Welcome { batch, .. } => Some(batch.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(batch.as_str(), "uploaded");
    let catalog: serde_json::Value = reqwest::get(format!("{base}/api/catalog"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(catalog["batch"], "uploaded");
    assert_eq!(catalog["units"].as_array().unwrap().len(), 100);
    assert_eq!(catalog["sessions"].as_array().unwrap().len(), 5);
    // The older batch is still served by name.
    let old: serde_json::Value = reqwest::get(format!("{base}/api/catalog?batch=first"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(old["batch"], "first");
    let listed: serde_json::Value = reqwest::get(format!("{base}/api/batches"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["uploaded", "first"], "newest first: {listed}");
    assert_eq!(listed[0]["live"], true);

    // A family token cannot upload.
    let r = reqwest::Client::new()
        .post(format!("{base}/api/ops/batches"))
        .bearer_auth(family_token("F1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_family_eligible_only_for_a_layout_no_unit_has_is_refused_on_its_row() {
    let alloc = redis_engine(&namespace()).await;
    let first = small_batch("layouts", Duration::from_secs(60), Duration::from_secs(60));
    alloc.load_batch(first.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &first.id).await;
    let base = format!("http://{}", gw.addr);
    // Row 4 (F3) spells 两房一厅 as 二房一厅, which no unit has.
    let families = families_csv(5).replace("F3,张三3,3,,一房一厅|两房一厅", "F3,张三3,3,,二房一厅");
    let (status, body) = upload(&base, units_csv(10), families, true).await;
    assert_eq!(status, 422, "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["file"], "families");
    assert_eq!(errors[0]["row"], 4);
    assert_eq!(errors[0]["code"], "no_unit_of_layouts");
    assert_eq!(alloc.batches().await.unwrap().len(), 1, "nothing loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_export_as_csv_with_bom_and_as_xlsx() {
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch("export", Duration::from_secs(60), Duration::from_secs(60));
    alloc.load_batch(batch.clone()).await.unwrap();
    // F1 waives, so its row has a time.
    let waived = alloc
        .act(
            &batch.id,
            &xuanfang_hub::FamilyId::from("F1"),
            "w1",
            xuanfang_hub::Action::Waive,
        )
        .await
        .unwrap();
    assert!(waived.is_ok());
    let gw = start_gateway(alloc, &batch.id).await;
    let http = reqwest::Client::new();
    let csv = http
        .get(format!("http://{}/api/ops/results.csv", gw.addr))
        .bearer_auth(operator_token())
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    let bytes = csv.bytes().await.unwrap();
    assert!(bytes.starts_with("\u{feff}".as_bytes()), "BOM for Excel");
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert_eq!(text.lines().count(), 1 + 6, "header and one row per family");
    assert!(text.contains("排位"));
    // Times are local date-times Excel can read, not epoch milliseconds.
    let rows = csv_rows(&text);
    let f1 = rows
        .iter()
        .find(|r| r["家庭编号 family"] == "F1")
        .expect("F1's row");
    let shape: String = f1["正选时间 formal at"]
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99 99:99:99", "{f1:?}");
    let xlsx = http
        .get(format!("http://{}/api/ops/results.xlsx", gw.addr))
        .bearer_auth(operator_token())
        .send()
        .await
        .unwrap();
    assert_eq!(xlsx.status(), 200);
    assert!(
        xlsx.bytes().await.unwrap().starts_with(b"PK"),
        "a zip container"
    );
    let events: serde_json::Value = http
        .get(format!("http://{}/api/ops/events?after=0", gw.addr))
        .bearer_auth(operator_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events[0]["event"]["kind"], "batch_loaded");
    // The console's events.jsonl is JSON Lines: one event per line.
    let jsonl = http
        .get(format!("http://{}/api/ops/events.jsonl", gw.addr))
        .bearer_auth(operator_token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON event"))
        .collect();
    assert_eq!(lines.len(), events.as_array().unwrap().len());
    assert_eq!(lines[0]["event"]["kind"], "batch_loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_graceful_shutdown() {
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch("health", Duration::from_secs(60), Duration::from_secs(60));
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = start_gateway(alloc, &batch.id).await;
    let base = format!("http://{}", gw.addr);
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let mut c = connect(gw.addr, None, Encoding::Json).await;
    c.until(Duration::from_secs(30), |m| {
        matches!(m, ServerMsg::Snapshot { .. }).then_some(())
    })
    .await
    .unwrap();
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("xuanfang_watchers 1"), "{metrics}");

    // Shutdown: the open socket gets a 1001 close frame.
    gw.app.shutdown.cancel();
    let code = tokio::time::timeout(Duration::from_secs(30), async {
        use futures_util::StreamExt;
        while let Some(Ok(m)) = c.ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Close(f) = m {
                return f.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resuming_on_another_gateway_gets_a_gapless_delta_from_the_log() {
    use xuanfang_hub::protocol::BoardChange;
    use xuanfang_hub::UnitId;
    let (ns, clock) = (namespace(), manual_clock());
    let alloc = clocked_redis_engine(&ns, &clock).await;
    let batch = small_batch("cross", Duration::from_millis(800), Duration::from_secs(30));
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw_a = clocked_gateway(alloc.clone(), &clock, &batch.id).await;
    let mut c = connect(gw_a.addr, None, Encoding::Json).await;
    let seq = c
        .until(Duration::from_secs(30), |m| match m {
            ServerMsg::Snapshot { seq, .. } => Some(*seq),
            _ => None,
        })
        .await
        .unwrap();
    drop(c);
    // Private events first, then gateway B starts: its chain begins after them, so the
    // client's seq is not one of B's delta boundaries.
    preselect_direct(alloc.as_ref(), &batch.id, "F1", &["U01", "U02"]).await;
    let gw_b = clocked_gateway(clocked_redis_engine(&ns, &clock).await, &clock, &batch.id).await;
    clock.set(batch.sessions[0].start);
    confirm_direct(alloc.as_ref(), &batch.id, "F1", "U01").await;
    let hub_b = gw_b.app.hub(&batch.id).await.unwrap();
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    while hub_b.seq() <= seq + 3 {
        assert!(tokio::time::Instant::now() < end, "B never saw the confirm");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let target = hub_b.seq();
    let url = format!("{}/ws?epoch={}&seq={seq}", gw_b.addr, hub_b.epoch);
    let mut c = connect_path(&url, Encoding::MsgPack).await;
    let mut last = seq;
    let mut saw_u01 = false;
    while last < target {
        match c.next(Duration::from_secs(30)).await {
            Some(ServerMsg::Welcome { .. }) => {}
            Some(ServerMsg::Delta {
                prev, seq, changes, ..
            }) => {
                assert_eq!(prev, last, "no gap");
                saw_u01 |= changes
                    .iter()
                    .any(|c| matches!(c, BoardChange::Taken(t) if t.unit == UnitId::from("U01")));
                last = seq;
            }
            other => panic!("expected deltas, got {other:?}"),
        }
    }
    assert_eq!(last, target);
    assert!(saw_u01);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_changes_are_not_broadcast_and_the_chain_stays_unbroken() {
    let clock = manual_clock();
    let alloc = clocked_redis_engine(&namespace(), &clock).await;
    let batch = small_batch(
        "private",
        Duration::from_millis(700),
        Duration::from_secs(30),
    );
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = clocked_gateway(alloc.clone(), &clock, &batch.id).await;
    let mut screen = connect(gw.addr, None, Encoding::Json).await;
    let s0 = screen
        .until(Duration::from_secs(30), |m| match m {
            ServerMsg::Snapshot { seq, .. } => Some(*seq),
            _ => None,
        })
        .await
        .unwrap();
    preselect_direct(alloc.as_ref(), &batch.id, "F2", &["U03"]).await;
    // Nothing public happened: the screen gets nothing. The later confirm is the marker:
    // the first frame the screen gets must be its delta, covering the private events
    // too; a frame for the private events would come before it and fail the match.
    clock.set(batch.sessions[0].start);
    confirm_direct(alloc.as_ref(), &batch.id, "F2", "U03").await;
    match screen.next(Duration::from_secs(30)).await {
        Some(ServerMsg::Delta {
            prev, seq, changes, ..
        }) => {
            assert_eq!(
                prev, s0,
                "the public delta covers the private events before it"
            );
            assert_eq!(seq, alloc.board(&batch.id).await.unwrap().seq);
            assert_eq!(changes.len(), 1);
        }
        other => panic!("expected one delta, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supplementary_selection_from_application_to_a_confirmed_unit() {
    use xuanfang_hub::protocol::{BoardChange, ClientMsg};
    use xuanfang_hub::selection::{NoUnitReason, Outcome};
    use xuanfang_hub::{Clock, Edit, ListKind, SessionKind, Stage, UnitId};
    let clock = manual_clock();
    let alloc = clocked_redis_engine(&namespace(), &clock).await;
    let mut batch = small_batch(
        "supp",
        Duration::from_millis(400),
        Duration::from_millis(1200),
    );
    // S2, the day's last formal session, 10 s after S1: F1 applies in between (the window
    // closes when S2 ends; the clock stands still meanwhile).
    batch.sessions[1].start = batch.sessions[0].deadline().plus_ms(10_000);
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = clocked_gateway(alloc.clone(), &clock, &batch.id).await;
    let base = format!("http://{}", gw.addr);
    let t = Duration::from_secs(30);

    // F1 never enters its formal session: at the deadline it gets no unit.
    let mut f1 = connect(gw.addr, Some(&family_token("F1")), Encoding::Json).await;
    clock.set(batch.sessions[0].deadline());
    let outcome = f1
        .until(t, |m| match m {
            ServerMsg::Family { family } => family.outcome.clone(),
            _ => None,
        })
        .await
        .expect("told its result");
    assert!(matches!(
        outcome,
        Outcome::NoUnit {
            reason: NoUnitReason::Absent,
            ..
        }
    ));

    // It applies in its window; the operator sees the application and publishes.
    let r = f1
        .request(|req_id| ClientMsg::ApplySupplementary { req_id })
        .await;
    assert!(is_ok(&r), "{r:?}");
    let http = reqwest::Client::new();
    let apps: serde_json::Value = http
        .get(format!("{base}/api/ops/applications"))
        .bearer_auth(operator_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(apps.as_array().unwrap().len(), 1);
    assert_eq!(apps[0]["family"], "F1");
    // 补选 comes after the day's applications close, when the last formal session ends.
    clock.set(batch.sessions[1].deadline());
    let start = clock.now().plus_ms(800);
    let resp = http
        .post(format!("{base}/api/ops/supplementary"))
        .bearer_auth(operator_token())
        .json(&serde_json::json!({ "start": start, "window_ms": 20_000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let info: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(info["kind"], "supplementary");
    assert_eq!(info["families"], 1);

    // F1 is moved into the supplementary session, and selects in it like a formal one.
    let session = f1
        .until(t, |m| match m {
            ServerMsg::Family { family } if family.session.kind == SessionKind::Supplementary => {
                Some(family.session.clone())
            }
            _ => None,
        })
        .await
        .expect("pushed into the supplementary session");
    assert_eq!(session.start, start);
    clock.set(start);
    let r = f1
        .request(|req_id| ClientMsg::Declare {
            req_id,
            stage: Stage::Formal,
        })
        .await;
    assert!(is_ok(&r), "{r:?}");
    let r = f1
        .request(|req_id| ClientMsg::Edit {
            req_id,
            list: ListKind::Intentions,
            edit: Edit::Add,
            unit: UnitId::from("U07"),
        })
        .await;
    assert!(is_ok(&r), "{r:?}");
    let r = f1
        .request(|req_id| ClientMsg::Confirm {
            req_id,
            unit: UnitId::from("U07"),
        })
        .await;
    assert!(is_ok(&r), "{r:?}");
    // A watcher that connects now sees the supplementary session and the unit taken
    // (in its snapshot, or in the delta right after when the hub had not broadcast yet).
    let mut w = connect(gw.addr, None, Encoding::MsgPack).await;
    let mut saw_session = false;
    let saw_unit = w
        .until(t, |m| match m {
            ServerMsg::Snapshot {
                taken, sessions, ..
            } => {
                saw_session |= sessions
                    .iter()
                    .any(|s| s.kind == SessionKind::Supplementary);
                taken
                    .iter()
                    .any(|x| x.unit == UnitId::from("U07"))
                    .then_some(())
            }
            ServerMsg::Delta { changes, .. } => changes
                .iter()
                .any(|c| matches!(c, BoardChange::Taken(x) if x.unit == UnitId::from("U07")))
                .then_some(()),
            _ => None,
        })
        .await;
    assert!(saw_unit.is_some(), "the confirmed unit reaches the board");
    assert!(saw_session, "the snapshot lists the supplementary session");

    // The exports keep both results: the formal one is not overwritten by the 补选.
    let text = http
        .get(format!("{base}/api/ops/results.csv"))
        .bearer_auth(operator_token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows = csv_rows(text.trim_start_matches('\u{feff}'));
    let f1 = rows
        .iter()
        .find(|r| r["家庭编号 family"] == "F1")
        .expect("F1's row");
    let local = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect()
    };
    assert_eq!(f1["正选场次 formal session"], "S1", "{f1:?}");
    assert_eq!(f1["正选结果 formal result"], "未参与 absent", "{f1:?}");
    assert_eq!(local(&f1["正选时间 formal at"]), "9999-99-99 99:99:99");
    assert_eq!(f1["补选场次 supplementary session"], session.id.as_str());
    assert_eq!(f1["补选结果 supplementary result"], "确认正选 confirmed");
    assert_eq!(
        local(&f1["补选时间 supplementary at"]),
        "9999-99-99 99:99:99"
    );
    assert_eq!(f1["房源 unit"], "U07");
    // F2 had no 补选: its supplementary cells are empty.
    let f2 = rows
        .iter()
        .find(|r| r["家庭编号 family"] == "F2")
        .expect("F2's row");
    assert_eq!(f2["补选场次 supplementary session"], "");
    assert_eq!(f2["补选结果 supplementary result"], "");

    let xlsx = http
        .get(format!("{base}/api/ops/results.xlsx"))
        .bearer_auth(operator_token())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let sheet = xlsx_rows(&xlsx);
    let f1 = sheet
        .iter()
        .find(|r| r["家庭编号"] == "F1")
        .expect("F1's row");
    assert_eq!(f1["正选场次"], "S1");
    assert_eq!(f1["正选结果"], "未参与 absent");
    assert_eq!(f1["补选场次"], session.id.as_str());
    assert_eq!(f1["补选结果"], "确认正选 confirmed");
    assert_eq!(f1["房源"], "U07");
}

/// A CSV export as header → cell maps, one per row.
fn csv_rows(text: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let head: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            head.iter()
                .cloned()
                .zip(rec.iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

/// The first sheet of an XLSX export as header → cell maps, one per row.
fn xlsx_rows(bytes: &[u8]) -> Vec<std::collections::HashMap<String, String>> {
    use calamine::Reader;
    let mut wb = calamine::Xlsx::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let range = wb.worksheet_range_at(0).unwrap().unwrap();
    let mut rows = range.rows();
    let head: Vec<String> = rows.next().unwrap().iter().map(|c| c.to_string()).collect();
    rows.map(|row| {
        head.iter()
            .cloned()
            .zip(row.iter().map(|c| c.to_string()))
            .collect()
    })
    .collect()
}

/// A template as the console downloads it: status, content type, body.
async fn template(base: &str, file: &str) -> (u16, String, Vec<u8>) {
    let r = reqwest::Client::new()
        .get(format!("{base}/api/ops/templates/{file}"))
        .bearer_auth(operator_token())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, kind, r.bytes().await.unwrap().to_vec())
}

/// Uploads a units and a families file unchanged as a new batch.
async fn upload_files(
    base: &str,
    batch_id: &str,
    (units_name, units): (&str, Vec<u8>),
    (families_name, families): (&str, Vec<u8>),
) -> (u16, serde_json::Value) {
    let form = reqwest::multipart::Form::new()
        .part(
            "units",
            reqwest::multipart::Part::bytes(units).file_name(units_name.to_owned()),
        )
        .part(
            "families",
            reqwest::multipart::Part::bytes(families).file_name(families_name.to_owned()),
        )
        .text("batch_id", batch_id.to_owned())
        .text("name", "模板批次")
        // The test's first batch is open for pre-selection: replacing it is deliberate.
        .text("replace", "true");
    let r = reqwest::Client::new()
        .post(format!("{base}/api/ops/batches"))
        .bearer_auth(operator_token())
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_templates_download_and_upload_unchanged_as_the_example_batch() {
    let alloc = redis_engine(&namespace()).await;
    let first = small_batch("before", Duration::from_secs(600), Duration::from_secs(60));
    alloc.load_batch(first.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &first.id).await;
    let base = format!("http://{}", gw.addr);

    // CSV templates: UTF-8 with a BOM, the Chinese headers, two example rows.
    let (status, kind, units_csv) = template(&base, "units.csv").await;
    assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"));
    let text = String::from_utf8(units_csv.clone()).unwrap();
    let text = text.strip_prefix('\u{feff}').expect("BOM for Excel");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "房源编号,楼栋,房号,楼层,户型,面积,朝向,租金");
    assert_eq!(lines.len(), 3, "{text}");
    let (status, _, families_csv) = template(&base, "families.csv").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(families_csv.clone()).unwrap();
    assert!(
        text.starts_with("\u{feff}家庭编号,姓名,排位,场次,可选户型,申请人全名,身份证号\n"),
        "{text}"
    );
    // XLSX templates: workbooks.
    let xlsx_kind = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    let (status, kind, units_xlsx) = template(&base, "units.xlsx").await;
    assert_eq!((status, kind.as_str()), (200, xlsx_kind));
    assert!(units_xlsx.starts_with(b"PK"), "a zip container");
    let (status, kind, families_xlsx) = template(&base, "families.xlsx").await;
    assert_eq!((status, kind.as_str()), (200, xlsx_kind));

    // Uploaded unchanged, each pair is accepted and makes the example batch.
    for (id, units, families) in [
        (
            "tpl-csv",
            ("units.csv", units_csv),
            ("families.csv", families_csv),
        ),
        (
            "tpl-xlsx",
            ("units.xlsx", units_xlsx),
            ("families.xlsx", families_xlsx),
        ),
    ] {
        let (status, body) = upload_files(&base, id, units, families).await;
        assert_eq!(status, 201, "{id}: {body}");
        let batch: serde_json::Value = reqwest::Client::new()
            .get(format!("{base}/api/ops/batch?batch={id}"))
            .bearer_auth(operator_token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let units: Vec<_> = batch["units"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u["id"].as_str().unwrap(),
                    u["building"].as_str().unwrap(),
                    u["number"].as_str().unwrap(),
                    u["floor"].as_i64().unwrap(),
                    u["layout"].as_str().unwrap(),
                    u["area"].as_f64().unwrap(),
                    u["orientation"].as_str().unwrap(),
                    u["rent"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            units,
            [
                ("1-101", "1栋", "101", 1, "一房一厅", 45.5, "南", 1200.0),
                ("1-102", "1栋", "102", 1, "两房一厅", 62.8, "南北", 1650.0),
            ],
            "{id}"
        );
        let families: Vec<_> = batch["families"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["id"].as_str().unwrap(),
                    f["name"].as_str().unwrap(),
                    f["rank"].as_u64().unwrap(),
                    f["eligible_layouts"].clone(),
                )
            })
            .collect();
        assert_eq!(
            families,
            [
                (
                    "F001",
                    "张*丰",
                    1,
                    serde_json::json!(["一房一厅", "两房一厅"])
                ),
                ("F002", "李*", 2, serde_json::json!(["两房一厅"])),
            ],
            "{id}"
        );
        // The empty 场次 column: the console's plan put both in one automatic session.
        assert_eq!(batch["sessions"].as_array().unwrap().len(), 1, "{id}");
    }
}
