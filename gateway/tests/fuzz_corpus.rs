//! The gateway's fuzz corpus, replayed: every committed input of the token, key-set,
//! upload and image targets (`fuzz/gateway/`) through the checks the fuzzer runs
//! (`fuzz/checks/`), on stable Rust. A crash the fuzzer finds is fixed with its input in
//! `fuzz/gateway/regressions/`.

#[path = "../../fuzz/checks/auth.rs"]
mod auth;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;
#[path = "../../fuzz/checks/runtime.rs"]
mod runtime;
#[path = "../../fuzz/checks/upload.rs"]
mod upload;

use replay::replay;

#[test]
fn jwt() {
    replay("gateway", "jwt", |d| {
        auth::token(d);
    });
}

#[test]
fn jwks() {
    replay("gateway", "jwks", |d| {
        auth::key_set(d);
    });
}

#[test]
fn upload_details() {
    replay("gateway", "upload_details", |d| {
        upload::details(d);
    });
}

#[test]
fn upload_signature() {
    replay("gateway", "upload_signature", |d| {
        upload::signature(d);
    });
}

#[test]
fn upload_batch() {
    replay("gateway", "upload_batch", |d| {
        upload::batch(d);
    });
}

#[test]
fn image() {
    replay("gateway", "image", |d| {
        upload::image(d);
    });
}

/// The seeds get past every refusal, so the fuzzer starts where the server accepts (and a
/// seed that rots, say a token whose key changed, fails here rather than going quiet).
#[test]
fn the_seeds_are_accepted_where_the_server_accepts() {
    let seed = |target: &str, name: &str| {
        let path = format!(
            "{}/../fuzz/gateway/corpus/{target}/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    // HS256 and the key set each accept theirs; the RS256 key is also in the set.
    for (name, verifiers) in [
        ("hs256-family", 1),
        ("hs256-operator", 1),
        ("rs256-kid", 2),
        ("es256-kid", 1),
        ("eddsa-kid", 1),
    ] {
        assert_eq!(auth::token(&seed("jwt", name)), verifiers, "{name}");
    }
    for refused in ["hs256-expired", "alg-none", "hs256-with-rsa-public-key"] {
        assert_eq!(auth::token(&seed("jwt", refused)), 0, "{refused}");
    }
    assert_eq!(auth::key_set(&seed("jwks", "set.json")), 4);
    assert_eq!(auth::key_set(&seed("jwks", "oct.json")), 0);
    assert!(upload::details(&seed(
        "upload_details",
        "details.multipart"
    )));
    assert!(upload::signature(&seed(
        "upload_signature",
        "signature.multipart"
    )));
    assert!(upload::batch(&seed("upload_batch", "csv.multipart")));
    assert!(upload::batch(&seed("upload_batch", "xlsx.multipart")));
    for image in ["rgb.png", "gray-alpha.png", "gray.jpg", "exif.jpg"] {
        assert!(upload::image(&seed("image", image)), "{image}");
    }
}
