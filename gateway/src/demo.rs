//! `xuanfang demo`: a realistic batch on the embedded engine, login links, and bots
//! that play families so the screens move.

use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use xuanfang_allocator::Allocator;
use xuanfang_hub::demo::{demo_batch, DemoOptions};
use xuanfang_hub::{
    Action, Batch, BatchId, Edit, ErrorCode, FamilyId, ListKind, Millis, Phase, Stage, UnitId,
};

use crate::auth::{Auth, Role};

/// One family's demo login.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DemoLogin {
    pub family: FamilyId,
    pub name: String,
    pub rank: u32,
    pub session: String,
    pub session_start: Millis,
    pub token: String,
    pub url: String,
}

/// What `/api/demo/logins` shows.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DemoInfo {
    pub operator_url: String,
    pub hall_url: String,
    pub families: Vec<DemoLogin>,
    /// Whether the demo mints with its own secret, and so answers `/api/demo/refresh`.
    #[serde(skip)]
    pub mints: bool,
    /// Lifetime of the tokens it mints (logins and refreshes), in seconds.
    #[serde(skip)]
    pub token_ttl_secs: u64,
}

/// Lifetime of the demo's tokens unless `--token-ttl` says otherwise: a day.
pub const DEMO_TOKEN_TTL: u64 = 24 * 3600;

/// The demo's page links when its tokens are not its own to give (a secret was passed):
/// no login tokens at all.
pub fn without_logins(base: &str) -> DemoInfo {
    DemoInfo {
        operator_url: format!("{base}/console"),
        hall_url: format!("{base}/hall"),
        families: Vec::new(),
        mints: false,
        token_ttl_secs: DEMO_TOKEN_TTL,
    }
}

/// Shape of the demo batch.
#[derive(Clone, Debug)]
pub struct DemoShape {
    pub units: usize,
    pub families: usize,
    pub session_size: usize,
    pub first_session_in: Duration,
    pub session_interval: Duration,
    pub window: Duration,
    pub seed: u64,
}

pub fn make_batch(shape: &DemoShape, now: Millis) -> Batch {
    let mut o = DemoOptions::starting_at(now, shape.first_session_in.as_millis() as i64);
    o.id = BatchId(format!("demo-{}", now.0));
    o.units = shape.units;
    o.families = shape.families;
    o.session_size = shape.session_size;
    o.session_interval_ms = shape.session_interval.as_millis() as i64;
    o.window_ms = shape.window.as_millis() as i64;
    o.seed = shape.seed;
    demo_batch(o)
}

/// Login links for every family, tokens valid for `ttl` seconds (the demo also
/// refreshes them: `/api/demo/refresh`).
pub fn logins(batch: &Batch, auth: &Auth, base: &str, ttl: u64) -> DemoInfo {
    let families = batch
        .families
        .iter()
        .filter_map(|f| {
            let token = auth.mint(f.id.as_str(), Role::Family, ttl).ok()?;
            let start = batch.session(&f.session)?.start;
            Some(DemoLogin {
                family: f.id.clone(),
                name: f.name.clone(),
                rank: f.rank,
                session: f.session.to_string(),
                session_start: start,
                url: format!("{base}/app?token={token}"),
                token,
            })
        })
        .collect();
    let op = auth
        .mint("demo-operator", Role::Operator, ttl)
        .unwrap_or_default();
    DemoInfo {
        operator_url: format!("{base}/console?token={op}"),
        hall_url: format!("{base}/hall"),
        families,
        mints: true,
        token_ttl_secs: ttl,
    }
}

/// Starts `n` bots, each playing one family through the real allocator calls: a few
/// confirm early, most confirm mid-window, some stay idle to be auto-confirmed.
pub fn spawn_bots(alloc: Arc<dyn Allocator>, batch: &Batch, n: usize, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut families: Vec<_> = batch.families.iter().map(|f| f.id.clone()).collect();
    families.shuffle(&mut rng);
    for (i, f) in families.into_iter().take(n).enumerate() {
        let alloc = alloc.clone();
        let b = batch.clone();
        let seed = seed.wrapping_add(i as u64 + 1);
        tokio::spawn(async move {
            if let Err(e) = play(alloc, b, f.clone(), seed).await {
                tracing::debug!(family = %f, "bot stopped: {e}");
            }
        });
    }
}

async fn play(
    alloc: Arc<dyn Allocator>,
    batch: Batch,
    family: FamilyId,
    seed: u64,
) -> Result<(), xuanfang_allocator::AllocError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let id = batch.id.clone();
    let mut n = 0u64;
    let mut act = |a: Action| {
        n += 1;
        let alloc = alloc.clone();
        let (id, family) = (id.clone(), family.clone());
        async move { alloc.act(&id, &family, &format!("bot-{n}"), a).await }
    };
    let Some(f) = batch.family(&family).cloned() else {
        return Ok(());
    };
    // Pre-select a few eligible units, spread over the session's remaining stock.
    tokio::time::sleep(Duration::from_millis(rng.random_range(500..8000))).await;
    act(Action::Declare {
        stage: Stage::Preselection,
    })
    .await?
    .ok();
    let mut wanted: Vec<UnitId> = batch
        .units
        .iter()
        .filter(|u| f.eligible_layouts.contains(&u.layout))
        .map(|u| u.id.clone())
        .collect();
    wanted.shuffle(&mut rng);
    for u in wanted.iter().take(8) {
        let r = act(Action::Edit {
            list: ListKind::Cart,
            edit: Edit::Add,
            unit: u.clone(),
        })
        .await?;
        if matches!(&r, Err(rej) if rej.code == ErrorCode::ListFull) {
            break;
        }
    }
    // Formal selection: wait for the session, then confirm at a random moment.
    let view = alloc.family(&id, &family).await?;
    let now = alloc.now().await?;
    let window = view.session.deadline.0 - view.session.start.0;
    let at = view.session.start.0 + (window as f64 * rng.random_range(0.05..0.7)) as i64;
    if at > now.0 {
        tokio::time::sleep(Duration::from_millis((at - now.0) as u64)).await;
    }
    act(Action::Declare {
        stage: Stage::Formal,
    })
    .await?
    .ok();
    act(Action::Sync).await?.ok();
    // One bot in five stays idle: the deadline decides for it.
    if rng.random_ratio(1, 5) {
        return Ok(());
    }
    let view = alloc.family(&id, &family).await?;
    if view.phase != Phase::Formal {
        return Ok(());
    }
    for u in view.intentions {
        match act(Action::Confirm { unit: u }).await? {
            Ok(_) => return Ok(()),
            Err(rej) if rej.code == ErrorCode::UnitTaken => continue,
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}
