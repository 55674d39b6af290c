//! `status` requests: this node's own view of a key, read from its store and reported at
//! once. No handshake, no session, no share unsealed: every node that accepts the request
//! answers for itself, so a client sees each node's status, public key and version side by
//! side (and a node that is behind, or disagrees, stands out).
//!
//! A key id this node has no record of is not an error: the answer is `ok` with no keys.

use std::sync::Arc;

use keyrack_client::codes::ErrorCode;
use keyrack_client::request::VerifiedRequest;
use keyrack_client::result::{KeyInfo, KeyStatus, Status};
use keyrack_client::scheme::Scheme;

use super::request::{Done, Outcome};
use super::Node;
use crate::store::KeyRecord;

/// Answers a `status` request: one [`KeyInfo`] (with its status) per scheme asked (none
/// asked: every scheme) for which the store has a record of the key id.
pub(super) async fn status(node: &Arc<Node>, request: &VerifiedRequest) -> Option<Outcome> {
    let schemes = if request.body.schemes.is_empty() {
        Scheme::ALL.to_vec()
    } else {
        request.body.schemes.clone()
    };
    let (store, key_id) = (node.store.clone(), request.body.key_id.clone());
    let read = tokio::task::spawn_blocking(move || {
        schemes
            .into_iter()
            .filter_map(|scheme| match store.key(&key_id, scheme.as_str()) {
                Ok(None) => None,
                Ok(Some(record)) => Some(key_info(scheme, record)),
                Err(e) => Some(Err(format!("store: {e}"))),
            })
            .collect::<Result<Vec<KeyInfo>, String>>()
    })
    .await;
    let failed = |message: String| Some(Err((Status::Failed, ErrorCode::Internal, message)));
    match read {
        Ok(Ok(keys)) => Some(Ok(Done::keys(keys))),
        Ok(Err(message)) => failed(message),
        Err(e) => failed(format!("store task: {e}")),
    }
}

/// What this node is doing with the key right now (reshare, refresh, delete, with the
/// phase), and any staged share an interrupted run left unsettled, one item per scheme, for
/// the status result's message; empty if nothing.
pub(super) async fn under_way(node: &Node, key_id: &str, keys: &[KeyInfo]) -> String {
    let mut schemes: Vec<Scheme> = keys.iter().map(|k| k.scheme).collect();
    if schemes.is_empty() {
        schemes = Scheme::ALL.to_vec();
    }
    let (store, id, asked) = (node.store.clone(), key_id.to_owned(), schemes.clone());
    let staged = tokio::task::spawn_blocking(move || {
        asked
            .iter()
            .map(|s| {
                store.staged(&id, s.as_str()).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot read a staged share record");
                    None
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut notes = vec![];
    for (i, s) in schemes.iter().enumerate() {
        if let Some(what) = node.key_ops.phase(key_id, s.as_str()) {
            notes.push(format!("{}: {what}", s.as_str()));
        } else if let Some(Some(st)) = staged.get(i) {
            notes.push(format!(
                "{}: a staged share of version {} ({} of {}) left by an interrupted run; the \
                 next reshare or refresh of the key settles it",
                s.as_str(),
                st.version,
                st.threshold,
                st.participants.join(",")
            ));
        }
    }
    notes.join("; ")
}

/// A key record as a status result reports it: no public key (empty, chain code zero)
/// until the key was READY once.
fn key_info(scheme: Scheme, record: KeyRecord) -> Result<KeyInfo, String> {
    let status = record.status;
    let (public_key, chain_code) = match (record.public_key, record.chain_code) {
        (Some(key), Some(chain)) => (key, chain),
        _ if status == KeyStatus::Ready => {
            return Err(format!(
                "{scheme} key '{}' is READY without a public key",
                record.key_id
            ))
        }
        _ => (Vec::new(), [0; 32]),
    };
    Ok(KeyInfo {
        key_id: record.key_id,
        scheme,
        public_key,
        chain_code,
        threshold: record.threshold,
        participants: record.participants,
        version: record.version,
        status: Some(status),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: KeyStatus, public_key: Option<Vec<u8>>) -> KeyRecord {
        KeyRecord {
            key_id: "wallet-1".into(),
            scheme: "ed25519".into(),
            status,
            threshold: 2,
            parties: 3,
            participants: vec!["node0".into(), "node1".into(), "node2".into()],
            chain_code: public_key.as_ref().map(|_| [7; 32]),
            public_key,
            version: 2,
            created_at: std::time::UNIX_EPOCH,
            updated_at: std::time::UNIX_EPOCH,
            error: None,
        }
    }

    #[test]
    fn each_store_status_is_reported_with_what_the_key_has() {
        let key = Some(vec![5; 32]);
        for (status, public_key) in [
            (KeyStatus::Ready, key.clone()),
            (KeyStatus::Deleted, key.clone()),
            (KeyStatus::Deleted, None),
            (KeyStatus::Pending, None),
            (KeyStatus::Error, None),
        ] {
            let info = key_info(Scheme::Ed25519, record(status, public_key.clone())).unwrap();
            assert_eq!(info.status, Some(status));
            assert_eq!(info.public_key, public_key.clone().unwrap_or_default());
            let chain = if public_key.is_some() {
                [7; 32]
            } else {
                [0; 32]
            };
            assert_eq!(info.chain_code, chain);
            assert_eq!((info.threshold, info.version), (2, 2));
            assert_eq!(info.participants.len(), 3);
        }
    }

    #[test]
    fn a_ready_key_without_a_public_key_is_an_error_not_an_empty_key() {
        let e = key_info(Scheme::Ed25519, record(KeyStatus::Ready, None)).unwrap_err();
        assert!(e.contains("READY without a public key"), "{e}");
    }
}
