//! Each family's channel on this gateway: the latest view (a `watch`, latest wins),
//! shared after the family's own requests and pushed when something is decided for it.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use tokio::sync::watch;
use xuanfang_hub::protocol::FamilyView;
use xuanfang_hub::FamilyId;

use super::BatchHub;

/// Family views read at once when many families must be told something (a session
/// start, a deadline's auto-confirms): one at a time, each read waits for a Redis turn
/// (an fsync), and the last of 2,000 families heard seconds late. Bounded, so the push
/// does not crowd out the families' own requests at the same moment.
const PUSH_READS_IN_FLIGHT: usize = 64;

/// Puts `view` in a family's channel unless the channel holds a newer one: a view read
/// before a family's request can arrive after that request's view was shared.
fn offer(sender: &watch::Sender<Option<Arc<FamilyView>>>, view: Arc<FamilyView>) -> bool {
    sender.send_if_modified(|held| {
        if held.as_ref().is_some_and(|h| view.older_than(h)) {
            return false;
        }
        *held = Some(view.clone());
        true
    })
}

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
        offer(&sender, shared.clone()).then_some(shared)
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
        stream::iter(targets)
            .for_each_concurrent(PUSH_READS_IN_FLIGHT, |(f, sender)| async move {
                match self.alloc.family(&self.batch, &f).await {
                    Ok(view) => {
                        offer(&sender, Arc::new(view));
                    }
                    Err(e) => tracing::warn!(family = %f, "family view failed: {e}"),
                }
            })
            .await;
    }
}
