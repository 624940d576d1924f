//! The reconciliation sweep (对账): a periodic task, one per gateway process, that asks
//! the payment provider about the orders of every signing record and feeds a payment it
//! finds through the same path as a notification ([`receive_payment`]), so a payment
//! whose notification never arrived still completes the deposit (or, refused, is
//! refunded). It also refunds payments voided by a rejection of the deposit, asks
//! again the refunds the provider has not answered, and queries the outcome of those it
//! accepted (a lost refund notification still settles the refund ledger).
//!
//! Several gateways may sweep at once: a payment fed twice is one request to the engine
//! (the request id is the transaction's) and the hub's rules take a payment once. The
//! refund ledger is the deployment's, so each sweep asks again and queries every
//! gateway's refunds; a refund number is refunded once by the provider, and an outcome
//! recorded once ([`crate::refunds`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use xuanfang_allocator::SigningFilter;
use xuanfang_hub::signing::Deposit;

use crate::app::App;
use crate::providers::payment::OrderQuery;
use crate::signing_api::notify::{receive_payment, refund_voided};

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Orders asked of the provider.
    pub queried: usize,
    /// Payments found and given to the engine (taken or refused).
    pub payments_found: usize,
    /// Voided payments whose refund was started.
    pub voided_refunds: usize,
    /// Refunds asked again and answered.
    pub refunds_retried: usize,
    /// Refunds accepted earlier whose outcome (succeeded / failed) the query recorded.
    pub refunds_settled: usize,
    /// Calls that failed (asked again next time).
    pub errors: usize,
}

/// The sweep's memory: orders with a final answer are not asked again by this process
/// (a restarted one asks each once more).
#[derive(Default)]
pub struct Reconciler {
    settled: Mutex<HashSet<String>>,
}

impl Reconciler {
    /// One pass over every batch's signing records.
    pub async fn sweep(&self, app: &App) -> SweepReport {
        let mut rep = SweepReport::default();
        let Some(sg) = app.signing() else {
            return rep;
        };
        let Some(pay) = sg.payment.clone() else {
            return rep;
        };
        let batches = match app.alloc.batches().await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("reconciliation: no batches: {e}");
                rep.errors += 1;
                return rep;
            }
        };
        for batch in batches {
            let records = match sg.store.signing_queue(&batch, SigningFilter::All).await {
                Ok(r) => r,
                // A batch without signing (or an engine without a data key).
                Err(_) => continue,
            };
            for r in records {
                rep.voided_refunds += refund_voided(sg, &batch, &r, app.now()).await;
                let current = match r.deposit() {
                    Deposit::Ordered(o) => Some(o.clone()),
                    _ => None,
                };
                let paid = match r.deposit() {
                    Deposit::Paid(p) => Some(p.out_trade_no.clone()),
                    _ => None,
                };
                for no in r.orders() {
                    if paid.as_deref() == Some(no.as_str()) || self.settled.lock().contains(no) {
                        continue;
                    }
                    rep.queried += 1;
                    match pay.query_order(&batch, no).await {
                        Ok(OrderQuery::Paid(n)) => {
                            rep.payments_found += 1;
                            match receive_payment(sg, n, app.now()).await {
                                Ok(_) => {
                                    self.settled.lock().insert(no.clone());
                                }
                                Err(e) => {
                                    rep.errors += 1;
                                    tracing::warn!(code = ?e.code, "reconciliation: payment not recorded");
                                }
                            }
                        }
                        Ok(OrderQuery::Open | OrderQuery::Closed | OrderQuery::Unknown) => {
                            // An order replaced, or past its expiry here, can no longer be
                            // paid at the provider (which stops a minute earlier): final.
                            let live = current
                                .as_ref()
                                .is_some_and(|o| &o.out_trade_no == no && app.now() < o.expires_at);
                            if !live {
                                self.settled.lock().insert(no.clone());
                            }
                        }
                        Err(e) => {
                            rep.errors += 1;
                            tracing::warn!(order = %no, "reconciliation: query failed: {e}");
                        }
                    }
                }
            }
        }
        rep.refunds_retried = sg.refunds.retry_asked(&*pay, app.now()).await;
        let (settled, errors) = sg.refunds.query_pending(&*pay, app.now()).await;
        rep.refunds_settled = settled;
        rep.errors += errors;
        rep
    }

    /// Sweeps every `every` until the process ends.
    pub fn spawn(self: Arc<Self>, app: Arc<App>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let rep = self.sweep(&app).await;
                if rep != SweepReport::default() {
                    tracing::info!(?rep, "reconciliation sweep");
                }
            }
        })
    }
}
