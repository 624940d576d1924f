//! Reading script replies back into hub types.
//!
//! Scripts answer `{'ok', ...}` or `{'err', code, unit}`; codes are the snake_case
//! names of [`ErrorCode`], so the same refusal reads the same from either engine.

use super::family_hash;
use std::collections::HashMap;

use redis::Value;
use xuanfang_hub::selection::FamilyState;
use xuanfang_hub::{ErrorCode, Millis, Rejection, SessionId, UnitId};

use crate::contract::AllocError;

/// A script's answer, split into its ok payload or its refusal.
pub(crate) enum Reply {
    /// The values after the leading `'ok'`.
    Ok(Vec<Value>),
    Refused(Rejection),
    /// The engine's view of the batch was out of date; reload and retry.
    Stale,
}

fn corrupt(what: impl Into<String>) -> AllocError {
    AllocError::Corrupt(what.into())
}

/// Splits a script reply.
pub(crate) fn reply(v: Value) -> Result<Reply, AllocError> {
    let mut items = array(v)?.into_iter();
    let tag = items.next().map(|v| text(&v)).transpose()?;
    match tag.as_deref() {
        Some("ok") => Ok(Reply::Ok(items.collect())),
        Some("err") => {
            let code = items
                .next()
                .map(|v| text(&v))
                .transpose()?
                .unwrap_or_default();
            if code == "stale" {
                return Ok(Reply::Stale);
            }
            let unit = items.next().map(|v| text(&v)).transpose()?;
            let code = error_code(&code)?;
            Ok(Reply::Refused(Rejection {
                code,
                unit: unit.filter(|u| !u.is_empty()).map(UnitId),
            }))
        }
        _ => Err(corrupt("script reply is neither ok nor err")),
    }
}

/// An [`ErrorCode`] from its wire name.
pub(crate) fn error_code(name: &str) -> Result<ErrorCode, AllocError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| corrupt(format!("unknown error code {name:?}")))
}

pub(crate) fn array(v: Value) -> Result<Vec<Value>, AllocError> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(corrupt(format!("expected an array, got {other:?}"))),
    }
}

pub(crate) fn text(v: &Value) -> Result<String, AllocError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| corrupt("not UTF-8")),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        Value::Okay => Ok("OK".to_owned()),
        other => Err(corrupt(format!("expected a string, got {other:?}"))),
    }
}

pub(crate) fn int(v: &Value) -> Result<i64, AllocError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => text(other)?
            .parse()
            .map_err(|_| corrupt(format!("expected an integer, got {other:?}"))),
    }
}

/// `[field, value, field, value, ...]` as pairs, in order.
pub(crate) fn pairs(v: Value) -> Result<Vec<(String, String)>, AllocError> {
    let items = array(v)?;
    items
        .chunks(2)
        .map(|c| match c {
            [k, v] => Ok((text(k)?, text(v)?)),
            _ => Err(corrupt("odd field list")),
        })
        .collect()
}

/// A family's hash as read back by a script, with the time and session status it was
/// read at.
pub(crate) struct FamilyRead {
    pub now: Millis,
    /// Whether the family's current session is closed.
    pub closed: bool,
    pub gen: u64,
    pub fields: HashMap<String, String>,
    /// The batch's event seq at the read.
    pub seq: u64,
}

impl FamilyRead {
    /// Parses `{now, closed, gen, hash, seq}` (the ok payload of act and family scripts).
    pub(crate) fn parse(payload: Vec<Value>) -> Result<Self, AllocError> {
        let mut it = payload.into_iter();
        let mut next = || it.next().ok_or_else(|| corrupt("short family reply"));
        let now = Millis(int(&next()?)?);
        let closed = int(&next()?)? != 0;
        let gen = int(&next()?)? as u64;
        let fields = pairs(next()?)?.into_iter().collect();
        let seq = int(&next()?)? as u64;
        Ok(Self {
            now,
            closed,
            gen,
            fields,
            seq,
        })
    }

    /// The current session id (`cur`).
    pub(crate) fn current_session(&self) -> Option<SessionId> {
        self.fields.get(family_hash::CUR).cloned().map(SessionId)
    }

    pub(crate) fn state(&self) -> Result<FamilyState, AllocError> {
        family_state(&self.fields)
    }
}

fn millis(fields: &HashMap<String, String>, name: &str) -> Result<Option<Millis>, AllocError> {
    fields
        .get(name)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map(Millis)
                .map_err(|_| corrupt(format!("bad time in {name}: {s:?}")))
        })
        .transpose()
}

fn unit_list(fields: &HashMap<String, String>, name: &str) -> Result<Vec<UnitId>, AllocError> {
    match fields.get(name).map(String::as_str) {
        // cjson writes an empty table as `{}`; the scripts avoid it, but accept it.
        None | Some("") | Some("{}") => Ok(Vec::new()),
        Some(s) => serde_json::from_str(s).map_err(|e| corrupt(format!("bad list {name}: {e}"))),
    }
}

/// The hub's [`FamilyState`] from a family hash.
pub(crate) fn family_state(fields: &HashMap<String, String>) -> Result<FamilyState, AllocError> {
    let outcome = fields
        .get(family_hash::OUTCOME)
        .filter(|s| !s.is_empty())
        .map(|s| serde_json::from_str(s).map_err(|e| corrupt(format!("bad outcome: {e}"))))
        .transpose()?;
    Ok(FamilyState {
        preselect_declared_at: millis(fields, family_hash::PDECL)?,
        formal_declared_at: millis(fields, family_hash::FDECL)?,
        cart: unit_list(fields, family_hash::CART)?,
        intentions: unit_list(fields, family_hash::INTENT)?,
        outcome,
        applied_supplementary_at: millis(fields, family_hash::APPLIED)?,
        supplementary_session: fields
            .get(family_hash::SUPP)
            .filter(|s| !s.is_empty())
            .cloned()
            .map(SessionId),
    })
}
