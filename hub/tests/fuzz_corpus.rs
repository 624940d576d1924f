//! The hub's fuzz corpus, replayed: every committed input of the wire and import targets
//! (`fuzz/hub/`) through the checks the fuzzer runs (`fuzz/checks/`), on stable Rust.
//! A crash the fuzzer finds is fixed with its input in `fuzz/hub/regressions/`.

#[path = "../../fuzz/checks/import.rs"]
mod import;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;
#[path = "../../fuzz/checks/wire.rs"]
mod wire;

use replay::replay;
use xuanfang_hub::import::Format;
use xuanfang_hub::protocol::Encoding;

#[test]
fn wire_json() {
    replay("hub", "wire_json", |d| {
        wire::frame(Encoding::Json, d);
    });
}

#[test]
fn wire_msgpack() {
    replay("hub", "wire_msgpack", |d| {
        wire::frame(Encoding::MsgPack, d);
    });
}

#[test]
fn import_csv() {
    replay("hub", "import_csv", |d| {
        import::sheet(Format::Csv, d);
    });
}

#[test]
fn import_xlsx() {
    replay("hub", "import_xlsx", |d| {
        import::sheet(Format::Xlsx, d);
    });
}

/// The seeds get past every refusal, so the fuzzer starts where the server accepts (and a
/// seed that rots fails here rather than going quiet).
#[test]
fn the_seeds_are_accepted_where_the_server_accepts() {
    let dir = |target: &str| format!("{}/../fuzz/hub/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
    let read = |target: &str, name: &str| {
        let path = format!("{}/{name}", dir(target));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    // Every message of docs/protocol.md, in both encodings.
    for (target, enc) in [
        ("wire_json", Encoding::Json),
        ("wire_msgpack", Encoding::MsgPack),
    ] {
        let mut seeds = 0;
        for entry in std::fs::read_dir(dir(target)).unwrap() {
            let path = entry.unwrap().path();
            assert!(
                wire::frame(enc, &std::fs::read(&path).unwrap()),
                "{}",
                path.display()
            );
            seeds += 1;
        }
        assert!(seeds >= 17, "{target}: {seeds} seeds");
    }
    assert_eq!(
        import::sheet(Format::Csv, &read("import_csv", "units.csv")),
        (true, false)
    );
    assert_eq!(
        import::sheet(Format::Csv, &read("import_csv", "units-bom.csv")),
        (true, false)
    );
    assert_eq!(
        import::sheet(Format::Csv, &read("import_csv", "families.csv")),
        (false, true)
    );
    assert_eq!(
        import::sheet(Format::Xlsx, &read("import_xlsx", "units.xlsx")),
        (true, false)
    );
    assert_eq!(
        import::sheet(Format::Xlsx, &read("import_xlsx", "families.xlsx")),
        (false, true)
    );
}
