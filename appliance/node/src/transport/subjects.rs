//! NATS subject and stream names of a cluster (documented in docs/PROTOCOL.md).

/// JetStream stream holding a cluster's requests.
pub fn request_stream(cluster: &str) -> String {
    format!("KEYRACK_REQ_{cluster}")
}

/// JetStream stream holding a cluster's results.
pub fn result_stream(cluster: &str) -> String {
    format!("KEYRACK_RES_{cluster}")
}

/// Subject a request of `kind` is published on.
pub fn request(cluster: &str, kind: &str) -> String {
    format!("keyrack.{cluster}.req.{kind}")
}

/// Subject a result for `client_id` about `request_id` is published on.
pub fn result(cluster: &str, client_id: &str, request_id: &str) -> String {
    format!("keyrack.{cluster}.res.{client_id}.{request_id}")
}

/// Every result for one client.
pub fn results_for(cluster: &str, client_id: &str) -> String {
    format!("keyrack.{cluster}.res.{client_id}.>")
}

/// Durable consumer name of a node on the request stream.
pub fn consumer(node_id: &str) -> String {
    format!("node-{node_id}")
}

/// Session messages to one node (`Some`) or to all (`None`).
pub fn session(cluster: &str, session_hex: &str, to: Option<&str>) -> String {
    format!(
        "keyrack.{cluster}.sess.{session_hex}.{}",
        to.unwrap_or("all")
    )
}

/// Coordinator control messages about one request.
pub fn control(cluster: &str, request_id: &str) -> String {
    format!("keyrack.{cluster}.ctl.{request_id}")
}

/// A node's heartbeats.
pub fn heartbeat(cluster: &str, node_id: &str) -> String {
    format!("keyrack.{cluster}.hb.{node_id}")
}

/// Every node's heartbeats.
pub fn heartbeats(cluster: &str) -> String {
    format!("keyrack.{cluster}.hb.*")
}
