//! The replay store: every accepted request's (request id, nonce) until the request expires.

use std::time::SystemTime;

use super::error::{Result, StoreError};
use super::{to_ms, Store};

/// A signed request as the replay store records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayEntry<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The request's nonce.
    pub nonce: &'a [u8],
    /// Who signed the request (initiator id).
    pub initiator: &'a str,
    /// When the request expires; the record is kept until then.
    pub expires_at: SystemTime,
}

impl Store {
    /// Records a request, atomically refusing one seen before: [`StoreError::Replay`] if this
    /// request id and nonce are recorded, [`StoreError::Expired`] if `expires_at` is not after
    /// `now` (such a record could be purged at once, so the request must be refused). Exactly
    /// one of any number of concurrent calls for the same request succeeds, across threads and
    /// processes.
    pub fn check_and_record(&self, entry: &ReplayEntry<'_>, now: SystemTime) -> Result<()> {
        if entry.request_id.is_empty() || entry.nonce.is_empty() {
            return Err(StoreError::InvalidRequest(
                "a request needs a request id and a nonce".into(),
            ));
        }
        let expires_at = to_ms(entry.expires_at);
        let now = to_ms(now);
        if expires_at <= now {
            return Err(StoreError::Expired {
                request_id: entry.request_id.to_owned(),
            });
        }
        let inserted = self.conn().execute(
            "INSERT INTO replay (request_id, nonce, initiator, expires_at, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (request_id, nonce) DO NOTHING",
            (
                entry.request_id,
                entry.nonce,
                entry.initiator,
                expires_at,
                now,
            ),
        )?;
        if inserted == 1 {
            Ok(())
        } else {
            Err(StoreError::Replay {
                request_id: entry.request_id.to_owned(),
            })
        }
    }

    /// Forgets requests that expired at or before `now` (they are refused as expired anyway).
    /// Returns how many records went.
    pub fn purge_expired(&self, now: SystemTime) -> Result<usize> {
        Ok(self
            .conn()
            .execute("DELETE FROM replay WHERE expires_at <= ?1", [to_ms(now)])?)
    }
}
