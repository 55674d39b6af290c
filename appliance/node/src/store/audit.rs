//! The node's audit log: a hash chain of entries, each signed by the node, one chain per node.
//!
//! Entry `seq` (1, 2, 3, … with no gaps) records one event (`kind`, e.g. `decision` or
//! `outcome`, the request it is about, and a JSON text the caller wrote). Its hash covers
//! everything in it and the previous entry's hash, so changing, removing or reordering any
//! entry breaks every link after it:
//!
//! ```text
//! hash      = SHA-256( "keyrack/v1/audit\0"
//!                      ‖ seq (u64 BE) ‖ at_ms (u64 BE) ‖ prev_hash (32 bytes; zeros for seq 1)
//!                      ‖ len(kind) (u32 BE) ‖ kind (UTF-8)
//!                      ‖ len(request_id) (u32 BE) ‖ request_id (UTF-8; empty if none)
//!                      ‖ entry (the JSON text's UTF-8 bytes, to the end) )
//! signature = Ed25519 by the node's identity key over
//!             "keyrack/v1/audit-entry\0" ‖ hash        (see audit_signature_message)
//! ```
//!
//! and a verifier checks, entry by entry from seq 1: the seq follows the previous one, the
//! hash recomputes, `prev_hash` is the previous entry's hash, and the signature verifies
//! (strict Ed25519, `verify_strict`) under the node's public identity key. The store never
//! holds the node's secret key: [`Store::append_audit`] takes a closure that signs.
//!
//! A chain cut short at its end still verifies (every entry of a prefix is intact): anchor
//! the head hash ([`AuditSummary::head_hash`]) somewhere else to detect that.
//!
//! The table is append-only: database triggers refuse to change or delete its rows, so a
//! bug cannot rewrite history; someone with write access to the file can drop them, which is
//! what the hash chain and signatures are for.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use ed25519_dalek::{Signature, VerifyingKey};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sha2::{Digest, Sha256};

use super::error::{Result, StoreError};
use super::policy::{hash32, ms_value};
use super::{now_ms, schema, Store, BUSY_TIMEOUT};

/// Domain separation of an entry's hash.
const HASH_DOMAIN: &[u8] = b"keyrack/v1/audit\0";
/// Domain separation of the node's signature over an entry's hash.
const SIGNATURE_DOMAIN: &[u8] = b"keyrack/v1/audit-entry\0";
/// Entries read per page when the store verifies its log.
const VERIFY_PAGE: usize = 1_000;

/// One audit log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its position in the chain: 1 for the first entry, then +1 each.
    pub seq: u64,
    /// When it was appended, ms since the Unix epoch.
    pub at_ms: u64,
    /// What it records, e.g. `decision` or `outcome`.
    pub kind: String,
    /// The request it is about, if any.
    pub request_id: Option<String>,
    /// The entry itself: JSON text, exactly as given (its bytes are hashed).
    pub entry: String,
    /// The previous entry's hash (32 zero bytes for seq 1).
    pub prev_hash: [u8; 32],
    /// This entry's hash (see the module docs).
    pub hash: [u8; 32],
    /// The node's Ed25519 signature over [`audit_signature_message`]`(hash)`.
    pub signature: [u8; 64],
}

/// A log that verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditSummary {
    /// How many entries were checked (the head's seq).
    pub entries: u64,
    /// The head entry's hash (32 zero bytes for an empty log): anchor it elsewhere to detect
    /// a log later cut short.
    pub head_hash: [u8; 32],
}

/// Where and why a log does not verify: the first entry that fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the audit log breaks at entry {seq}: {reason}")]
pub struct AuditBreak {
    /// The seq of the entry that fails (for a missing entry, the seq that was expected).
    pub seq: u64,
    /// What is wrong with it.
    pub reason: AuditBreakReason,
}

/// Why an entry fails verification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditBreakReason {
    /// The entry at this position has another seq: entries were deleted or reordered.
    #[error("the entry in its place has seq {found} (entries were deleted or reordered)")]
    Missing {
        /// The seq found instead.
        found: u64,
    },
    /// Its contents do not hash to its recorded hash.
    #[error("its contents do not hash to its recorded hash (the entry was altered)")]
    HashMismatch,
    /// Its `prev_hash` is not the previous entry's hash.
    #[error("its previous hash is not the previous entry's hash (the chain was cut or spliced)")]
    BrokenLink,
    /// Its signature does not verify under the node's key.
    #[error("its signature does not verify with the node's identity key (forged, or signed by another key)")]
    BadSignature,
}

/// The hash of an entry (see the module docs).
pub fn audit_entry_hash(
    seq: u64,
    at_ms: u64,
    prev_hash: &[u8; 32],
    kind: &str,
    request_id: Option<&str>,
    entry: &str,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    h.update(prev_hash);
    for field in [kind, request_id.unwrap_or("")] {
        // Fields are checked to fit when appended; a longer one read back hashes its true
        // length's low bits and so fails verification, as it should.
        h.update((field.len() as u32).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.update(entry.as_bytes());
    h.finalize().into()
}

/// The bytes the node signs for an entry: `"keyrack/v1/audit-entry\0" ‖ hash`.
pub fn audit_signature_message(hash: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNATURE_DOMAIN.len() + hash.len());
    out.extend_from_slice(SIGNATURE_DOMAIN);
    out.extend_from_slice(hash);
    out
}

/// Checks a chain entry by entry; keeps what it needs of the entries seen.
struct ChainCheck<'k> {
    key: &'k VerifyingKey,
    entries: u64,
    head: [u8; 32],
}

impl<'k> ChainCheck<'k> {
    fn new(key: &'k VerifyingKey) -> Self {
        ChainCheck {
            key,
            entries: 0,
            head: [0; 32],
        }
    }

    fn check(&mut self, r: &AuditRecord) -> Result<(), AuditBreak> {
        let seq = self.entries + 1;
        let fail = |reason| Err(AuditBreak { seq, reason });
        if r.seq != seq {
            return fail(AuditBreakReason::Missing { found: r.seq });
        }
        let hash = audit_entry_hash(
            r.seq,
            r.at_ms,
            &r.prev_hash,
            &r.kind,
            r.request_id.as_deref(),
            &r.entry,
        );
        if hash != r.hash {
            return fail(AuditBreakReason::HashMismatch);
        }
        if r.prev_hash != self.head {
            return fail(AuditBreakReason::BrokenLink);
        }
        let signature = Signature::from_bytes(&r.signature);
        if self
            .key
            .verify_strict(&audit_signature_message(&r.hash), &signature)
            .is_err()
        {
            return fail(AuditBreakReason::BadSignature);
        }
        self.entries = seq;
        self.head = r.hash;
        Ok(())
    }

    fn summary(&self) -> AuditSummary {
        AuditSummary {
            entries: self.entries,
            head_hash: self.head,
        }
    }
}

/// Verifies a log given oldest first, from seq 1: seq continuity, each hash, each link to
/// the previous entry and each signature (strict Ed25519 under `node_key`). Returns the
/// first entry that fails. Pure: reads nothing but its arguments.
pub fn verify_audit(
    records: impl Iterator<Item = AuditRecord>,
    node_key: &VerifyingKey,
) -> Result<AuditSummary, AuditBreak> {
    let mut check = ChainCheck::new(node_key);
    for r in records {
        check.check(&r)?;
    }
    Ok(check.summary())
}

const AUDIT_COLUMNS: &str = "seq, at, kind, request_id, entry, prev_hash, hash, signature";

type RawAudit = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
);

fn raw_audit(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawAudit> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn read_audit(raw: RawAudit) -> Result<AuditRecord> {
    let (seq, at, kind, request_id, entry, prev_hash, hash, signature) = raw;
    let name = format!("audit entry {seq}");
    Ok(AuditRecord {
        seq: ms_value(&format!("{name}: seq"), seq)?,
        at_ms: ms_value(&format!("{name}: time"), at)?,
        kind,
        request_id,
        entry,
        prev_hash: hash32(&format!("{name}: previous hash"), prev_hash)?,
        hash: hash32(&format!("{name}: hash"), hash)?,
        signature: signature
            .try_into()
            .map_err(|s: Vec<u8>| StoreError::Corrupt {
                what: format!("{name}: signature is {} bytes, not 64", s.len()),
            })?,
    })
}

fn check_field(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || u32::try_from(value.len()).is_err() {
        return Err(StoreError::InvalidRequest(format!(
            "audit {what} must be 1 to 2^32-1 bytes"
        )));
    }
    Ok(())
}

impl Store {
    /// Appends an entry to the audit log, in one `BEGIN IMMEDIATE` transaction: seq is the
    /// previous entry's + 1 (1 for the first), `prev_hash` the previous entry's hash, `hash`
    /// as in the module docs, at the current time. `sign` must return the node's Ed25519
    /// signature over [`audit_signature_message`]`(hash)` (the identity key never enters the
    /// store); it is called inside the transaction. `entry_json` must be JSON text and is
    /// kept byte for byte; `kind` and a given `request_id` must not be empty.
    pub fn append_audit(
        &self,
        kind: &str,
        request_id: Option<&str>,
        entry_json: &str,
        sign: &dyn Fn(&[u8; 32]) -> [u8; 64],
    ) -> Result<AuditRecord> {
        check_field("kind", kind)?;
        if let Some(id) = request_id {
            check_field("request id", id)?;
        }
        serde_json::from_str::<serde::de::IgnoredAny>(entry_json).map_err(|e| {
            StoreError::InvalidRequest(format!("audit entry ({kind}) is not JSON: {e}"))
        })?;
        self.write(|tx| {
            let head: Option<(i64, Vec<u8>)> = tx
                .query_row(
                    "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (seq, prev_hash) = match head {
                None => (1, [0; 32]),
                Some((seq, hash)) => (
                    ms_value("audit head seq", seq)? + 1,
                    hash32(&format!("audit entry {seq}: hash"), hash)?,
                ),
            };
            let at_ms = ms_value("clock", now_ms())?;
            let hash = audit_entry_hash(seq, at_ms, &prev_hash, kind, request_id, entry_json);
            let signature = sign(&hash);
            tx.execute(
                &format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                rusqlite::params![
                    seq as i64,
                    at_ms as i64,
                    kind,
                    request_id,
                    entry_json,
                    prev_hash.as_slice(),
                    hash.as_slice(),
                    signature.as_slice(),
                ],
            )?;
            Ok(AuditRecord {
                seq,
                at_ms,
                kind: kind.to_owned(),
                request_id: request_id.map(str::to_owned),
                entry: entry_json.to_owned(),
                prev_hash,
                hash,
                signature,
            })
        })
    }

    /// Up to `limit` entries with seq above `after_seq`, oldest first.
    pub fn audit_page(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let conn = self.conn();
        let mut query = conn.prepare(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = query.query_map((after, limit), raw_audit)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(read_audit(row?)?);
        }
        Ok(out)
    }

    /// The newest entry, if any.
    pub fn audit_head(&self) -> Result<Option<AuditRecord>> {
        self.conn()
            .query_row(
                &format!("SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1"),
                [],
                raw_audit,
            )
            .optional()?
            .map(read_audit)
            .transpose()
    }

    /// Verifies the whole log ([`verify_audit`]), reading it a page at a time. The outer
    /// error is the store failing (a row that does not read back is [`StoreError::Corrupt`]);
    /// the inner one is the chain breaking.
    pub fn verify_audit_log(
        &self,
        node_key: &VerifyingKey,
    ) -> Result<Result<AuditSummary, AuditBreak>> {
        let mut check = ChainCheck::new(node_key);
        let mut after = 0;
        loop {
            let page = self.audit_page(after, VERIFY_PAGE)?;
            let Some(last) = page.last() else {
                return Ok(Ok(check.summary()));
            };
            after = last.seq;
            for r in &page {
                if let Err(b) = check.check(r) {
                    return Ok(Err(b));
                }
            }
        }
    }

    /// Opens an existing store to read it while its node may be running (e.g. for
    /// `keyrack audit`): read-only, never created, migrated or written. Refuses a file that
    /// is not a keyrack store, one of another schema version than this build's (an older one
    /// is migrated by starting the node), and one that belongs to another node.
    pub fn open_read_only(path: &Path, node_id: &str) -> Result<Self> {
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        // Opening it first gives a plain "not found" or "permission denied" naming the file.
        OpenOptions::new().read(true).open(path).map_err(io)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "trusted_schema", false)?;
        let application_id: i32 = conn.query_row(
            "SELECT application_id FROM pragma_application_id",
            [],
            |r| r.get(0),
        )?;
        if application_id != schema::APPLICATION_ID {
            return Err(StoreError::NotAStore {
                path: path.to_owned(),
                application_id,
            });
        }
        let found: i64 =
            conn.query_row("SELECT user_version FROM pragma_user_version", [], |r| {
                r.get(0)
            })?;
        if found > schema::SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: schema::SCHEMA_VERSION,
            });
        }
        if found < schema::SCHEMA_VERSION {
            return Err(StoreError::SchemaTooOld {
                path: path.to_owned(),
                found,
                supported: schema::SCHEMA_VERSION,
            });
        }
        let (cluster_id, stored_node): (String, String) = conn.query_row(
            "SELECT cluster_id, node_id FROM store_meta WHERE singleton = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if stored_node != node_id {
            return Err(StoreError::IdentityMismatch {
                path: path.to_owned(),
                field: "node",
                stored: stored_node,
                configured: node_id.to_owned(),
            });
        }
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            cluster_id,
            node_id: node_id.to_owned(),
        })
    }
}
