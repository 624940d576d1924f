//! One engine per data directory: a second one would write the same journals.

use std::sync::Arc;

use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::AllocError;
use xuanfang_hub::SystemClock;

#[test]
fn a_second_engine_on_a_data_directory_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let first = EmbeddedEngine::open(dir.path(), Arc::new(SystemClock)).expect("first");
    match EmbeddedEngine::open(dir.path(), Arc::new(SystemClock)) {
        Err(AllocError::Locked { lock, .. }) => assert!(lock.ends_with("xuanfang.lock"), "{lock}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second engine opened the same directory"),
    }
    drop(first);
    EmbeddedEngine::open(dir.path(), Arc::new(SystemClock)).expect("reopen after the first closed");
}
