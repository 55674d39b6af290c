//! The NATS connection of a node (and of `keyrack manifest publish`).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;
use futures::StreamExt;

use keyrack_client::subjects::{self, InvalidToken};

/// How long requests stay in the request stream if some node never acknowledges them.
const REQUEST_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long results stay for clients to read.
const RESULT_MAX_AGE: Duration = Duration::from_secs(3600);
/// Window in which a re-published message with the same `Nats-Msg-Id` is dropped.
const DEDUP_WINDOW: Duration = Duration::from_secs(120);
/// How long a node may hold a request before NATS redelivers it.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// The most bytes the verdict stream keeps (the oldest verdicts go first beyond it).
const VERDICT_STREAM_BYTES: i64 = 1024 * 1024 * 1024;
/// The largest manifest (TOML bytes) the manifest stream takes.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// The most bytes the manifest stream keeps (the oldest versions go first beyond it).
const MANIFEST_STREAM_BYTES: i64 = 256 * 1024 * 1024;
/// The most manifests the manifest stream keeps (the oldest go first beyond it).
const MANIFEST_STREAM_MESSAGES: i64 = 10_000;

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No NATS server answered.
    #[error("cannot connect to NATS at {urls}: {detail}")]
    Connect {
        /// The configured URLs.
        urls: String,
        /// What the client said.
        detail: String,
    },
    /// A JetStream operation failed.
    #[error("NATS JetStream {operation}: {detail}")]
    JetStream {
        /// What was being done.
        operation: &'static str,
        /// What the server said.
        detail: String,
    },
    /// A cluster, node, client or request id is not a valid subject token.
    #[error(transparent)]
    Name(#[from] InvalidToken),
    /// A core NATS publish or subscribe failed.
    #[error("NATS {operation}: {detail}")]
    Core {
        /// What was being done.
        operation: &'static str,
        /// What the client said.
        detail: String,
    },
}

fn js_err(operation: &'static str) -> impl Fn(&dyn std::fmt::Display) -> TransportError {
    move |e| TransportError::JetStream {
        operation,
        detail: e.to_string(),
    }
}

/// A node's (or client's) connection to the cluster's NATS.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    cluster: String,
}

/// A request taken from the node's durable consumer. Acknowledge it once handled; `delay` it
/// (NAK with a delay) to push back when the node is busy — a request is never dropped.
pub struct RequestDelivery {
    /// The request's raw bytes (untrusted).
    pub payload: Vec<u8>,
    /// The subject it arrived on.
    pub subject: String,
    /// How many times it was delivered (1 the first time).
    pub delivered: i64,
    message: jetstream::Message,
}

/// An ordered consumer's messages, and how many were pending when it began.
struct Ordered {
    pending: u64,
    messages: consumer::pull::Ordered,
}

/// What an ordered consumer's message gives: its stream sequence and bytes.
fn sequenced<E: std::fmt::Display>(
    operation: &'static str,
) -> impl Fn(Result<jetstream::Message, E>) -> Result<ManifestMessage, TransportError> {
    move |m| {
        let m = m.map_err(|e| js_err(operation)(&e))?;
        let sequence = m
            .info()
            .map(|i| i.stream_sequence)
            .map_err(|e| js_err(operation)(&e))?;
        Ok(ManifestMessage {
            sequence,
            payload: m.payload.to_vec(),
        })
    }
}

/// A message of a stream read in order (untrusted bytes: a manifest's TOML, a verdict).
pub struct ManifestMessage {
    /// Its sequence number in the stream.
    pub sequence: u64,
    /// The bytes published.
    pub payload: Vec<u8>,
}

impl RequestDelivery {
    /// Marks the request handled: it is not delivered to this node again.
    pub async fn ack(&self) -> Result<(), TransportError> {
        self.message.ack().await.map_err(|e| js_err("ack")(&e))
    }

    /// Tells NATS the request is still being handled (resets its acknowledgement wait).
    pub async fn in_progress(&self) -> Result<(), TransportError> {
        self.message
            .ack_with(jetstream::AckKind::Progress)
            .await
            .map_err(|e| js_err("progress")(&e))
    }

    /// Hands the request back, to be redelivered after `delay`.
    pub async fn delay(&self, delay: Duration) -> Result<(), TransportError> {
        self.message
            .ack_with(jetstream::AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| js_err("nak")(&e))
    }
}

impl Bus {
    /// Connects to any of `urls` (a cluster's URL list). Returns at once: if no server is up
    /// yet, the client keeps trying in the background (a node may start before NATS), and it
    /// reconnects by itself after losing the server; [`Bus::is_connected`] tells the state.
    pub async fn connect(
        urls: &[String],
        name: &str,
        cluster: &str,
    ) -> Result<Self, TransportError> {
        let joined = urls.join(",");
        let addrs: Vec<async_nats::ServerAddr> = urls
            .iter()
            .map(|u| u.parse())
            .collect::<Result<_, _>>()
            .map_err(|e: std::io::Error| TransportError::Connect {
                urls: joined.clone(),
                detail: e.to_string(),
            })?;
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(addrs)
            .await
            .map_err(|e| TransportError::Connect {
                urls: joined,
                detail: e.to_string(),
            })?;
        let js = jetstream::new(client.clone());
        Ok(Bus {
            client,
            js,
            cluster: cluster.to_owned(),
        })
    }

    /// Whether the client is connected now (it reconnects by itself when not).
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The cluster id.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The core NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Creates the request and result streams if they are missing (idempotent; every node
    /// calls it at start).
    pub async fn ensure_streams(&self) -> Result<(), TransportError> {
        let requests = stream::Config {
            name: subjects::request_stream(&self.cluster)?,
            subjects: vec![subjects::request_stream_subjects(&self.cluster)?],
            // Every node has its own consumer; a request goes once all of them acknowledged it.
            retention: stream::RetentionPolicy::Interest,
            storage: stream::StorageType::File,
            max_age: REQUEST_MAX_AGE,
            duplicate_window: DEDUP_WINDOW,
            ..Default::default()
        };
        // Approvers' verdicts, apart from the requests: no backlog of other work delays them.
        // Kept as long as a rejection stands (not only until every node acknowledged them):
        // a node restored from an older copy of its store reads its rejections back at start.
        let verdicts = stream::Config {
            name: subjects::verdict_stream(&self.cluster)?,
            subjects: vec![subjects::verdict_stream_subjects(&self.cluster)?],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: Duration::from_millis(crate::intake::REJECTIONS_STAND_MS),
            max_bytes: VERDICT_STREAM_BYTES,
            discard: stream::DiscardPolicy::Old,
            duplicate_window: DEDUP_WINDOW,
            ..Default::default()
        };
        let results = stream::Config {
            name: subjects::result_stream(&self.cluster)?,
            subjects: vec![subjects::result_stream_subjects(&self.cluster)?],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: RESULT_MAX_AGE,
            duplicate_window: DEDUP_WINDOW,
            ..Default::default()
        };
        for config in [requests, verdicts, results] {
            self.get_or_create_stream(config, "create stream").await?;
        }
        self.ensure_manifest_stream().await
    }

    /// Gets the stream `config` names, creating it if it is missing. Nodes starting at once
    /// on a fresh server all create it: the server refuses all but one (the subjects
    /// overlap, or the name is taken), and the stream is there all the same.
    async fn get_or_create_stream(
        &self,
        config: stream::Config,
        operation: &'static str,
    ) -> Result<(), TransportError> {
        let name = config.name.clone();
        match self.js.get_or_create_stream(config).await {
            Ok(_) => Ok(()),
            Err(e) => match self.js.get_stream(&name).await {
                Ok(_) => Ok(()),
                Err(_) => Err(js_err(operation)(&e)),
            },
        }
    }

    /// Creates the manifest stream if it is missing (idempotent; the nodes call it through
    /// [`Bus::ensure_streams`], `keyrack manifest publish` before publishing). It keeps every
    /// version (no age limit; beyond 10000 messages or 256 MiB the oldest go), refuses
    /// messages over [`MAX_MANIFEST_BYTES`], and drops a manifest file published again
    /// (`Nats-Msg-Id`: the bytes' SHA-256) within the dedup window.
    pub async fn ensure_manifest_stream(&self) -> Result<(), TransportError> {
        let config = stream::Config {
            name: subjects::manifest_stream(&self.cluster)?,
            subjects: vec![subjects::manifest_subject(&self.cluster)?],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_messages: MANIFEST_STREAM_MESSAGES,
            max_bytes: MANIFEST_STREAM_BYTES,
            max_message_size: MAX_MANIFEST_BYTES as i32,
            discard: stream::DiscardPolicy::Old,
            duplicate_window: DEDUP_WINDOW,
            ..Default::default()
        };
        self.get_or_create_stream(config, "create manifest stream")
            .await?;
        Ok(())
    }

    /// Publishes a signed manifest (its TOML bytes) to the manifest stream, with the
    /// SHA-256 of those bytes as `Nats-Msg-Id`. Returns whether JetStream took it for a
    /// duplicate (the same bytes published within the dedup window: the nodes saw them).
    pub async fn publish_manifest(&self, toml: Vec<u8>) -> Result<bool, TransportError> {
        use sha2::Digest as _;
        let message_hash: [u8; 32] = sha2::Sha256::digest(&toml).into();
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            subjects::manifest_msg_id(&message_hash).as_str(),
        );
        let ack = self
            .js
            .publish_with_headers(
                subjects::manifest_subject(&self.cluster)?,
                headers,
                toml.into(),
            )
            .await
            .map_err(|e| js_err("publish manifest")(&e))?
            .await
            .map_err(|e| js_err("publish manifest ack")(&e))?;
        Ok(ack.duplicate)
    }

    /// Every message of the manifest stream from the first, then each new one as it comes
    /// (an ordered consumer), with the stream's last sequence number when reading began:
    /// messages up to it were there before (history), later ones are new.
    pub async fn manifests(
        &self,
    ) -> Result<
        (
            u64,
            impl futures::Stream<Item = Result<ManifestMessage, TransportError>>,
        ),
        TransportError,
    > {
        let (info, read) = self
            .ordered(subjects::manifest_stream(&self.cluster)?, None, "manifests")
            .await?;
        Ok((
            info.state.last_sequence,
            read.messages.map(sequenced("read manifest")),
        ))
    }

    /// Every verdict of `kind` (`approve` or `reject`) the verdict stream holds, from the
    /// first (an ordered consumer), with how many of them were there when reading began:
    /// read that many for what was there before.
    pub async fn verdict_history(
        &self,
        kind: &str,
    ) -> Result<
        (
            u64,
            impl futures::Stream<Item = Result<ManifestMessage, TransportError>>,
        ),
        TransportError,
    > {
        let filter = subjects::request_subject(&self.cluster, kind)?;
        let stream = subjects::verdict_stream(&self.cluster)?;
        let (_, read) = self.ordered(stream, Some(filter), "verdicts").await?;
        // Those of this kind only (the stream's last sequence may be another kind's).
        Ok((read.pending, read.messages.map(sequenced("read verdict"))))
    }

    /// The node's durable consumer on the request stream: every node sees every request.
    /// At most `max_in_flight` requests are unacknowledged at once.
    pub async fn request_consumer(
        &self,
        node_id: &str,
        max_in_flight: i64,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, TransportError> {
        self.node_consumer(
            subjects::request_stream(&self.cluster)?,
            node_id,
            max_in_flight,
        )
        .await
    }

    /// The node's durable consumer on the verdict stream (approve and reject requests),
    /// read apart from the request stream so that other work never delays a verdict.
    pub async fn verdict_consumer(
        &self,
        node_id: &str,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, TransportError> {
        self.node_consumer(subjects::verdict_stream(&self.cluster)?, node_id, 256)
            .await
    }

    async fn node_consumer(
        &self,
        stream_name: String,
        node_id: &str,
        max_in_flight: i64,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, TransportError> {
        let stream = self
            .js
            .get_stream(stream_name)
            .await
            .map_err(|e| js_err("open request stream")(&e))?;
        let name = subjects::node_consumer(node_id)?;
        stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: max_in_flight,
                    // A node's first consumer starts at the requests published after it:
                    // a node that joins a running cluster must not take up the requests
                    // sent before it was there (a keygen the cluster ran without it, say).
                    // Once created, the durable consumer keeps its place across restarts.
                    deliver_policy: consumer::DeliverPolicy::New,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| js_err("create consumer")(&e))
    }

    /// The next request for this node, waiting at most `wait`.
    pub async fn next_request(
        consumer: &consumer::Consumer<consumer::pull::Config>,
        wait: Duration,
    ) -> Result<Option<RequestDelivery>, TransportError> {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| js_err("fetch")(&e))?;
        match batch.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(js_err("fetch")(&e)),
            Some(Ok(message)) => {
                let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
                Ok(Some(RequestDelivery {
                    payload: message.payload.to_vec(),
                    subject: message.subject.to_string(),
                    delivered,
                    message,
                }))
            }
        }
    }

    /// Publishes a request (as the client SDK does), de-duplicated by `request_id`.
    pub async fn publish_request(
        &self,
        kind: &str,
        request_id: &str,
        body: Vec<u8>,
    ) -> Result<(), TransportError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", request_id);
        self.js
            .publish_with_headers(
                subjects::request_subject(&self.cluster, kind)?,
                headers,
                body.into(),
            )
            .await
            .map_err(|e| js_err("publish request")(&e))?
            .await
            .map_err(|e| js_err("publish request ack")(&e))?;
        Ok(())
    }

    /// Publishes a node's outcome for a request it accepted; a second publish of the same
    /// (request, node) within the dedup window is dropped by the server.
    pub async fn publish_result(
        &self,
        client_id: &str,
        request_id: &str,
        node_id: &str,
        body: Vec<u8>,
    ) -> Result<(), TransportError> {
        let msg_id = subjects::result_msg_id(request_id, node_id)?;
        self.publish_answer(client_id, request_id, msg_id, body)
            .await
    }

    /// Publishes a refusal made before the request was accepted (bad signature, replay…),
    /// under its own de-duplication id, so that a refusal of a forged copy can never shadow
    /// the outcome of the genuine request.
    pub async fn publish_refusal(
        &self,
        client_id: &str,
        request_id: &str,
        node_id: &str,
        code: keyrack_client::codes::ErrorCode,
        body: Vec<u8>,
    ) -> Result<(), TransportError> {
        let msg_id = subjects::refusal_msg_id(request_id, node_id, code)?;
        self.publish_answer(client_id, request_id, msg_id, body)
            .await
    }

    async fn publish_answer(
        &self,
        client_id: &str,
        request_id: &str,
        msg_id: String,
        body: Vec<u8>,
    ) -> Result<(), TransportError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        self.js
            .publish_with_headers(
                subjects::result_subject(&self.cluster, client_id, request_id)?,
                headers,
                body.into(),
            )
            .await
            .map_err(|e| js_err("publish result")(&e))?
            .await
            .map_err(|e| js_err("publish result ack")(&e))?;
        Ok(())
    }

    /// Every result for `client_id` from now on (and those still in the stream), in order.
    pub async fn results(
        &self,
        client_id: &str,
    ) -> Result<impl futures::Stream<Item = Result<Vec<u8>, TransportError>>, TransportError> {
        let filter = subjects::result_filter(&self.cluster, client_id)?;
        self.payloads(filter).await
    }

    /// Every result of one request (`client_id`'s request `request_id`) the result stream
    /// holds, then each new one as it comes, in order.
    pub async fn request_results(
        &self,
        client_id: &str,
        request_id: &str,
    ) -> Result<impl futures::Stream<Item = Result<Vec<u8>, TransportError>>, TransportError> {
        let filter = subjects::result_subject(&self.cluster, client_id, request_id)?;
        self.payloads(filter).await
    }

    /// The payloads of the result stream's messages on `filter`, from the first.
    async fn payloads(
        &self,
        filter: String,
    ) -> Result<impl futures::Stream<Item = Result<Vec<u8>, TransportError>>, TransportError> {
        let stream = subjects::result_stream(&self.cluster)?;
        let (_, read) = self.ordered(stream, Some(filter), "results").await?;
        Ok(read.messages.map(|m| {
            m.map(|m| m.payload.to_vec())
                .map_err(|e| js_err("read result")(&e))
        }))
    }

    /// An ordered consumer on `stream` (its messages on `filter`, all when `None`), from the
    /// first message; with the stream's info as the consumer began.
    async fn ordered(
        &self,
        stream: String,
        filter: Option<String>,
        what: &'static str,
    ) -> Result<(stream::Info, Ordered), TransportError> {
        let open = |e: &dyn std::fmt::Display| TransportError::JetStream {
            operation: "open stream",
            detail: format!("{what}: {e}"),
        };
        let stream = self.js.get_stream(stream).await.map_err(|e| open(&e))?;
        let info = stream.cached_info().clone();
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.unwrap_or_default(),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| TransportError::JetStream {
                operation: "create ordered consumer",
                detail: format!("{what}: {e}"),
            })?;
        let pending = consumer.cached_info().num_pending;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| TransportError::JetStream {
                operation: "read",
                detail: format!("{what}: {e}"),
            })?;
        Ok((info, Ordered { pending, messages }))
    }

    /// Waits until everything published so far has been written to the server.
    pub async fn flush(&self) -> Result<(), TransportError> {
        self.client.flush().await.map_err(|e| TransportError::Core {
            operation: "flush",
            detail: e.to_string(),
        })
    }

    /// Publishes on a core NATS subject (session rounds, control, heartbeats).
    pub async fn publish(&self, subject: String, payload: Vec<u8>) -> Result<(), TransportError> {
        self.client
            .publish(subject, payload.into())
            .await
            .map_err(|e| TransportError::Core {
                operation: "publish",
                detail: e.to_string(),
            })
    }

    /// Subscribes to a core NATS subject. Subscribe before peers may send: core NATS does
    /// not keep messages for late subscribers.
    pub async fn subscribe(
        &self,
        subject: String,
    ) -> Result<async_nats::Subscriber, TransportError> {
        let sub = self
            .client
            .subscribe(subject)
            .await
            .map_err(|e| TransportError::Core {
                operation: "subscribe",
                detail: e.to_string(),
            })?;
        // The server must know of the subscription before anyone relies on it.
        self.client
            .flush()
            .await
            .map_err(|e| TransportError::Core {
                operation: "flush",
                detail: e.to_string(),
            })?;
        Ok(sub)
    }
}
