//! NATS names: the JetStream streams, consumers and subjects the cluster uses, and the
//! token rule that keeps ids safe to put in a subject.
//!
//! Every id that becomes part of a subject (cluster id, node id, client id, request id) must
//! be a *token*: 1-64 of `a-z 0-9 - _`, starting with a letter or digit. A token can never
//! contain `.`, `*`, `>` or whitespace, so it can never change a subject's shape. Every
//! function here checks its inputs and refuses anything else. The node id `all` is reserved
//! (it names the broadcast subject of a session).
//!
//! This module only names things; it never talks to NATS.

/// The node id reserved for the broadcast subject of a session.
pub const BROADCAST: &str = "all";

/// An id that is not a token (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {what} '{value}': use 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit"
)]
pub struct InvalidToken {
    /// What the value was meant to be ("cluster id", "client id", …).
    pub what: &'static str,
    /// The value refused.
    pub value: String,
}

/// Whether `s` is a token: 1-64 of `a-z 0-9 - _`, starting with a letter or digit.
pub fn is_token(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Checks that `value` is a token; `what` names it in the error.
pub fn check_token(what: &'static str, value: &str) -> Result<(), InvalidToken> {
    if is_token(value) {
        Ok(())
    } else {
        Err(InvalidToken {
            what,
            value: value.to_owned(),
        })
    }
}

fn check_request_id(request_id: &str) -> Result<(), InvalidToken> {
    let ok = request_id.len() == 32
        && request_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InvalidToken {
            what: "request id (32 lowercase hex)",
            value: request_id.to_owned(),
        })
    }
}

/// The JetStream stream holding a cluster's requests: `KEYRACK_REQ_<cluster>`.
pub fn request_stream(cluster: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    Ok(format!("KEYRACK_REQ_{cluster}"))
}

/// The subjects the request stream captures: `keyrack.<cluster>.req.*`.
pub fn request_stream_subjects(cluster: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    Ok(format!("keyrack.{cluster}.req.*"))
}

/// The kinds that travel on the verdict stream, not the request stream: an approver's
/// `approve` and `reject`. They have a stream and node consumers of their own so that no
/// amount of other work (long keygens, floods of sign requests) delays a verdict.
pub const VERDICT_KINDS: [&str; 2] = ["approve", "reject"];

/// Where a client publishes a request of `kind` (`RequestKind::as_str`):
/// `keyrack.<cluster>.req.<kind>`, or for the [`VERDICT_KINDS`]
/// `keyrack.<cluster>.verdict.<kind>`.
pub fn request_subject(cluster: &str, kind: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    check_token("request kind", kind)?;
    if VERDICT_KINDS.contains(&kind) {
        return Ok(format!("keyrack.{cluster}.verdict.{kind}"));
    }
    Ok(format!("keyrack.{cluster}.req.{kind}"))
}

/// The JetStream stream holding a cluster's verdicts (approve and reject requests):
/// `KEYRACK_VERDICT_<cluster>`.
pub fn verdict_stream(cluster: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    Ok(format!("KEYRACK_VERDICT_{cluster}"))
}

/// The subjects the verdict stream captures: `keyrack.<cluster>.verdict.*`.
pub fn verdict_stream_subjects(cluster: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    Ok(format!("keyrack.{cluster}.verdict.*"))
}

/// The durable pull consumer of one node on the request stream and on the verdict stream:
/// `node-<node_id>` (explicit ack; every node has its own, so every node sees every
/// request).
pub fn node_consumer(node_id: &str) -> Result<String, InvalidToken> {
    check_token("node id", node_id)?;
    Ok(format!("node-{node_id}"))
}

/// The JetStream stream holding a cluster's results: `KEYRACK_RES_<cluster>`.
pub fn result_stream(cluster: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    Ok(format!("KEYRACK_RES_{cluster}"))
}

/// The subjects the result stream captures: `keyrack.<cluster>.res.>`.
pub fn result_stream_subjects(cluster: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    Ok(format!("keyrack.{cluster}.res.>"))
}

/// Where a node publishes its result for a request:
/// `keyrack.<cluster>.res.<client_id>.<request_id>`.
pub fn result_subject(
    cluster: &str,
    client_id: &str,
    request_id: &str,
) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    check_token("client id", client_id)?;
    check_request_id(request_id)?;
    Ok(format!("keyrack.{cluster}.res.{client_id}.{request_id}"))
}

/// What a client subscribes to (or filters its consumer on) to get all its results:
/// `keyrack.<cluster>.res.<client_id>.*`.
pub fn result_filter(cluster: &str, client_id: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    check_token("client id", client_id)?;
    Ok(format!("keyrack.{cluster}.res.{client_id}.*"))
}

/// The `Nats-Msg-Id` header of a node's *outcome* for a request it accepted (verified, in
/// time, not a replay): `<request_id>.<node_id>`. JetStream de-duplicates on it, so a node
/// that answers the same request twice (redelivery after a crash) publishes it once.
pub fn result_msg_id(request_id: &str, node_id: &str) -> Result<String, InvalidToken> {
    check_request_id(request_id)?;
    check_token("node id", node_id)?;
    Ok(format!("{request_id}.{node_id}"))
}

/// The `Nats-Msg-Id` header of a refusal made *before* a request was accepted (malformed,
/// bad signature, unknown initiator, out of time, replayed…): `<request_id>.<node_id>.<code>`.
///
/// Such a refusal may answer a forged or replayed copy of a genuine request; a distinct id
/// keeps it from de-duplicating away the node's outcome for the genuine one.
pub fn refusal_msg_id(
    request_id: &str,
    node_id: &str,
    code: crate::codes::ErrorCode,
) -> Result<String, InvalidToken> {
    Ok(format!(
        "{}.{}",
        result_msg_id(request_id, node_id)?,
        code.as_str()
    ))
}

/// The core NATS subject of a session envelope: `keyrack.<cluster>.sess.<session hex>.<to>`,
/// with `to` = the recipient node id, or `all` for a broadcast (`None`).
pub fn session_subject(
    cluster: &str,
    session: &[u8; 32],
    to: Option<&str>,
) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    let to = match to {
        Some(node) => {
            check_token("node id", node)?;
            if node == BROADCAST {
                return Err(InvalidToken {
                    what: "node id (reserved)",
                    value: node.to_owned(),
                });
            }
            node
        }
        None => BROADCAST,
    };
    Ok(format!(
        "keyrack.{cluster}.sess.{}.{to}",
        hex::encode(session)
    ))
}

/// What a node subscribes to for its point-to-point session messages, all sessions:
/// `keyrack.<cluster>.sess.*.<node_id>`.
pub fn session_inbox(cluster: &str, node_id: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    check_token("node id", node_id)?;
    Ok(format!("keyrack.{cluster}.sess.*.{node_id}"))
}

/// What a node subscribes to for session broadcasts, all sessions:
/// `keyrack.<cluster>.sess.*.all`.
pub fn session_broadcasts(cluster: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    Ok(format!("keyrack.{cluster}.sess.*.{BROADCAST}"))
}

/// The coordinator's control subject for one request (prepare / ready / start envelopes,
/// kind `control`): `keyrack.<cluster>.ctl.<request_id>`.
pub fn control_subject(cluster: &str, request_id: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    check_request_id(request_id)?;
    Ok(format!("keyrack.{cluster}.ctl.{request_id}"))
}

/// All control subjects of a cluster: `keyrack.<cluster>.ctl.*`.
pub fn control_filter(cluster: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    Ok(format!("keyrack.{cluster}.ctl.*"))
}

/// Where a node publishes its heartbeats: `keyrack.<cluster>.hb.<node_id>`.
pub fn heartbeat_subject(cluster: &str, node_id: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    check_token("node id", node_id)?;
    Ok(format!("keyrack.{cluster}.hb.{node_id}"))
}

/// All heartbeats of a cluster: `keyrack.<cluster>.hb.*`.
pub fn heartbeat_filter(cluster: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    Ok(format!("keyrack.{cluster}.hb.*"))
}

/// The JetStream stream holding a cluster's published manifests: `KEYRACK_MAN_<cluster>`.
/// It keeps every version (each node reads it from the start), de-duplicated by
/// [`manifest_msg_id`].
pub fn manifest_stream(cluster: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    Ok(format!("KEYRACK_MAN_{cluster}"))
}

/// Where an administrator publishes a signed manifest (the TOML file's bytes), the only
/// subject of the manifest stream: `keyrack.<cluster>.manifest`.
pub fn manifest_subject(cluster: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    Ok(format!("keyrack.{cluster}.manifest"))
}

/// The `Nats-Msg-Id` of a published manifest: SHA-256 of the bytes published, in 64 hex, so
/// that publishing the same file again is dropped by JetStream. (Not the manifest hash,
/// which leaves out the signatures: an unsigned copy published first would make JetStream
/// drop the signed one.)
pub fn manifest_msg_id(message_hash: &[u8; 32]) -> String {
    hex::encode(message_hash)
}

/// Where a node publishes its signed verdict on a manifest (core NATS):
/// `keyrack.<cluster>.manifest.verdict.<node_id>`.
pub fn manifest_verdict_subject(cluster: &str, node_id: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    check_token("node id", node_id)?;
    Ok(format!("keyrack.{cluster}.manifest.verdict.{node_id}"))
}

/// Every node's verdicts: `keyrack.<cluster>.manifest.verdict.*`.
pub fn manifest_verdict_filter(cluster: &str) -> Result<String, InvalidToken> {
    check_token("cluster id", cluster)?;
    Ok(format!("keyrack.{cluster}.manifest.verdict.*"))
}
