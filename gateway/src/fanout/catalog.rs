//! The catalog (units and sessions) of a batch, encoded once per change and served as
//! cached bytes with an ETag: an anonymous endpoint that every phone and screen asks for
//! must not cost work that grows with the batch on each request.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use xuanfang_hub::protocol::Catalog;

use super::BatchHub;

/// The catalog as JSON bytes and its entity tag.
#[derive(Debug)]
pub struct CatalogBytes {
    pub json: Bytes,
    /// A strong ETag (quoted), from the bytes' hash.
    pub etag: String,
}

impl BatchHub {
    /// The catalog as served: built from this hub's statics and board (so it agrees with
    /// the board clients follow), encoded once until a session is added or closed.
    pub fn catalog(&self) -> Arc<CatalogBytes> {
        if let Some(c) = self.catalog.lock().as_ref() {
            return c.clone();
        }
        let catalog = {
            let statics = self.statics.lock();
            let mut sessions = self.board.lock().sessions.clone();
            sessions.sort_by_key(|s| (s.start, s.first_rank));
            Catalog {
                batch: statics.id.clone(),
                name: statics.name.clone(),
                preselect_start: statics.preselect_start,
                preselect_end: statics.preselect_end,
                units: statics.units.clone(),
                sessions,
                list_cap: xuanfang_hub::rules::LIST_CAP,
            }
        };
        // Our own types always serialise; an empty body would be a bug worth seeing.
        let json = Bytes::from(serde_json::to_vec(&catalog).unwrap_or_default());
        let mut h = std::collections::hash_map::DefaultHasher::new();
        json.hash(&mut h);
        let built = Arc::new(CatalogBytes {
            etag: format!("\"{:016x}-{}\"", h.finish(), json.len()),
            json,
        });
        *self.catalog.lock() = Some(built.clone());
        built
    }

    /// Forgets the encoded catalog (a session was added or closed).
    pub(super) fn catalog_changed(&self) {
        *self.catalog.lock() = None;
    }
}
