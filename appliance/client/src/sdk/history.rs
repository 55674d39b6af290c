//! Reading back the results of a request this client sent earlier (possibly from another
//! process): every result still in the cluster's result stream on
//! `keyrack.<cluster>.res.<client_id>.<request_id>`, checked like live results — a manifest
//! node's signature over the body bytes, this request id and client — and, for a signature,
//! verified with [`verify_signature`].
//!
//! Without the request's own bytes the request hash cannot be checked against them; each
//! result keeps its `request_hash`, and results about different bytes (a node's refusal of a
//! forged or replayed copy) show up as a node's second result with another hash.

use super::collect::verified_result;
use super::error::Ignored;
use super::verify::verify_signature;
use super::{config, open_stream, Client, SdkError};
use crate::codes::ErrorCode;
use crate::result::{ResultBody, Status};
use crate::subjects;
use async_nats::jetstream::consumer;
use futures::StreamExt as _;
use std::time::Duration;

/// A result that verified under the manifest, and what the SDK found of its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedResult {
    /// The result body, as the node signed it.
    pub body: ResultBody,
    /// For an `ok` result with a signature: `Ok` if the SDK verified the threshold signature
    /// under the public key in the result, else why not. `None` for other results.
    pub signature_check: Option<Result<(), String>>,
}

/// One manifest node's results for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeResults {
    /// The node.
    pub node: String,
    /// Its results in the order it published them; empty if it published none (it is still
    /// working, stood down because other nodes signed, or never received the request).
    pub results: Vec<CheckedResult>,
}

/// Every result of one request still in the result stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestResults {
    /// The request.
    pub request_id: String,
    /// Every manifest node, in manifest order.
    pub nodes: Vec<NodeResults>,
    /// Messages on the request's result subject that did not count, by reason.
    pub ignored: Ignored,
}

impl NodeResults {
    /// The node's answer: its first result that is neither a `replayed` refusal (what a node
    /// says to a copy of a request it already took, not its answer to the request) nor a
    /// `pending` notice (the request waits there for approvals; the answer follows), else
    /// its latest `pending` notice, else its first result; `None` if it published none.
    pub fn answer(&self) -> Option<&CheckedResult> {
        self.results
            .iter()
            .find(|r| r.body.code != Some(ErrorCode::Replayed) && r.body.status != Status::Pending)
            .or_else(|| {
                self.results
                    .iter()
                    .rev()
                    .find(|r| r.body.status == Status::Pending)
            })
            .or(self.results.first())
    }
}

impl RequestResults {
    /// How many results counted.
    pub fn count(&self) -> usize {
        self.nodes.iter().map(|n| n.results.len()).sum()
    }
}

impl Client {
    /// Every result of the request `request_id` (sent by this client id) still in the result
    /// stream (the nodes keep results one hour), each checked under the manifest; waits at
    /// most `wait` for the stream to deliver them.
    pub async fn results_of(
        &self,
        request_id: &str,
        wait: Duration,
    ) -> Result<RequestResults, SdkError> {
        let subject =
            subjects::result_subject(&self.cluster, &self.client_id, request_id).map_err(config)?;
        let name = subjects::result_stream(&self.cluster).map_err(config)?;
        let stream = open_stream(&self.js, &self.cluster, &name).await?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subject,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| SdkError::transport("create result consumer")(&e))?;
        let mut remaining = consumer.cached_info().num_pending;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| SdkError::transport("read results")(&e))?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut ignored = Ignored::default();
        let mut nodes: Vec<NodeResults> = self
            .manifest
            .nodes()
            .iter()
            .map(|n| NodeResults {
                node: n.node_id().to_owned(),
                results: Vec::new(),
            })
            .collect();
        while remaining > 0 {
            let message = match tokio::time::timeout_at(deadline, messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(e))) => return Err(SdkError::transport("read results")(&e)),
                Ok(None) | Err(_) => {
                    return Err(SdkError::Transport {
                        operation: "read results",
                        detail: format!(
                            "{remaining} result(s) of request {request_id} not delivered \
                             within {:.1}s",
                            wait.as_secs_f64()
                        ),
                    })
                }
            };
            remaining = message.info().map_or(0, |i| i.pending);
            let Some(body) = verified_result(&self.manifest, &message.payload, &mut ignored) else {
                continue;
            };
            if body.request_id != request_id || body.client_id != self.client_id {
                ignored.other_request = ignored.other_request.saturating_add(1);
                continue;
            }
            let signature_check = match (&body.signature, body.status) {
                (Some(signature), Status::Ok) => Some(verify_signature(signature)),
                _ => None,
            };
            if let Some(entry) = nodes.iter_mut().find(|n| n.node == body.node_id) {
                entry.results.push(CheckedResult {
                    body,
                    signature_check,
                });
            }
        }
        Ok(RequestResults {
            request_id: request_id.to_owned(),
            nodes,
            ignored,
        })
    }
}
