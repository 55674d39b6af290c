//! Parked requests: requests the policy holds at this node — waiting for approvals, or
//! approved and time-locked until their delay has passed — kept with their signed wire form
//! so that a waiting request holds none of the node's capacity and survives a restart.
//!
//! The store keeps what it is given and enforces only what keeps the state consistent: one
//! record per request id, bound to one request hash; a time-locked record has its lock and
//! run times; and at most `cap` records per initiator ([`Store::park`] counts and inserts in
//! one transaction). It never verifies the request and never decides anything: the daemon's
//! policy gate does both.

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
    /// The approver groups whose members may veto it (those of every approval rule it
    /// matched while held): a rejection by one of them stops it even if a later decision
    /// matches no approval rule.
    pub veto_groups: Vec<VetoGroup>,
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

/// An approver group that may stop a held request, and the rule that made it so.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VetoGroup {
    /// The group.
    pub group: String,
    /// The approval rule.
    pub rule: String,
    /// The approvals that rule needs.
    pub required: u16,
}

/// A parked request without its bytes: what the keeper of parked requests looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedDue {
    /// The request id.
    pub request_id: String,
    /// Its hash.
    pub request_hash: [u8; 32],
    /// Waiting or time-locked.
    pub state: ParkedState,
    /// When it is due by itself ([`ParkedRequest::due_at_ms`]).
    pub due_at_ms: u64,
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
                       expires_at, locked_at, run_at, approvers, veto_groups, summary_json, \
                       added_at";

fn read(r: &rusqlite::Row<'_>) -> Result<ParkedRequest> {
    let id: String = r.get(0)?;
    let state = read_state(&id, &r.get::<_, String>(6)?, r.get(8)?, r.get(9)?)?;
    Ok(ParkedRequest {
        request_hash: hash32(&format!("hash of parked request '{id}'"), r.get(1)?)?,
        kind: r.get(2)?,
        initiator: r.get(3)?,
        key_id: r.get(4)?,
        signed_request: r.get(5)?,
        state,
        expires_at_ms: ms_value("parked request expiry", r.get(7)?)?,
        approvers: from_json(
            &format!("approvers of parked request '{id}'"),
            &r.get::<_, String>(10)?,
        )?,
        veto_groups: from_json(
            &format!("veto groups of parked request '{id}'"),
            &r.get::<_, String>(11)?,
        )?,
        summary_json: r.get(12)?,
        added_at_ms: ms_value("parking time", r.get(13)?)?,
        request_id: id,
    })
}

fn read_state(id: &str, state: &str, locked: Option<i64>, run: Option<i64>) -> Result<ParkedState> {
    Ok(match (state, locked, run) {
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
    })
}

/// The rows of `query` (the [`COLUMNS`] of parked requests, with `params`).
fn read_all(
    conn: &rusqlite::Connection,
    query: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<ParkedRequest>> {
    let mut query = conn.prepare(query)?;
    let mut rows = query.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(read(row)?);
    }
    Ok(out)
}

impl Store {
    /// Parks a request, or updates its record (state, approvers, veto groups, summary) if it
    /// is parked already. A new record is refused ([`StoreError::TooManyParked`]) when its
    /// initiator has `cap` parked already; a record under the same id with another hash is
    /// refused ([`StoreError::InvalidRequest`]).
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
        let vetoes = to_json(&p.veto_groups)?;
        self.write(|tx| {
            let stored = read_all(
                tx,
                &format!("SELECT {COLUMNS} FROM parked_requests WHERE request_id = ?1"),
                [&p.request_id],
            )?
            .pop();
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
                             approvers = ?5, veto_groups = ?6, summary_json = ?7
                         WHERE request_id = ?1",
                        (
                            &p.request_id,
                            p.state.column(),
                            locked,
                            run,
                            &approvers,
                            &vetoes,
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
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
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
                            &vetoes,
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
        Ok(read_all(
            &self.conn(),
            &format!("SELECT {COLUMNS} FROM parked_requests WHERE request_id = ?1"),
            [request_id],
        )?
        .pop())
    }

    /// Every parked request, oldest first.
    pub fn parked_requests(&self) -> Result<Vec<ParkedRequest>> {
        read_all(
            &self.conn(),
            &format!("SELECT {COLUMNS} FROM parked_requests ORDER BY added_at, request_id"),
            [],
        )
    }

    /// Every parked request's id, hash, state and due time, soonest due first: what the
    /// keeper needs, without the requests' bytes.
    pub fn parked_due(&self) -> Result<Vec<ParkedDue>> {
        let conn = self.conn();
        let mut query = conn.prepare(
            "SELECT request_id, request_hash, state, expires_at, locked_at, run_at
             FROM parked_requests",
        )?;
        let mut rows = query.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let state = read_state(&id, &r.get::<_, String>(2)?, r.get(4)?, r.get(5)?)?;
            let due_at_ms = match state {
                ParkedState::Waiting => ms_value("parked request expiry", r.get(3)?)?,
                ParkedState::Locked { run_at_ms, .. } => run_at_ms,
            };
            out.push(ParkedDue {
                request_hash: hash32(&format!("hash of parked request '{id}'"), r.get(1)?)?,
                request_id: id,
                state,
                due_at_ms,
            });
        }
        out.sort_by(|a, b| (a.due_at_ms, &a.request_id).cmp(&(b.due_at_ms, &b.request_id)));
        Ok(out)
    }

    /// Takes a request out of the parked ones (carried out, refused, expired or vetoed): the
    /// record of that id *and hash* only. Returns whether it was parked.
    pub fn unpark(&self, request_id: &str, request_hash: &[u8; 32]) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM parked_requests WHERE request_id = ?1 AND request_hash = ?2",
            (request_id, request_hash.as_slice()),
        )? > 0)
    }
}
