//! Each family's channel on this gateway: the latest view (a `watch`, latest wins),
//! shared after the family's own requests and pushed when something is decided for it.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::watch;
use xuanfang_hub::protocol::FamilyView;
use xuanfang_hub::FamilyId;

use super::BatchHub;

impl BatchHub {
    /// The latest view of a family on this gateway, pushed after each of its changes.
    pub fn watch_family(&self, f: &FamilyId) -> watch::Receiver<Option<Arc<FamilyView>>> {
        let mut fams = self.families.lock();
        fams.entry(f.clone())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Shares a view that a request's `ok` carried with the family's other connections
    /// on this gateway.
    /// Returns the shared copy, so the answering connection can skip it.
    pub fn share_view(&self, view: &FamilyView) -> Option<Arc<FamilyView>> {
        let sender = self.families.lock().get(&view.family)?.clone();
        if sender.receiver_count() < 2 {
            return None;
        }
        let shared = Arc::new(view.clone());
        sender.send_replace(Some(shared.clone()));
        Some(shared)
    }

    /// Pushes fresh views to the connected families of a session whose formal window has
    /// just opened, so phones switch to formal selection on the server's word.
    pub async fn session_started(&self, session: &xuanfang_hub::SessionId) {
        let families: HashSet<FamilyId> = {
            let statics = self.statics.lock();
            statics
                .session(session)
                .map(|s| s.families.iter().cloned().collect())
                .unwrap_or_default()
        };
        self.push_family_views(families).await;
    }

    pub(super) async fn push_family_views(&self, affected: HashSet<FamilyId>) {
        let targets: Vec<_> = {
            let mut fams = self.families.lock();
            fams.retain(|_, s| s.receiver_count() > 0);
            affected
                .into_iter()
                .filter_map(|f| fams.get(&f).map(|s| (f, s.clone())))
                .collect()
        };
        for (f, sender) in targets {
            match self.alloc.family(&self.batch, &f).await {
                Ok(view) => {
                    sender.send_replace(Some(Arc::new(view)));
                }
                Err(e) => tracing::warn!(family = %f, "family view failed: {e}"),
            }
        }
    }
}
