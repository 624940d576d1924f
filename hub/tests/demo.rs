//! The demo generator makes valid, realistic, reproducible batches.

use std::collections::HashSet;

use xuanfang_hub::demo::{demo_batch, DemoOptions};
use xuanfang_hub::{Millis, Selection, SessionKind};

#[test]
fn default_demo_batch_validates_and_has_the_advertised_shape() {
    let b = demo_batch(DemoOptions::default());
    b.validate().unwrap();
    Selection::new(b.clone()).unwrap();
    assert_eq!(b.units.len(), 400);
    assert_eq!(b.families.len(), 600);
    assert_eq!(b.sessions.len(), 12);
    assert!(b.sessions.iter().all(|s| s.families.len() == 50));
    assert!(b.sessions.iter().all(|s| s.kind == SessionKind::Formal));
    let buildings: HashSet<&str> = b.units.iter().map(|u| u.building.as_str()).collect();
    assert_eq!(buildings, HashSet::from(["1栋", "2栋", "3栋"]));
    let layouts: HashSet<&str> = b.units.iter().map(|u| u.layout.as_str()).collect();
    assert_eq!(layouts, HashSet::from(["一房一厅", "两房一厅", "三房一厅"]));
}

#[test]
fn demo_units_are_realistic() {
    let b = demo_batch(DemoOptions::default());
    for u in &b.units {
        assert!((35.0..=90.0).contains(&u.area), "{u:?}");
        assert!(u.rent > 500.0 && u.rent < 5000.0, "{u:?}");
        assert!((2..=31).contains(&u.floor), "{u:?}");
        assert!(["南", "北", "东南", "西南", "东", "西"].contains(&u.orientation.as_str()));
        assert!(u.number.starts_with(&u.floor.to_string()), "{u:?}");
    }
    // Bigger flats are larger on average.
    let avg = |l: &str| {
        let v: Vec<f64> = b
            .units
            .iter()
            .filter(|u| u.layout.as_str() == l)
            .map(|u| u.area)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(avg("一房一厅") < avg("两房一厅") && avg("两房一厅") < avg("三房一厅"));
}

#[test]
fn demo_families_are_masked_ranked_and_scheduled_in_order() {
    let opts = DemoOptions::default();
    let b = demo_batch(opts.clone());
    let ranks: Vec<u32> = b.families.iter().map(|f| f.rank).collect();
    assert_eq!(ranks, (1..=600).collect::<Vec<_>>());
    for f in &b.families {
        assert!(f.name.contains('*'), "unmasked name {}", f.name);
        assert!(!f.eligible_layouts.is_empty());
        let s = b.session(&f.session).unwrap();
        assert!(s.families.contains(&f.id));
    }
    for (i, s) in b.sessions.iter().enumerate() {
        assert_eq!(
            s.start,
            opts.first_session_start
                .plus_ms(opts.session_interval_ms * i as i64)
        );
        assert_eq!(s.window_ms, opts.window_ms);
    }
    assert!(b.preselect_start < b.sessions[0].start);
    // Every family can find at least one unit of a layout it may take.
    let layouts: HashSet<_> = b.units.iter().map(|u| &u.layout).collect();
    assert!(b
        .families
        .iter()
        .all(|f| f.eligible_layouts.iter().any(|l| layouts.contains(l))));
}

#[test]
fn demo_batch_is_deterministic_per_seed() {
    let a = demo_batch(DemoOptions::default());
    let b = demo_batch(DemoOptions::default());
    assert_eq!(a, b);
    let c = demo_batch(DemoOptions {
        seed: 2,
        ..DemoOptions::default()
    });
    assert_ne!(a, c);
}

#[test]
fn demo_options_are_honoured_and_odd_values_still_validate() {
    let b = demo_batch(DemoOptions {
        units: 37,
        families: 101,
        session_size: 10,
        session_interval_ms: 60_000,
        window_ms: 30_000,
        first_session_start: Millis(5_000_000),
        preselect_start: Millis(1_000),
        seed: 9,
        ..DemoOptions::default()
    });
    b.validate().unwrap();
    assert_eq!(b.units.len(), 37);
    assert_eq!(b.families.len(), 101);
    assert_eq!(b.sessions.len(), 11);
    assert_eq!(b.sessions[10].families.len(), 1);
    assert_eq!(b.sessions[1].start, Millis(5_060_000));
    assert_eq!(b.preselect_start, Millis(1_000));

    let tiny = demo_batch(DemoOptions {
        units: 0,
        families: 0,
        session_size: 0,
        window_ms: 0,
        ..DemoOptions::default()
    });
    tiny.validate().unwrap();
    assert_eq!((tiny.units.len(), tiny.families.len()), (1, 1));
}

#[test]
fn starting_at_opens_preselection_now() {
    let now = Millis(1_800_000_000_000);
    let b = demo_batch(DemoOptions::starting_at(now, 600_000));
    b.validate().unwrap();
    assert_eq!(b.preselect_start, now);
    assert_eq!(b.sessions[0].start, now.plus_ms(600_000));
}

#[test]
fn a_small_demo_still_offers_every_layout() {
    use std::collections::HashSet;
    let b = xuanfang_hub::demo::demo_batch(xuanfang_hub::demo::DemoOptions {
        units: 40,
        families: 20,
        ..Default::default()
    });
    let layouts: HashSet<_> = b.units.iter().map(|u| u.layout.as_str()).collect();
    assert_eq!(layouts.len(), 3, "{layouts:?}");
    b.validate().unwrap();
}
