//! Parked requests: requests the policy holds at this node — waiting for approvals, or
//! approved and time-locked until their delay has passed — kept with their signed wire form
//! so that a waiting request holds none of the node's capacity and survives a restart.
//!
//! The store keeps what it is given and enforces only what keeps the state consistent: one
//! record per request id, bound to one request hash; a time-locked record has its lock and
//! run times; and at most `cap` records per initiator ([`Store::park`] counts and inserts in
//! one transaction). It never verifies the request and never decides anything: the daemon's
//! policy gate does both.

use rusqlite::OptionalExtension;

use super::error::{Result, StoreError};
use super::policy::{hash32, ms_column, ms_value};
use super::{from_json, now_ms, to_json, Store};

/// Where a parked request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParkedState {
    /// It needs (more) approvals, before `expires_at_ms`.
    Waiting,
    /// Approved (its approvals were met at `locked_at_ms`); carried out at `run_at_ms`
    /// unless vetoed first.
    Locked {
        /// When this node saw its approvals met.
        locked_at_ms: u64,
        /// When it is carried out.
        run_at_ms: u64,
    },
}

impl ParkedState {
    fn column(self) -> &'static str {
        match self {
            ParkedState::Waiting => "WAITING",
            ParkedState::Locked { .. } => "LOCKED",
        }
    }
}

/// A request to park, or as parked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedRequest {
    /// The request id.
    pub request_id: String,
    /// Its hash (what approvals approve).
    pub request_hash: [u8; 32],
    /// Its kind (`sign`, `delete`, …).
    pub kind: String,
    /// Its initiator.
    pub initiator: String,
    /// The key it is about.
    pub key_id: String,
    /// The request as its initiator signed it (wire JSON): verified again when resumed.
    pub signed_request: Vec<u8>,
    /// Waiting or time-locked.
    pub state: ParkedState,
    /// The request's own expiry: approvals must be met before it.
    pub expires_at_ms: u64,
    /// Time-locked: the approvers counted when its approvals were met (they count for it
    /// until it runs, even after their approve requests expire).
    pub approvers: Vec<String>,
    /// What the console shows about it (JSON text, as given).
    pub summary_json: String,
    /// When it was first parked (ms since the Unix epoch); set by the store.
    pub added_at_ms: u64,
}

impl ParkedRequest {
    /// When the node must look at it again by itself: its expiry while it waits, its run
    /// time once time-locked.
    pub fn due_at_ms(&self) -> u64 {
        match self.state {
            ParkedState::Waiting => self.expires_at_ms,
            ParkedState::Locked { run_at_ms, .. } => run_at_ms,
        }
    }
}

/// What [`Store::park`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parked {
    /// A new record.
    New,
    /// The record existed; its state changed (waiting → time-locked, or a new run time).
    Changed,
    /// The record existed as it is.
    Unchanged,
}

const COLUMNS: &str = "request_id, request_hash, kind, initiator, key_id, signed_request, state, \
                       expires_at, locked_at, run_at, approvers, summary_json, added_at";

type Raw = (
    String,
    Vec<u8>,
    String,
    String,
    String,
    Vec<u8>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    String,
    String,
    i64,
);

fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
    ))
}

fn read(raw: Raw) -> Result<ParkedRequest> {
    let (
        id,
        hash,
        kind,
        initiator,
        key_id,
        signed,
        state,
        expires,
        locked,
        run,
        approvers,
        summary,
        added,
    ) = raw;
    let state = match (state.as_str(), locked, run) {
        ("WAITING", _, _) => ParkedState::Waiting,
        ("LOCKED", Some(locked), Some(run)) => ParkedState::Locked {
            locked_at_ms: ms_value("lock time", locked)?,
            run_at_ms: ms_value("run time", run)?,
        },
        (other, _, _) => {
            return Err(StoreError::Corrupt {
                what: format!("parked request '{id}' in state '{other}'"),
            })
        }
    };
    Ok(ParkedRequest {
        request_hash: hash32(&format!("hash of parked request '{id}'"), hash)?,
        approvers: from_json(&format!("approvers of parked request '{id}'"), &approvers)?,
        expires_at_ms: ms_value("parked request expiry", expires)?,
        added_at_ms: ms_value("parking time", added)?,
        request_id: id,
        kind,
        initiator,
        key_id,
        signed_request: signed,
        state,
        summary_json: summary,
    })
}

impl Store {
    /// Parks a request, or updates its record (state, approvers, summary) if it is parked
    /// already. A new record is refused ([`StoreError::TooManyParked`]) when its initiator
    /// has `cap` parked already; a record under the same id with another hash is refused
    /// ([`StoreError::InvalidRequest`]).
    pub fn park(&self, p: &ParkedRequest, cap: usize) -> Result<Parked> {
        if p.request_id.is_empty() || p.initiator.is_empty() {
            return Err(StoreError::InvalidRequest(
                "a parked request needs its id and initiator".into(),
            ));
        }
        let expires = ms_column("request expiry", p.expires_at_ms)?;
        let (locked, run) = match p.state {
            ParkedState::Waiting => (None, None),
            ParkedState::Locked {
                locked_at_ms,
                run_at_ms,
            } => (
                Some(ms_column("lock time", locked_at_ms)?),
                Some(ms_column("run time", run_at_ms)?),
            ),
        };
        let approvers = to_json(&p.approvers)?;
        self.write(|tx| {
            let stored = tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM parked_requests WHERE request_id = ?1"),
                    [&p.request_id],
                    raw,
                )
                .optional()?
                .map(read)
                .transpose()?;
            match stored {
                Some(s) if s.request_hash != p.request_hash => {
                    Err(StoreError::InvalidRequest(format!(
                        "request '{}' is parked with hash {}, not {}",
                        p.request_id,
                        hex::encode(s.request_hash),
                        hex::encode(p.request_hash)
                    )))
                }
                Some(s) => {
                    tx.execute(
                        "UPDATE parked_requests SET state = ?2, locked_at = ?3, run_at = ?4,
                             approvers = ?5, summary_json = ?6
                         WHERE request_id = ?1",
                        (
                            &p.request_id,
                            p.state.column(),
                            locked,
                            run,
                            &approvers,
                            &p.summary_json,
                        ),
                    )?;
                    Ok(if s.state == p.state {
                        Parked::Unchanged
                    } else {
                        Parked::Changed
                    })
                }
                None => {
                    let parked: i64 = tx.query_row(
                        "SELECT count(*) FROM parked_requests WHERE initiator = ?1",
                        [&p.initiator],
                        |r| r.get(0),
                    )?;
                    if usize::try_from(parked).unwrap_or(usize::MAX) >= cap {
                        return Err(StoreError::TooManyParked {
                            initiator: p.initiator.clone(),
                            cap,
                        });
                    }
                    tx.execute(
                        &format!(
                            "INSERT INTO parked_requests ({COLUMNS})
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                        ),
                        rusqlite::params![
                            &p.request_id,
                            p.request_hash.as_slice(),
                            &p.kind,
                            &p.initiator,
                            &p.key_id,
                            &p.signed_request,
                            p.state.column(),
                            expires,
                            locked,
                            run,
                            &approvers,
                            &p.summary_json,
                            now_ms(),
                        ],
                    )?;
                    Ok(Parked::New)
                }
            }
        })
    }

    /// The parked request with this id.
    pub fn parked(&self, request_id: &str) -> Result<Option<ParkedRequest>> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM parked_requests WHERE request_id = ?1"),
                [request_id],
                raw,
            )
            .optional()?
            .map(read)
            .transpose()
    }

    /// Every parked request, oldest first.
    pub fn parked_requests(&self) -> Result<Vec<ParkedRequest>> {
        let conn = self.conn();
        let mut query = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM parked_requests ORDER BY added_at, request_id"
        ))?;
        let rows = query.query_map([], raw)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(read(row?)?);
        }
        Ok(out)
    }

    /// Takes a request out of the parked ones (carried out, refused, expired or vetoed).
    /// Returns whether it was parked.
    pub fn unpark(&self, request_id: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM parked_requests WHERE request_id = ?1",
            [request_id],
        )? > 0)
    }
}
