//! Signed approve and reject requests, as the console sends them for an operator who holds an
//! approver key (the same initiator key file `keyrack client approve` uses).
//!
//! What it owns: building and signing the request body. It never sends anything (the
//! worker posts it to the node's API) and never shows the key.

use keyrack_client::api::SubmitRequest;
use keyrack_client::request::{InitiatorKey, RequestBody, RequestError};
use keyrack_client::sdk::APPROVAL_KEY_ID;

/// How long an approval or rejection counts: the nodes' longest request lifetime, as
/// `keyrack client approve` defaults to.
pub const VALID_FOR_MS: u64 = 600_000;

/// Approve or reject (the wire's own type).
pub use keyrack_client::request::Verdict;

/// An operator's approver identity: the initiator key (its id is the client id too) and the
/// cluster the requests are for. `Debug` shows ids only (the key's `Debug` is redacted).
#[derive(Debug)]
pub struct Approver {
    key: InitiatorKey,
    cluster_id: String,
}

impl Approver {
    /// An approver signing as `key` for cluster `cluster_id`.
    pub fn new(key: InitiatorKey, cluster_id: &str) -> Self {
        Approver {
            key,
            cluster_id: cluster_id.to_owned(),
        }
    }

    /// The initiator id approvals are signed as.
    pub fn id(&self) -> &str {
        self.key.id()
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Uses `cluster_id` from now on (the node's own, once its status is known).
    pub fn set_cluster_id(&mut self, cluster_id: &str) {
        cluster_id.clone_into(&mut self.cluster_id);
    }

    /// A signed `verdict` request on the request whose hash is `request_hash`, created at
    /// `now_ms` and valid for [`VALID_FOR_MS`], ready to POST.
    pub fn sign(
        &self,
        verdict: Verdict,
        request_hash: [u8; 32],
        now_ms: u64,
    ) -> Result<SubmitRequest, RequestError> {
        let kind = verdict.kind();
        let id = self.key.id();
        let mut body = RequestBody::new(
            kind,
            &self.cluster_id,
            APPROVAL_KEY_ID,
            id,
            now_ms,
            VALID_FOR_MS,
        );
        match verdict {
            Verdict::Approve => body.approves = Some(request_hash),
            Verdict::Reject => body.rejects = Some(request_hash),
        }
        let signed = self.key.sign_request(&body)?;
        let json = String::from_utf8(signed.to_json())
            .map_err(|e| RequestError::Malformed(e.to_string()))?;
        Ok(SubmitRequest {
            signed_request: json,
        })
    }
}

/// Parses a request hash as the API shows it (64 hex digits).
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyrack_client::request::{RequestKind, SignedRequest};

    fn approver() -> Approver {
        let key = InitiatorKey::from_seed("carol", &[7u8; 32]).unwrap();
        Approver::new(key, "prod")
    }

    #[test]
    fn an_approval_verifies_under_the_approvers_key_and_names_the_hash() {
        let a = approver();
        let hash = [0xab; 32];
        let submit = a.sign(Verdict::Approve, hash, 1_700_000_000_000).unwrap();
        let signed = SignedRequest::parse(submit.signed_request.as_bytes()).unwrap();
        assert_eq!(signed.initiator(), "carol");
        let verified = signed.verify(&a.key.public_key()).unwrap();
        let body = verified.body;
        assert_eq!(body.kind, RequestKind::Approve);
        assert_eq!(body.approves, Some(hash));
        assert_eq!(body.rejects, None);
        assert_eq!(body.cluster_id, "prod");
        assert_eq!(body.client_id, "carol");
        assert_eq!(body.key_id, APPROVAL_KEY_ID);
        assert_eq!(body.created_at_ms, 1_700_000_000_000);
        assert_eq!(body.expires_at_ms, 1_700_000_000_000 + VALID_FOR_MS);
    }

    #[test]
    fn a_rejection_verifies_and_names_the_hash() {
        let a = approver();
        let hash = [0x11; 32];
        let submit = a.sign(Verdict::Reject, hash, 5_000).unwrap();
        let signed = SignedRequest::parse(submit.signed_request.as_bytes()).unwrap();
        let body = signed.verify(&a.key.public_key()).unwrap().body;
        assert_eq!(body.kind, RequestKind::Reject);
        assert_eq!(body.rejects, Some(hash));
        assert_eq!(body.approves, None);
    }

    #[test]
    fn another_key_does_not_verify_it() {
        let submit = approver().sign(Verdict::Approve, [1; 32], 5_000).unwrap();
        let signed = SignedRequest::parse(submit.signed_request.as_bytes()).unwrap();
        let other = InitiatorKey::from_seed("carol", &[8u8; 32]).unwrap();
        assert!(signed.verify(&other.public_key()).is_err());
    }

    #[test]
    fn hashes_parse_only_as_64_hex_digits() {
        assert_eq!(parse_hash(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_hash("abcd"), None);
        assert_eq!(parse_hash(&"zz".repeat(32)), None);
    }
}
