//! The conformance suite against the embedded engine: in memory, and journaling to
//! disk (every change fsynced before its reply, so the durable path is held to the
//! same rules).

use std::sync::Arc;

use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::Allocator;
use xuanfang_hub::ManualClock;

async fn in_memory_engine(clock: Arc<ManualClock>) -> Arc<dyn Allocator> {
    Arc::new(EmbeddedEngine::in_memory(clock))
}

async fn journaled_engine(clock: Arc<ManualClock>) -> Arc<dyn Allocator> {
    // Under the target dir: a real disk (fsync is real), and left for inspection.
    let dir = tempfile::Builder::new()
        .prefix("conformance-journal-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    Arc::new(EmbeddedEngine::open(&dir, clock).expect("open journal dir"))
}

mod in_memory {
    conformance_suite!(super::in_memory_engine);
}

mod journaled {
    conformance_suite!(super::journaled_engine);
}
