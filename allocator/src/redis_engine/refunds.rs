//! The deployment's refund ledger: every gateway's record of the refunds it asked of the
//! payment provider, in one hash ([`keys::refunds`]: refund number -> record).
//!
//! The engine stores the records without reading them: they are the gateway's JSON, and
//! the gateway decides every change (`xuanfang_gateway::refunds`) on the record it read,
//! then writes it with [`RedisEngine::swap_refund_record`], a compare-and-set
//! (`refund_swap.lua`), so two gateways deciding on one refund at once cannot both win.
//!
//! One key for the whole deployment, not one per batch: a provider's refund notification
//! names the refund number only. In a Redis Cluster that key lives in one slot, which the
//! few refunds of a deployment (a handful per batch) do not strain. A swap is an
//! acknowledged write ([`RedisEngine::write`]): in Sentinel mode it is answered only once
//! a replica has it, so an answered refund record survives a failover like a confirm.

use std::collections::HashMap;

use redis::AsyncCommands;

use super::{keys, reply, scripts, RedisEngine};
use crate::contract::AllocError;

/// What [`RedisEngine::swap_refund_record`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Swapped {
    /// The new record is stored.
    Done,
    /// The stored record was not the expected one: nothing written. The record stored
    /// (`None`: none), for a caller that compares records rather than texts.
    Lost(Option<String>),
}

impl RedisEngine {
    /// The record of refund `no`, if any.
    pub async fn refund_record(&self, no: &str) -> Result<Option<String>, AllocError> {
        Ok(self.conn().hget(keys::refunds(&self.namespace), no).await?)
    }

    /// Every refund record, by refund number.
    pub async fn refund_records(&self) -> Result<HashMap<String, String>, AllocError> {
        Ok(self.conn().hgetall(keys::refunds(&self.namespace)).await?)
    }

    /// Stores `new` as the record of refund `no` only if the stored one is still
    /// `expected` (`None`: there is none).
    pub async fn swap_refund_record(
        &self,
        no: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<Swapped, AllocError> {
        let mut inv = scripts::REFUND_SWAP.prepare_invoke();
        inv.key(keys::refunds(&self.namespace))
            .arg(no)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or(""))
            .arg(new);
        let items = reply::array(self.write(&inv).await?)?;
        let tag = items.first().map(reply::text).transpose()?;
        match tag.as_deref() {
            Some("ok") => Ok(Swapped::Done),
            Some("lost") => Ok(Swapped::Lost(items.get(1).map(reply::text).transpose()?)),
            other => Err(super::corrupt(format!("refund swap answered {other:?}"))),
        }
    }
}
