//! Protocol sessions: what ran, for which request, and how it ended. Nothing secret.

use std::time::SystemTime;

use rusqlite::OptionalExtension;

use super::error::{Result, StoreError};
use super::{from_ms, now_ms, Store};

/// Where a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Running.
    Running,
    /// Finished successfully.
    Completed,
    /// Failed or abandoned; [`SessionRecord::error`] says why.
    Failed,
}

impl SessionState {
    /// The name stored in the database and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Running => "RUNNING",
            SessionState::Completed => "COMPLETED",
            SessionState::Failed => "FAILED",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "RUNNING" => SessionState::Running,
            "COMPLETED" => SessionState::Completed,
            "FAILED" => SessionState::Failed,
            other => {
                return Err(StoreError::Corrupt {
                    what: format!("unknown session state '{other}'"),
                })
            }
        })
    }
}

/// A session to record as it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession<'a> {
    /// The session id (unique per protocol run).
    pub session_id: &'a str,
    /// The request it serves.
    pub request_id: &'a str,
    /// The operation, e.g. `keygen`, `sign`, `presign`, `reshare`.
    pub kind: &'a str,
    /// The key and scheme it works on, if any.
    pub key: Option<(&'a str, &'a str)>,
}

/// A recorded session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session id.
    pub session_id: String,
    /// The request it serves.
    pub request_id: String,
    /// The operation.
    pub kind: String,
    /// The key id, if any.
    pub key_id: Option<String>,
    /// The scheme, if any.
    pub scheme: Option<String>,
    /// Its state.
    pub state: SessionState,
    /// When it started.
    pub started_at: SystemTime,
    /// When it finished.
    pub finished_at: Option<SystemTime>,
    /// Why it failed.
    pub error: Option<String>,
}

/// What [`Store::recover_after_restart`] found unfinished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Sessions left RUNNING, now FAILED.
    pub sessions_failed: usize,
    /// Keys left PENDING, now ERROR (a new keygen may retry them).
    pub keygens_failed: usize,
}

const SESSION_COLUMNS: &str =
    "session_id, request_id, kind, key_id, scheme, state, started_at, finished_at, error";

type RawSession = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<i64>,
    Option<String>,
);

fn raw_session(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawSession> {
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
    ))
}

fn session_from_raw(raw: RawSession) -> Result<SessionRecord> {
    let (session_id, request_id, kind, key_id, scheme, state, started, finished, error) = raw;
    Ok(SessionRecord {
        session_id,
        request_id,
        kind,
        key_id,
        scheme,
        state: SessionState::parse(&state)?,
        started_at: from_ms(started),
        finished_at: finished.map(from_ms),
        error,
    })
}

impl Store {
    /// Records a session as RUNNING. A session id is used once: recording it again is
    /// [`StoreError::InvalidRequest`].
    pub fn start_session(&self, session: &NewSession<'_>) -> Result<()> {
        let (key_id, scheme) = session.key.unzip();
        let inserted = self.conn().execute(
            "INSERT INTO sessions (session_id, request_id, kind, key_id, scheme, state, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'RUNNING', ?6)
             ON CONFLICT (session_id) DO NOTHING",
            (
                session.session_id,
                session.request_id,
                session.kind,
                key_id,
                scheme,
                now_ms(),
            ),
        )?;
        if inserted == 1 {
            Ok(())
        } else {
            Err(StoreError::InvalidRequest(format!(
                "session '{}' was recorded before; session ids are never reused",
                session.session_id
            )))
        }
    }

    /// Ends a RUNNING session: `Ok(())` completes it, `Err(reason)` fails it.
    pub fn finish_session(&self, session_id: &str, outcome: Result<(), &str>) -> Result<()> {
        let (state, error) = match outcome {
            Ok(()) => (SessionState::Completed, None),
            Err(reason) => (SessionState::Failed, Some(reason)),
        };
        self.write(|tx| {
            let current: Option<String> = tx
                .query_row(
                    "SELECT state FROM sessions WHERE session_id = ?1",
                    [session_id],
                    |r| r.get(0),
                )
                .optional()?;
            match current.as_deref() {
                None => Err(StoreError::NotFound {
                    what: format!("session '{session_id}'"),
                }),
                Some("RUNNING") => {
                    tx.execute(
                        "UPDATE sessions SET state = ?2, finished_at = ?3, error = ?4
                         WHERE session_id = ?1",
                        (session_id, state.as_str(), now_ms(), error),
                    )?;
                    Ok(())
                }
                Some(other) => Err(StoreError::WrongState {
                    what: format!("session '{session_id}'"),
                    state: other.to_owned(),
                    expected: "RUNNING",
                }),
            }
        })
    }

    /// One session.
    pub fn session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        self.conn()
            .query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ?1"),
                [session_id],
                raw_session,
            )
            .optional()?
            .map(session_from_raw)
            .transpose()
    }

    /// The `limit` most recently started sessions, newest first.
    pub fn recent_sessions(&self, limit: u32) -> Result<Vec<SessionRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions ORDER BY started_at DESC, rowid DESC LIMIT ?1"
        ))?;
        let raws = stmt
            .query_map([limit], raw_session)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(session_from_raw).collect()
    }

    /// Call once at node start, before taking requests: no session survives a restart, so
    /// sessions left RUNNING are marked FAILED and keys left PENDING are marked ERROR with
    /// `reason` (a later keygen for them retries instead of being refused as in progress).
    pub fn recover_after_restart(&self, reason: &str) -> Result<Recovery> {
        self.write(|tx| {
            let now = now_ms();
            let sessions_failed = tx.execute(
                "UPDATE sessions SET state = 'FAILED', finished_at = ?1, error = ?2
                 WHERE state = 'RUNNING'",
                (now, reason),
            )?;
            let keygens_failed = tx.execute(
                "UPDATE keys SET status = 'ERROR', error = ?2, updated_at = ?1
                 WHERE status = 'PENDING'",
                (now, reason),
            )?;
            // A PENDING key has no share (READY is set with it), so there is nothing to erase.
            Ok(Recovery {
                sessions_failed,
                keygens_failed,
            })
        })
    }
}
