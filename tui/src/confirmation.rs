//! Whether the nodes recorded a verdict the console sent: read from the signed results the
//! node passed back with its 202 ([`Submitted::results`]), never from the 202 itself.
//!
//! What it owns: counting only the results that verify under the approver's own manifest
//! and answer the very verdict request signed here (a node that lies cannot forge another
//! node's signature, nor pass off a result about another request), and the words the
//! console shows for it. It never sends anything: when not every node confirmed, it says
//! how to check from a machine with NATS access.

use std::collections::BTreeMap;

use keyrack_client::api::{SubmitRequest, Submitted};
use keyrack_client::manifest::VerifiedManifest;
use keyrack_client::request::SignedRequest;
use keyrack_client::result::{SignedResult, Status};

use crate::approval::Verdict;

/// What the nodes' signed results say of one approve or reject sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    /// Approve or reject.
    pub verdict: Verdict,
    /// The hash of the request approved or rejected (hex, from the signed verdict).
    pub request_hash: String,
    /// The verdict request's own id.
    pub verdict_id: String,
    /// Nodes whose signed `ok` result answers the verdict: it is recorded there (manifest
    /// order).
    pub recorded: Vec<String>,
    /// Nodes whose signed result answers the verdict without recording it, with their
    /// message.
    pub refused: Vec<(String, String)>,
    /// Nodes of the manifest with no signed answer among the results.
    pub silent: Vec<String>,
    /// Results that did not count: not a valid signature of a node of the manifest, or
    /// about another request.
    pub ignored: usize,
}

impl Confirmation {
    /// Reads `submitted.results` for the verdict `sent` (as signed here), under `manifest`
    /// (the approver's own).
    pub fn from_results(
        manifest: &VerifiedManifest,
        sent: &SubmitRequest,
        submitted: &Submitted,
    ) -> Result<Self, String> {
        let signed = SignedRequest::parse(sent.signed_request.as_bytes())
            .map_err(|e| format!("the verdict sent does not read back: {e}"))?;
        let request = signed
            .verify_with(manifest)
            .map_err(|e| format!("the verdict sent does not verify: {e}"))?;
        let body = &request.body;
        let (verdict, target) = match (body.approves, body.rejects) {
            (Some(hash), None) => (Verdict::Approve, hash),
            (None, Some(hash)) => (Verdict::Reject, hash),
            _ => return Err("the request sent is not an approve or a reject".to_owned()),
        };
        let mut answers: BTreeMap<String, Result<(), String>> = BTreeMap::new();
        let mut ignored = 0usize;
        for json in &submitted.results {
            let verified = SignedResult::parse(json.as_bytes())
                .and_then(|r| r.verify_with(manifest))
                .ok()
                .filter(|r| r.answers(&signed));
            let Some(result) = verified else {
                ignored = ignored.saturating_add(1);
                continue;
            };
            let answer = match result.status {
                Status::Ok => Ok(()),
                _ => Err(result.message),
            };
            // A node's `ok` stands over any refusal of it (a redelivered copy, say).
            let slot = answers.entry(result.node_id).or_insert(answer.clone());
            if answer.is_ok() {
                *slot = answer;
            }
        }
        let (mut recorded, mut refused, mut silent) = (Vec::new(), Vec::new(), Vec::new());
        for node in manifest.nodes() {
            let id = node.node_id().to_owned();
            match answers.remove(&id) {
                Some(Ok(())) => recorded.push(id),
                Some(Err(message)) => refused.push((id, message)),
                None => silent.push(id),
            }
        }
        Ok(Confirmation {
            verdict,
            request_hash: hex::encode(target),
            verdict_id: body.request_id.clone(),
            recorded,
            refused,
            silent,
            ignored,
        })
    }

    /// The nodes of the manifest.
    pub fn members(&self) -> usize {
        self.recorded.len() + self.refused.len() + self.silent.len()
    }

    /// Whether every node of the manifest confirmed it, signed.
    pub fn complete(&self) -> bool {
        self.refused.is_empty() && self.silent.is_empty()
    }

    /// "approval" or "rejection".
    pub fn what(&self) -> &'static str {
        match self.verdict {
            Verdict::Approve => "approval",
            Verdict::Reject => "rejection",
        }
    }

    /// "recorded by node0, node1 (2 of 3)".
    fn recorded_by(&self) -> String {
        let who = if self.recorded.is_empty() {
            "no node".to_owned()
        } else {
            self.recorded.join(", ")
        };
        format!(
            "recorded by {who} ({} of {})",
            self.recorded.len(),
            self.members()
        )
    }

    /// The command that sends the verdict to every node and checks each one's answer (with
    /// the approver's client.toml: `keyrack client --config …`).
    pub fn cli_command(&self) -> String {
        format!(
            "keyrack client {} {}",
            self.verdict.as_str(),
            self.request_hash
        )
    }

    /// One line for the operator, e.g. "rejection of request 0123456789ab… recorded by
    /// node0, node1, node2 (3 of 3)", or a warning when not every node confirmed it.
    pub fn summary(&self, request_id: &str) -> String {
        let request = crate::fmt::short(request_id, 12);
        if self.complete() {
            return format!(
                "{} of request {request} {}",
                self.what(),
                self.recorded_by()
            );
        }
        format!(
            "WARNING: {} of request {request} NOT confirmed by every node, {}: run `{}` where \
             NATS is reachable",
            self.what(),
            self.recorded_by(),
            self.cli_command()
        )
    }

    /// The warning shown until the operator closes it, when not every node confirmed the
    /// verdict: which node said what, and what to do.
    pub fn warning(&self, request_id: &str) -> Vec<String> {
        let mut lines = vec![format!(
            "Your {} of request {request_id} was passed to the node, but not every node \
             confirmed it with a signed result that verifies under your manifest: {}.",
            self.what(),
            self.recorded_by()
        )];
        if self.recorded.is_empty() && self.refused.is_empty() && self.ignored == 0 {
            lines.push(
                "The node sent back no signed results: it is older than this console, or it \
                 did not pass your verdict on."
                    .to_owned(),
            );
        }
        lines.push(String::new());
        lines.extend(
            self.recorded
                .iter()
                .map(|n| format!("  ✔ {n:<12} recorded")),
        );
        lines.extend(
            self.refused
                .iter()
                .map(|(n, why)| format!("  ✘ {n:<12} not recorded: {why}")),
        );
        lines.extend(
            self.silent
                .iter()
                .map(|n| format!("  ? {n:<12} no signed answer")),
        );
        if self.ignored > 0 {
            lines.push(format!(
                "  {} result(s) did not count: not signed by a node of your manifest, or about \
                 another request",
                self.ignored
            ));
        }
        lines.push(String::new());
        lines.push(match self.verdict {
            Verdict::Reject => "A node that has not recorded your rejection may still carry the \
                                request out."
                .to_owned(),
            Verdict::Approve => {
                "A node that has not recorded your approval does not count it.".to_owned()
            }
        });
        lines.push(
            "Send it again from a machine with NATS access (`keyrack client --config` your \
             client.toml): it reaches every node and checks each node's signed answer:"
                .to_owned(),
        );
        lines.push(format!("  {}", self.cli_command()));
        lines
    }
}
