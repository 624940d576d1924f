//! Realistic demo batches: three towers of public-rental flats, a few hundred families
//! with masked Chinese names, sessions of fifty every few minutes.
//!
//! Deterministic per seed, so a demo, a load test and a bug report can all name the
//! same batch by its options.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::domain::{
    Batch, BatchId, Family, FamilyId, Layout, Session, SessionId, SessionKind, Unit, UnitId,
    DEFAULT_WINDOW_MS,
};
use crate::import::mask_name;
use crate::time::Millis;

/// 一房一厅.
pub const ONE_BEDROOM: &str = "一房一厅";
/// 两房一厅.
pub const TWO_BEDROOM: &str = "两房一厅";
/// 三房一厅.
pub const THREE_BEDROOM: &str = "三房一厅";

/// What demo batch to make. Counts below 1 are raised to 1 and a window that is not
/// positive becomes the guide's 3 minutes, so every option set gives a valid batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoOptions {
    pub id: BatchId,
    pub name: String,
    /// Units in the pool (default 400).
    pub units: usize,
    /// Families (default 600; more families than units, as in real rounds).
    pub families: usize,
    /// Families per formal session (default 50).
    pub session_size: usize,
    /// Time between session starts (default 5 minutes).
    pub session_interval_ms: i64,
    /// Formal window of each session (default 3 minutes).
    pub window_ms: i64,
    /// Start of the first session (default 2025-06-07 09:00 Beijing time).
    pub first_session_start: Millis,
    /// Opening of pre-selection (default two days before the first session).
    pub preselect_start: Millis,
    /// Seed of the generator (default 1).
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            id: BatchId::new("demo"),
            name: "2025年第二批公共租赁住房网上选房（演示）".to_owned(),
            units: 400,
            families: 600,
            session_size: 50,
            session_interval_ms: 5 * 60_000,
            window_ms: DEFAULT_WINDOW_MS,
            // 2025-06-07T09:00+08:00 and 2025-06-05T09:00+08:00.
            first_session_start: Millis(1_749_258_000_000),
            preselect_start: Millis(1_749_085_200_000),
            seed: 1,
        }
    }
}

impl DemoOptions {
    /// Defaults shifted so pre-selection is open at `now` and the first session starts
    /// `lead_ms` later: what a live demo wants.
    pub fn starting_at(now: Millis, lead_ms: i64) -> Self {
        Self {
            preselect_start: now,
            first_session_start: now.plus_ms(lead_ms),
            ..Self::default()
        }
    }
}

const BUILDINGS: [&str; 3] = ["1栋", "2栋", "3栋"];
const SURNAMES: [&str; 40] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "罗", "高", "郑", "梁", "谢", "宋", "唐", "许", "邓", "冯", "韩", "曹", "曾", "彭",
    "萧", "蔡", "潘", "田", "董", "袁", "欧阳", "司马",
];
const GIVEN: [&str; 40] = [
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "桂", "英", "华", "建", "文", "晓", "红", "玉", "兰", "海", "燕",
    "志", "国", "鹏", "辉", "婷", "雪", "嘉", "俊",
];

/// A demo batch; it always passes [`Batch::validate`].
pub fn demo_batch(opts: DemoOptions) -> Batch {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let units = demo_units(&mut rng, opts.units.max(1));
    let families_n = opts.families.max(1);
    let session_size = opts.session_size.max(1);
    let window_ms = if opts.window_ms > 0 {
        opts.window_ms
    } else {
        DEFAULT_WINDOW_MS
    };

    let mut families = Vec::with_capacity(families_n);
    let mut sessions: Vec<Session> = Vec::new();
    let width = families_n.div_ceil(session_size).to_string().len().max(2);
    for i in 0..families_n {
        let s = i / session_size;
        if sessions.len() == s {
            sessions.push(Session {
                id: SessionId(format!("S{:0width$}", s + 1)),
                kind: SessionKind::Formal,
                start: opts
                    .first_session_start
                    .plus_ms(opts.session_interval_ms * s as i64),
                window_ms,
                families: Vec::with_capacity(session_size),
            });
        }
        let id = FamilyId(format!("F{:04}", i + 1));
        sessions[s].families.push(id.clone());
        families.push(Family {
            id,
            name: mask_name(&random_name(&mut rng)),
            rank: i as u32 + 1,
            session: sessions[s].id.clone(),
            eligible_layouts: eligible_for_household(rng.random_range(1..=5)),
        });
    }

    Batch {
        id: opts.id,
        name: opts.name,
        preselect_start: opts.preselect_start,
        preselect_end: None,
        utc_offset_minutes: 480,
        units,
        families,
        sessions,
    }
}

/// The layouts a household of `members` people may take, as Shenzhen's public-rental
/// rules roughly have it: singles a one-bedroom, couples up to two, larger up to three.
pub fn eligible_for_household(members: u32) -> Vec<Layout> {
    let l = |s: &str| Layout::new(s);
    match members {
        0 | 1 => vec![l(ONE_BEDROOM)],
        2 => vec![l(ONE_BEDROOM), l(TWO_BEDROOM)],
        3 => vec![l(TWO_BEDROOM)],
        _ => vec![l(TWO_BEDROOM), l(THREE_BEDROOM)],
    }
}

fn random_name(rng: &mut StdRng) -> String {
    let mut name = SURNAMES.choose(rng).copied().unwrap_or("王").to_owned();
    let given_len = if rng.random_bool(0.7) { 2 } else { 1 };
    for _ in 0..given_len {
        name.push_str(GIVEN.choose(rng).copied().unwrap_or("明"));
    }
    name
}

/// Units spread over the three towers, filled from the 2nd floor up (the ground floor
/// is shops and lobby), with the same plan on every floor of a tower.
fn demo_units(rng: &mut StdRng, n: usize) -> Vec<Unit> {
    let mut units = Vec::with_capacity(n);
    for (b, building) in BUILDINGS.iter().enumerate() {
        // An even share, the first towers taking the remainder.
        let share = n / BUILDINGS.len() + usize::from(b < n % BUILDINGS.len());
        if share == 0 {
            continue;
        }
        let floors: usize = rng.random_range(20..=30);
        // At least four flats a floor, so even a small demo has every layout.
        let per_floor = share.div_ceil(floors - 1).max(4.min(share));
        let plan: Vec<(&str, f64, &str)> =
            (0..per_floor).map(|p| floor_plan(p, per_floor)).collect();
        // Rent per m² differs a little per tower (location, age).
        let rate: f64 = rng.random_range(28.0..42.0);
        for k in 0..share {
            let floor = (k / per_floor + 2) as i32;
            let pos = k % per_floor;
            let (layout, base_area, orientation) = plan[pos];
            let area = round2(base_area + rng.random_range(-2.5..2.5));
            let number = format!("{floor}{:02}", pos + 1);
            units.push(Unit {
                id: UnitId(format!("{}-{number}", b + 1)),
                building: (*building).to_owned(),
                number,
                floor,
                layout: Layout::new(layout),
                area,
                orientation: orientation.to_owned(),
                rent: (area * rate).round(),
            });
        }
    }
    units
}

/// The layout, typical area and orientation of flat `p` of `n` on a floor: large
/// flats at the south-facing ends, small ones along the corridor.
fn floor_plan(p: usize, n: usize) -> (&'static str, f64, &'static str) {
    const ORIENTATIONS: [&str; 6] = ["南", "北", "东南", "西南", "东", "西"];
    let orientation = ORIENTATIONS[p % ORIENTATIONS.len()];
    if n >= 4 && (p == 0 || p + 1 == n) {
        let o = if p == 0 { "东南" } else { "西南" };
        return (THREE_BEDROOM, 80.0 + (p % 3) as f64 * 3.0, o);
    }
    if p % 2 == 1 {
        (TWO_BEDROOM, 58.0 + (p % 4) as f64 * 3.0, orientation)
    } else {
        (ONE_BEDROOM, 38.0 + (p % 5) as f64 * 2.5, orientation)
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
