//! Policy state: the activated policy bundles, the approvals received and the velocity ledger
//! that rolling-window limits are counted on (requests the policy holds are in
//! [`super::parked`]).
//!
//! The store keeps what it is given and enforces only the rules that keep the state
//! consistent: a bundle version is activated once and only above the newest stored one; one
//! verdict (approve or reject) per (request hash, approver), where a rejection replaces an
//! approval and is never replaced by one; a request's ledger entries are reserved once, then
//! committed or released. It never verifies a bundle's or an approval's signatures and never
//! evaluates a policy: the caller (the daemon, with the policy crate) does both, before it
//! calls in here.
//!
//! Amounts are `u128`, stored as 16-byte big-endian blobs and summed in Rust (saturating), so
//! no value is ever rounded through SQLite's 64-bit integers or floats.

use std::collections::HashSet;

use rusqlite::OptionalExtension;

use super::error::{Result, StoreError};
use super::{now_ms, Store};

/// A policy bundle as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBundle {
    /// Its version (the row's key).
    pub version: u64,
    /// Its hash, as the caller computed it when it verified the bundle.
    pub hash: [u8; 32],
    /// The signed bundle, as activated (TOML).
    pub bundle_toml: String,
    /// When this node activated it (ms since the Unix epoch).
    pub activated_at_ms: u64,
}

pub use keyrack_client::request::Verdict;

/// An approval to record: one approver's signed verdict on one request hash.
#[derive(Clone, Copy, Debug)]
pub struct NewApproval<'a> {
    /// The approved (or rejected) request's hash (SHA-256 of its body bytes).
    pub request_hash: [u8; 32],
    /// Approve or reject.
    pub verdict: Verdict,
    /// The approver (the approve request's initiator).
    pub approver: &'a str,
    /// The approve request's id.
    pub approval_request_id: &'a str,
    /// When the approval expires (the approve request's expiry), ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// The approve request's wire bytes, kept as evidence.
    pub signed_request: &'a [u8],
}

/// A recorded approval (or rejection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredApproval {
    /// The approved (or rejected) request's hash.
    pub request_hash: [u8; 32],
    /// Approve or reject.
    pub verdict: Verdict,
    /// The approver.
    pub approver: String,
    /// The approve request's id.
    pub approval_request_id: String,
    /// When the approval expires, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// When this node recorded it, ms since the Unix epoch.
    pub received_at_ms: u64,
    /// The approve request's wire bytes (the evidence).
    pub signed_request: Vec<u8>,
}

/// The velocity ledger's rows and questions are the policy engine's own types: one
/// transfer of a request ([`VelocityEntry`]), a scope ([`VelocityPer`]) and a question
/// ([`VelocityQuery`]: how much, and how many requests, in one scope since a time).
pub use keyrack_policy::{
    LedgerEntry as VelocityEntry, Per as VelocityPer, UsageQuery as VelocityQuery,
};

/// A ms timestamp as a column value.
pub(super) fn ms_column(what: &str, ms: u64) -> Result<i64> {
    i64::try_from(ms)
        .map_err(|_| StoreError::InvalidRequest(format!("{what} {ms} ms is out of range")))
}

/// A ms timestamp to compare against (saturating: far future stays far future).
fn ms_bound(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A ms timestamp read back.
pub(super) fn ms_value(what: &str, ms: i64) -> Result<u64> {
    u64::try_from(ms).map_err(|_| StoreError::Corrupt {
        what: format!("{what} {ms} is negative"),
    })
}

pub(super) fn hash32(what: &str, bytes: Vec<u8>) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|b: Vec<u8>| StoreError::Corrupt {
        what: format!("{what} is {} bytes, not 32", b.len()),
    })
}

fn non_empty(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(StoreError::InvalidRequest(format!("{what} is empty")));
    }
    Ok(())
}

fn bundle_version(version: u64) -> Result<i64> {
    i64::try_from(version)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            StoreError::InvalidRequest(format!("policy bundle version {version} cannot be stored"))
        })
}

fn read_bundle(version: i64, hash: Vec<u8>, toml: String, at: i64) -> Result<StoredBundle> {
    Ok(StoredBundle {
        version: u64::try_from(version).map_err(|_| StoreError::Corrupt {
            what: format!("policy bundle version {version}"),
        })?,
        hash: hash32(&format!("hash of policy bundle version {version}"), hash)?,
        bundle_toml: toml,
        activated_at_ms: ms_value("activation time", at)?,
    })
}

const BUNDLE_COLUMNS: &str = "version, hash, bundle_toml, activated_at";

type RawBundle = (i64, Vec<u8>, String, i64);

fn raw_bundle(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawBundle> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

const APPROVAL_COLUMNS: &str =
    "request_hash, approver, approval_request_id, expires_at, received_at, signed_request, verdict";

type RawApproval = (Vec<u8>, String, String, i64, i64, Vec<u8>, String);

fn raw_approval(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawApproval> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn read_approval(raw: RawApproval) -> Result<StoredApproval> {
    let (hash, approver, approval_request_id, expires, received, signed_request, verdict) = raw;
    Ok(StoredApproval {
        request_hash: hash32(&format!("request hash of {approver}'s approval"), hash)?,
        verdict: Verdict::parse(&verdict).ok_or_else(|| StoreError::Corrupt {
            what: format!("approval verdict '{verdict}' (expected approve or reject)"),
        })?,
        expires_at_ms: ms_value("approval expiry", expires)?,
        received_at_ms: ms_value("approval receipt time", received)?,
        approver,
        approval_request_id,
        signed_request,
    })
}

/// The state of a request's ledger entries.
const RESERVED: &str = "RESERVED";
const COMMITTED: &str = "COMMITTED";

fn reservation_name(request_id: &str) -> String {
    format!("velocity reservation of request '{request_id}'")
}

fn amount_value(bytes: &[u8], request_id: &str) -> Result<u128> {
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        what: format!(
            "a velocity amount of request '{request_id}' is {} bytes, not 16",
            bytes.len()
        ),
    })?;
    Ok(u128::from_be_bytes(bytes))
}

impl Store {
    // Policy bundles.

    /// Activates a policy bundle the caller has verified (signatures, predecessor hash): it
    /// becomes the active bundle, and the ones before it stay as history. Refuses
    /// ([`StoreError::StaleBundle`]) a version not above the newest stored one, so a node never
    /// moves back to an older policy, and never activates a version twice.
    pub fn activate_bundle(&self, version: u64, hash: &[u8; 32], bundle_toml: &str) -> Result<()> {
        let column = bundle_version(version)?;
        self.write(|tx| {
            let newest: Option<i64> =
                tx.query_row("SELECT max(version) FROM policy_bundles", [], |r| r.get(0))?;
            if let Some(newest) = newest.filter(|n| *n >= column) {
                return Err(StoreError::StaleBundle {
                    version,
                    newest: u64::try_from(newest).unwrap_or(0),
                });
            }
            tx.execute(
                "INSERT INTO policy_bundles (version, hash, bundle_toml, activated_at)
                 VALUES (?1, ?2, ?3, ?4)",
                (column, hash.as_slice(), bundle_toml, now_ms()),
            )?;
            Ok(())
        })
    }

    /// The active bundle: the newest version activated, if any.
    pub fn active_bundle(&self) -> Result<Option<StoredBundle>> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {BUNDLE_COLUMNS} FROM policy_bundles ORDER BY version DESC LIMIT 1"
                ),
                [],
                raw_bundle,
            )
            .optional()?
            .map(|(v, h, t, a)| read_bundle(v, h, t, a))
            .transpose()
    }

    /// Every activated bundle, newest first (the first is the active one).
    pub fn bundle_history(&self) -> Result<Vec<StoredBundle>> {
        let conn = self.conn();
        let mut query = conn.prepare(&format!(
            "SELECT {BUNDLE_COLUMNS} FROM policy_bundles ORDER BY version DESC"
        ))?;
        let rows = query.query_map([], raw_bundle)?;
        let mut out = Vec::new();
        for row in rows {
            let (v, h, t, a) = row?;
            out.push(read_bundle(v, h, t, a)?);
        }
        Ok(out)
    }

    // Approvals.

    /// Records an approval or rejection the caller has verified. Returns `true` if it is new;
    /// `false` if this approver had given a verdict on this request hash already, in which
    /// case one record stays: a rejection replaces an approval, an approval never replaces a
    /// rejection (an approver cannot take a rejection back), and of two equal verdicts the
    /// one that expires later is kept (with its id and evidence).
    pub fn add_approval(&self, a: &NewApproval<'_>) -> Result<bool> {
        non_empty("approver", a.approver)?;
        non_empty("approval request id", a.approval_request_id)?;
        let expires = ms_column("approval expiry", a.expires_at_ms)?;
        self.write(|tx| {
            let known: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM approvals WHERE request_hash = ?1 AND approver = ?2)",
                (a.request_hash.as_slice(), a.approver),
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO approvals (request_hash, approver, approval_request_id,
                     expires_at, signed_request, received_at, verdict)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (request_hash, approver) DO UPDATE SET
                     approval_request_id = excluded.approval_request_id,
                     expires_at = excluded.expires_at,
                     signed_request = excluded.signed_request,
                     received_at = excluded.received_at,
                     verdict = excluded.verdict
                 WHERE (excluded.verdict = ?8 AND approvals.verdict <> ?8)
                    OR (excluded.verdict = approvals.verdict
                        AND excluded.expires_at > approvals.expires_at)",
                (
                    a.request_hash.as_slice(),
                    a.approver,
                    a.approval_request_id,
                    expires,
                    a.signed_request,
                    now_ms(),
                    a.verdict.as_str(),
                    Verdict::Reject.as_str(),
                ),
            )?;
            Ok(!known)
        })
    }

    /// The approvals and rejections of `request_hash` that have not expired at `now_ms`
    /// (expiry after it), by approver.
    pub fn approvals_for(
        &self,
        request_hash: &[u8; 32],
        now_ms: u64,
    ) -> Result<Vec<StoredApproval>> {
        let conn = self.conn();
        let mut query = conn.prepare(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals
             WHERE request_hash = ?1 AND expires_at > ?2 ORDER BY approver"
        ))?;
        let rows = query.query_map((request_hash.as_slice(), ms_bound(now_ms)), raw_approval)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(read_approval(row?)?);
        }
        Ok(out)
    }

    /// Deletes the approvals expired at `now_ms` (expiry at or before it). Returns how many.
    pub fn prune_approvals(&self, now_ms: u64) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM approvals WHERE expires_at <= ?1",
            [ms_bound(now_ms)],
        )?)
    }

    // The velocity ledger.

    /// Reserves a request's transfers in the ledger at `at_ms` (they count from now on), in
    /// one transaction. A request id reserved or committed before is refused
    /// ([`StoreError::WrongState`]): a request is counted once. `entries` may be empty (a
    /// request that moves nothing); the request is still reserved.
    pub fn reserve(&self, request_id: &str, at_ms: u64, entries: &[VelocityEntry]) -> Result<()> {
        non_empty("request id", request_id)?;
        let at = ms_column("reservation time", at_ms)?;
        for e in entries {
            non_empty("velocity entry key id", &e.key_id)?;
            non_empty("velocity entry initiator", &e.initiator)?;
        }
        self.write(|tx| {
            let state: Option<String> = tx
                .query_row(
                    "SELECT state FROM velocity_requests WHERE request_id = ?1",
                    [request_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(state) = state {
                return Err(StoreError::WrongState {
                    what: reservation_name(request_id),
                    state,
                    expected: "no reservation yet (a request is counted once)",
                });
            }
            tx.execute(
                "INSERT INTO velocity_requests (request_id, state, at) VALUES (?1, ?2, ?3)",
                (request_id, RESERVED, at),
            )?;
            let mut insert = tx.prepare(
                "INSERT INTO velocity_entries
                     (request_id, key_id, initiator, destination, asset, amount)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for e in entries {
                insert.execute((
                    request_id,
                    &e.key_id,
                    &e.initiator,
                    &e.destination,
                    &e.asset,
                    e.amount.to_be_bytes().as_slice(),
                ))?;
            }
            Ok(())
        })
    }

    /// Commits a reservation: the request signed (or may have), its transfers stay counted.
    /// Committing a committed request changes nothing; one never reserved is
    /// [`StoreError::NotFound`].
    pub fn commit_reservation(&self, request_id: &str) -> Result<()> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE velocity_requests SET state = ?2 WHERE request_id = ?1",
                (request_id, COMMITTED),
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound {
                    what: reservation_name(request_id),
                });
            }
            Ok(())
        })
    }

    /// Releases a reservation: the signing aborted or timed out, so its transfers no longer
    /// count. Deletes only a RESERVED request's entries; a committed request stays counted
    /// and an unknown one changes nothing. Returns how many ledger entries were freed.
    pub fn release_reservation(&self, request_id: &str) -> Result<usize> {
        self.write(|tx| {
            let freed = tx.execute(
                "DELETE FROM velocity_entries WHERE request_id = ?1 AND EXISTS (
                     SELECT 1 FROM velocity_requests WHERE request_id = ?1 AND state = ?2)",
                (request_id, RESERVED),
            )?;
            tx.execute(
                "DELETE FROM velocity_requests WHERE request_id = ?1 AND state = ?2",
                (request_id, RESERVED),
            )?;
            Ok(freed)
        })
    }

    /// At start, before serving: commits every reservation left RESERVED. A node that stopped
    /// in the middle of a signing cannot know whether its share left, so it counts the
    /// transfer (fail safe: a limit may be reached early, never exceeded). Returns how many
    /// requests it committed.
    pub fn settle_reservations_at_start(&self) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE velocity_requests SET state = ?1 WHERE state = ?2",
            (COMMITTED, RESERVED),
        )?)
    }

    /// Deletes the ledger's committed requests older than `before_ms` (at_ms before it): they
    /// fall outside every window the active policy counts over. Returns how many requests.
    pub fn prune_velocity(&self, before_ms: u64) -> Result<usize> {
        let before = ms_bound(before_ms);
        self.write(|tx| {
            tx.execute(
                "DELETE FROM velocity_entries WHERE request_id IN (
                     SELECT request_id FROM velocity_requests WHERE state = ?1 AND at < ?2)",
                (COMMITTED, before),
            )?;
            Ok(tx.execute(
                "DELETE FROM velocity_requests WHERE state = ?1 AND at < ?2",
                (COMMITTED, before),
            )?)
        })
    }

    /// The value moved and the number of distinct requests in a scope since `q.since_ms`
    /// (requests at or after it, reserved and committed alike). The value sums the amounts
    /// of entries in `q.asset` (saturating); with no asset it is 0 and only requests count.
    /// A destination scope without a destination matches nothing: `(0, 0)`.
    pub fn usage(&self, q: &VelocityQuery<'_>) -> Result<(u128, u64)> {
        let (column, value) = match q.per {
            VelocityPer::Key => ("key_id", q.key_id),
            VelocityPer::Initiator => ("initiator", q.initiator),
            VelocityPer::Destination => match q.destination {
                Some(d) => ("destination", d),
                None => return Ok((0, 0)),
            },
        };
        let conn = self.conn();
        let mut query = conn.prepare(&format!(
            "SELECT e.request_id, e.asset, e.amount
             FROM velocity_entries e JOIN velocity_requests r ON r.request_id = e.request_id
             WHERE e.{column} = ?1 AND r.at >= ?2"
        ))?;
        let rows = query.query_map((value, ms_bound(q.since_ms)), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut total: u128 = 0;
        let mut requests = HashSet::new();
        for row in rows {
            let (request_id, asset, amount) = row?;
            if q.asset.is_some() && asset.as_deref() == q.asset {
                total = total.saturating_add(amount_value(&amount, &request_id)?);
            }
            requests.insert(request_id);
        }
        Ok((total, requests.len() as u64))
    }
}

/// The store is the policy engine's velocity ledger: a query error makes the limit fail
/// closed.
impl keyrack_policy::Ledger for Store {
    fn usage(&self, q: &VelocityQuery<'_>) -> std::result::Result<keyrack_policy::Usage, String> {
        let (value, count) = Store::usage(self, q).map_err(|e| e.to_string())?;
        Ok(keyrack_policy::Usage { value, count })
    }
}
