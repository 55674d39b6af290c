//! What `keyrack client` prints: text for people, or with `--json` one JSON object on stdout
//! whose fields are listed in each command's long help (the `*_JSON` texts below, kept next
//! to the code that writes them). Outcomes go to stdout; a failure's text goes to stderr
//! (with `--json`, the failure object goes to stdout).

use std::path::Path;
use std::time::Duration;

use keyrack_client::codes::ErrorCode;
use keyrack_client::request::PayloadKind;
use keyrack_client::result::{KeyInfo, SignatureInfo, Status};
use keyrack_client::scheme::Scheme;
use keyrack_client::sdk::{
    AgreedKeys, DeletedKey, KeyStatusReport, NodeResults, RequestResults, SdkError,
    VerifiedSignature,
};
use keyrack_client::trusted::{Recorded, TrustedKey};
use serde::Serialize;

use super::parse::DerivationPath;

/// Long help of `keygen`: its JSON output.
pub(super) const KEYGEN_JSON: &str = "\
With --json, stdout holds one JSON object:
  ok            true
  request_id    the request's id (32 hex), for `keyrack client status`
  key_id        the key id
  nodes         the nodes that reported the keys (every node of the manifest)
  keys          one object per scheme: scheme, status (null here), public_key (hex),
                chain_code (64 hex), threshold, participants (node ids), version
  trusted_keys  the trusted-keys file the keys were recorded in
On failure (exit 1): {ok: false, request_id, error: {kind, node, code, message}}, kind one
of refused, failed, timeout, disagreement, no_keys, invalid_result, bad_signature,
transport, streams_missing; node and code are null when they do not apply. Keys made but
not recorded as trusted (another key is trusted under the id) are printed as on success,
without trusted_keys, and exit 1 with the reason on stderr.";

/// Long help of `trust`: its JSON output.
pub(super) const TRUST_JSON: &str = "\
Exit status: 0 recorded; 1 nothing recorded (the nodes disagree, too few answered READY, or
another key is trusted under the id without --replace); 2 usage or configuration error.

With --json, stdout holds one JSON object:
  ok            true
  request_id    the status request's id
  key_id        the key id
  trusted_keys  the trusted-keys file written
  answered      the nodes that answered; missing: those that did not in time
  keys          one object per scheme recorded: scheme, public_key, chain_code, threshold,
                participants, version, and recorded: \"added\", \"updated\" (the same key
                with a new committee or version), \"unchanged\" or \"replaced\"
On failure (exit 1): {ok: false, request_id, error: {kind, node, code, message}}, kind
untrusted for a refusal to record (see `keyrack client keygen --help` for the others).";

/// Long help of `reshare` and `refresh`: their JSON output.
pub(super) const RESHARE_JSON: &str = "\
With --json, stdout holds one JSON object:
  ok            true
  request_id    the request's id (32 hex), for `keyrack client status`
  key_id        the key id
  nodes         the nodes that reported the new keys (those of the old or new committee)
  uninvolved    the nodes of the manifest in neither committee (they answered ok, not
                concerned)
  keys          one object per scheme: scheme, status (null here), public_key (hex,
                unchanged), chain_code (64 hex, unchanged), threshold (the new one),
                participants (the new committee, in key-index order), version (the new one)
On failure (exit 1): {ok: false, request_id, error: {kind, node, code, message}} (see
`keyrack client keygen --help`).";

/// Long help of `delete`: its JSON output.
pub(super) const DELETE_JSON: &str = "\
With --json, stdout holds one JSON object:
  ok            true
  request_id    the request's id (32 hex), for `keyrack client status`
  key_id        the key id
  schemes       the schemes deleted
  nodes         the nodes that erased their shares and keep a tombstone (every node of the
                manifest)
On failure (exit 1): {ok: false, request_id, error: {kind, node, code, message}} (see
`keyrack client keygen --help`). Without --yes nothing is sent (exit 2).";

/// Long help of `sign`: its JSON output.
pub(super) const SIGN_JSON: &str = "\
With --json, stdout holds one JSON object:
  ok                 true
  request_id         the request's id (32 hex), for `keyrack client status`
  key_id, scheme     as asked
  payload_kind       \"message\", \"digest\", \"transaction\", \"personal_message\" or
                     \"typed_data\"
  path               the derivation path, e.g. \"m/0/1\" (\"m\": the key itself)
  derivation_path    the same as a list of indexes
  public_key         the key that signed (the derived child key with --path), hex
  digest_or_message  exactly what the signature verifies over, hex: the message for
                     ed25519, the 32-byte digest for ecdsa-secp256k1 and schnorr-secp256k1
  signature          64 bytes, hex (ECDSA: r || s, low s)
  r, s, v            ECDSA only (else null): r and s (64 hex each), recovery id v (0 or 1)
  signatures         a chain payload signed in several parts (a PSBT with several inputs of
                     the key): every part, each as above; absent for one part
  signed_payload     a chain payload: the signed output the nodes' chain plugin assembled
                     (EVM raw transaction or r || s || v, the PSBT with the key's inputs
                     finalised, the Solana wire transaction), hex; absent otherwise
  node               the node whose result carried the signature
  verified           true: the client verified the signature itself
A request that waits for approvals prints each node's notice (with the request hash to
approve) on stderr and keeps waiting, up to --timeout.
On failure (exit 1): {ok: false, request_id, error: {kind, node, code, message}} (see
`keyrack client keygen --help`).";

/// Long help of `status`: its JSON output.
pub(super) const STATUS_JSON: &str = "\
Exit status: 0 when every node that answered answered ok (and every signature verified); 1
otherwise, or when no node answered; 2 on a usage or configuration error.

With --json, stdout holds one JSON object.
status --key KEY_ID:
  ok          true when every node that answered answered ok
  request_id  the status request's id
  key_id      the key id
  agree       true when every node that answered ok reports the same keys
  nodes       every node of the manifest, in order: node; answer (\"ok\", \"refused\",
              \"failed\" or \"missing\": no answer in time); code (null unless refused or
              failed); message (why it refused or failed; for an ok answer, what is under
              way on the key at that node, e.g. a reshare's committee setup; null if
              nothing); keys: one object per scheme the node holds under the id
              (none: an unknown key) with scheme, status (\"PENDING\", \"READY\", \"ERROR\",
              \"DELETED\"), public_key and chain_code (hex; \"\" for a key that was never
              READY), threshold, participants, version
status REQUEST_ID:
  ok          true when at least one node answered, every answer is ok and every
              signature verified
  request_id  the request id
  nodes       every node of the manifest, in order: node; status (\"ok\", \"refused\",
              \"failed\", or \"pending\": no result, because the node is still working,
              was not among the signers, or never got the request); code; message;
              results: each result the node published, with status, code, message,
              request_hash (hex of SHA-256 of the request bytes it answers), at_ms, keys
              (as above) and signature (null, or the fields of `sign --json` from scheme
              to v, plus verified and verify_error)
On failure (exit 1): {ok: false, request_id, error: {kind, node, code, message}} (see
`keyrack client keygen --help`).";

#[derive(Serialize)]
struct KeyJson<'a> {
    scheme: Scheme,
    status: Option<&'static str>,
    public_key: String,
    chain_code: String,
    threshold: u16,
    participants: &'a [String],
    version: u32,
}

impl<'a> KeyJson<'a> {
    fn of(k: &'a KeyInfo) -> Self {
        let has_key = !k.public_key.is_empty();
        KeyJson {
            scheme: k.scheme,
            status: k.status.map(|s| s.as_str()),
            public_key: hex::encode(&k.public_key),
            chain_code: if has_key {
                hex::encode(k.chain_code)
            } else {
                String::new()
            },
            threshold: k.threshold,
            participants: &k.participants,
            version: k.version,
        }
    }
}

#[derive(Serialize)]
struct SignatureJson<'a> {
    scheme: Scheme,
    path: String,
    derivation_path: &'a [u32],
    public_key: String,
    digest_or_message: String,
    signature: String,
    r: Option<String>,
    s: Option<String>,
    v: Option<u8>,
}

impl<'a> SignatureJson<'a> {
    fn of(s: &'a SignatureInfo) -> Self {
        SignatureJson {
            scheme: s.scheme,
            path: DerivationPath(s.derivation_path.clone()).to_string(),
            derivation_path: &s.derivation_path,
            public_key: hex::encode(&s.public_key),
            digest_or_message: hex::encode(&s.digest_or_message),
            signature: hex::encode(s.signature),
            r: s.r.map(hex::encode),
            s: s.s.map(hex::encode),
            v: s.v,
        }
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn status_str(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Refused => "refused",
        Status::Failed => "failed",
        Status::Pending => "waiting",
    }
}

/// What produced the keys the nodes agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeysOp {
    /// keygen
    Created,
    /// reshare
    Reshared,
    /// refresh
    Refreshed,
}

impl KeysOp {
    /// The request kind.
    pub(super) fn kind(self) -> &'static str {
        match self {
            KeysOp::Created => "keygen",
            KeysOp::Reshared => "reshare",
            KeysOp::Refreshed => "refresh",
        }
    }
}

/// Keys the nodes agreed on (keygen, reshare, refresh), and the trusted-keys file they were
/// recorded in, if they were.
pub(super) fn agreed_keys(
    op: KeysOp,
    request_id: &str,
    key_id: &str,
    agreed: &AgreedKeys,
    trusted_keys: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            request_id: &'a str,
            key_id: &'a str,
            nodes: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            uninvolved: Option<&'a [String]>,
            keys: Vec<KeyJson<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            trusted_keys: Option<&'a Path>,
        }
        return print_json(&Out {
            ok: true,
            request_id,
            key_id,
            nodes: &agreed.nodes,
            uninvolved: (op != KeysOp::Created).then_some(agreed.uninvolved.as_slice()),
            keys: agreed.keys.iter().map(KeyJson::of).collect(),
            trusted_keys,
        });
    }
    let Some(first) = agreed.keys.first() else {
        anyhow::bail!("internal: a keys outcome without keys");
    };
    let committee = format!(
        "threshold {} of {} ({})",
        first.threshold,
        first.participants.len(),
        first.participants.join(", ")
    );
    match op {
        KeysOp::Created => println!(
            "key {key_id}: {committee}; all {} nodes report the same keys",
            agreed.nodes.len()
        ),
        KeysOp::Reshared | KeysOp::Refreshed => {
            let done = if op == KeysOp::Reshared {
                "reshared"
            } else {
                "refreshed"
            };
            println!(
                "key {key_id} {done}: {committee}, in key-index order; {} nodes report the \
                 same new keys ({})",
                agreed.nodes.len(),
                agreed.nodes.join(", ")
            );
            if !agreed.uninvolved.is_empty() {
                println!(
                    "  not concerned (in neither committee): {}",
                    agreed.uninvolved.join(", ")
                );
            }
        }
    }
    for k in &agreed.keys {
        println!("  {}", k.scheme);
        println!("    public key  {}", hex::encode(&k.public_key));
        println!("    chain code  {}", hex::encode(k.chain_code));
        println!("    version     {}", k.version);
        if k.threshold != first.threshold || k.participants != first.participants {
            println!(
                "    committee   threshold {} of {} ({})",
                k.threshold,
                k.participants.len(),
                k.participants.join(", ")
            );
        }
    }
    if let Some(path) = trusted_keys {
        println!("trusted: recorded in {}", path.display());
    }
    println!("request {request_id}");
    Ok(())
}

/// Keys recorded as trusted from agreeing status answers (`trust`).
pub(super) fn trusted(
    request_id: &str,
    key_id: &str,
    recorded: &[(TrustedKey, Recorded)],
    answered: &[&str],
    missing: &[String],
    path: &Path,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        #[derive(Serialize)]
        struct KeyOut<'a> {
            scheme: Scheme,
            public_key: String,
            chain_code: String,
            threshold: u16,
            participants: &'a [String],
            version: u32,
            recorded: &'static str,
        }
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            request_id: &'a str,
            key_id: &'a str,
            trusted_keys: &'a Path,
            answered: &'a [&'a str],
            missing: &'a [String],
            keys: Vec<KeyOut<'a>>,
        }
        return print_json(&Out {
            ok: true,
            request_id,
            key_id,
            trusted_keys: path,
            answered,
            missing,
            keys: recorded
                .iter()
                .map(|(k, r)| KeyOut {
                    scheme: k.scheme,
                    public_key: hex::encode(&k.public_key),
                    chain_code: hex::encode(k.chain_code),
                    threshold: k.threshold,
                    participants: &k.participants,
                    version: k.version,
                    recorded: r.as_str(),
                })
                .collect(),
        });
    }
    let silent = if missing.is_empty() {
        String::new()
    } else {
        format!("; no answer from {}", missing.join(", "))
    };
    println!(
        "key {key_id}: the signed answers of {} ({}) agree{silent}",
        answered.len(),
        answered.join(", ")
    );
    for (k, r) in recorded {
        println!("  {} ({})", k.scheme, r.as_str());
        println!("    public key  {}", hex::encode(&k.public_key));
        println!("    chain code  {}", hex::encode(k.chain_code));
        println!(
            "    committee   threshold {} of {} ({}), version {}",
            k.threshold,
            k.participants.len(),
            k.participants.join(", "),
            k.version
        );
    }
    println!("trusted: recorded in {}", path.display());
    println!("request {request_id}");
    Ok(())
}

/// Why nothing was recorded as trusted (`trust`): on stderr, or the JSON failure object.
pub(super) fn untrusted(request_id: &str, message: &str, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&serde_json::json!({
            "ok": false,
            "request_id": request_id,
            "error": {"kind": "untrusted", "node": null, "code": null, "message": message},
        }));
    }
    eprintln!("error: {message}");
    eprintln!("request {request_id} (`keyrack client status --key …` shows each node's view)");
    Ok(())
}

/// A key every node deleted.
pub(super) fn deleted(request_id: &str, deleted: &DeletedKey, json: bool) -> anyhow::Result<()> {
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            request_id: &'a str,
            key_id: &'a str,
            schemes: &'a [Scheme],
            nodes: &'a [String],
        }
        return print_json(&Out {
            ok: true,
            request_id,
            key_id: &deleted.key_id,
            schemes: &deleted.schemes,
            nodes: &deleted.nodes,
        });
    }
    let schemes: Vec<&str> = deleted.schemes.iter().map(|s| s.as_str()).collect();
    println!(
        "key {} deleted ({}): all {} nodes erased their shares and keep a tombstone; the key \
         can never sign again",
        deleted.key_id,
        schemes.join(", "),
        deleted.nodes.len()
    );
    println!("request {request_id}");
    Ok(())
}

/// A signature the SDK verified.
pub(super) fn signature(
    request_id: &str,
    key_id: &str,
    kind: PayloadKind,
    path: &DerivationPath,
    signed: &VerifiedSignature,
    json: bool,
) -> anyhow::Result<()> {
    let s = &signed.signature;
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            request_id: &'a str,
            key_id: &'a str,
            payload_kind: PayloadKind,
            #[serde(flatten)]
            signature: SignatureJson<'a>,
            /// Every signature (several for a PSBT with several own inputs).
            #[serde(skip_serializing_if = "Vec::is_empty")]
            signatures: Vec<SignatureJson<'a>>,
            /// The chain plugin's signed output, hex.
            #[serde(skip_serializing_if = "Option::is_none")]
            signed_payload: Option<String>,
            node: &'a str,
            verified: bool,
        }
        return print_json(&Out {
            ok: true,
            request_id,
            key_id,
            payload_kind: kind,
            signature: SignatureJson::of(s),
            signatures: if signed.signatures.len() > 1 {
                signed.signatures.iter().map(SignatureJson::of).collect()
            } else {
                vec![]
            },
            signed_payload: signed.signed_payload.as_ref().map(hex::encode),
            node: &signed.node,
            verified: true,
        });
    }
    println!(
        "signature by key {key_id} ({}, path {path}) from node {}: verified",
        s.scheme, signed.node
    );
    if signed.signatures.len() > 1 {
        for (i, s) in signed.signatures.iter().enumerate() {
            println!("  part {} of {}:", i + 1, signed.signatures.len());
            print_signature_lines(s, "    ");
        }
    } else {
        print_signature_lines(s, "  ");
    }
    if let Some(out) = &signed.signed_payload {
        println!("  signed {}  {}", kind.as_str(), hex::encode(out));
    }
    println!("request {request_id}");
    Ok(())
}

fn print_signature_lines(s: &SignatureInfo, indent: &str) {
    let what = if s.scheme == Scheme::Ed25519 {
        "message   "
    } else {
        "digest    "
    };
    println!("{indent}public key  {}", hex::encode(&s.public_key));
    println!("{indent}{what}  {}", hex::encode(&s.digest_or_message));
    println!("{indent}signature   {}", hex::encode(s.signature));
    if let (Some(r), Some(sv), Some(v)) = (s.r, s.s, s.v) {
        println!("{indent}r           {}", hex::encode(r));
        println!("{indent}s           {}", hex::encode(sv));
        println!("{indent}v           {v}");
    }
}

/// Every node acknowledged an approval, a rejection or a policy activation.
pub(super) fn acknowledged(
    what: &str,
    request_id: &str,
    ack: &keyrack_client::sdk::Acknowledged,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let nodes: Vec<serde_json::Value> = ack
            .answers
            .iter()
            .map(|a| serde_json::json!({"node": a.node, "message": a.message}))
            .collect();
        return print_json(&serde_json::json!({
            "ok": true, "request_id": request_id, "what": what, "nodes": nodes,
        }));
    }
    println!("{what}: accepted by every node");
    for a in &ack.answers {
        println!("  {}: {}", a.node, a.message);
    }
    println!("request {request_id}");
    Ok(())
}

/// Each node's view of a key, nodes in `members` (manifest) order; returns whether every
/// node that answered answered ok.
pub(super) fn key_status(
    request_id: &str,
    key_id: &str,
    report: &KeyStatusReport,
    members: &[String],
    timeout: Duration,
    json: bool,
) -> anyhow::Result<bool> {
    let all_ok = report.nodes.iter().all(|n| n.answer.status == Status::Ok);
    let ok_keys: Vec<&[KeyInfo]> = report
        .nodes
        .iter()
        .filter(|n| n.answer.status == Status::Ok)
        .map(|n| n.keys.as_slice())
        .collect();
    let agree = ok_keys.windows(2).all(|w| same_keys(w[0], w[1]));
    if json {
        #[derive(Serialize)]
        struct NodeJson<'a> {
            node: &'a str,
            answer: &'static str,
            code: Option<String>,
            message: Option<&'a str>,
            keys: Vec<KeyJson<'a>>,
        }
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            request_id: &'a str,
            key_id: &'a str,
            agree: bool,
            nodes: Vec<NodeJson<'a>>,
        }
        let nodes = members
            .iter()
            .map(
                |m| match report.nodes.iter().find(|n| &n.answer.node == m) {
                    Some(n) => NodeJson {
                        node: m,
                        answer: status_str(n.answer.status),
                        code: n.answer.code.map(|c| c.to_string()),
                        // A refusal's reason, or what is under way on the key (a
                        // reshare's committee setup, say).
                        message: (!n.answer.message.is_empty())
                            .then_some(n.answer.message.as_str()),
                        keys: n.keys.iter().map(KeyJson::of).collect(),
                    },
                    None => NodeJson {
                        node: m,
                        answer: "missing",
                        code: None,
                        message: None,
                        keys: vec![],
                    },
                },
            )
            .collect();
        print_json(&Out {
            ok: all_ok,
            request_id,
            key_id,
            agree,
            nodes,
        })?;
        return Ok(all_ok);
    }
    println!(
        "key {key_id}: {} of {} nodes answered",
        report.nodes.len(),
        members.len()
    );
    for node in members {
        let Some(n) = report.nodes.iter().find(|n| &n.answer.node == node) else {
            println!(
                "  {node:<10} missing: no answer within {:.0}s",
                timeout.as_secs_f64()
            );
            continue;
        };
        if n.answer.status != Status::Ok {
            println!(
                "  {node:<10} {}",
                answer_line(n.answer.status, n.answer.code, &n.answer.message)
            );
            continue;
        }
        if n.keys.is_empty() {
            println!("  {node:<10} no key '{key_id}'");
        }
        for k in &n.keys {
            let status = k.status.map_or("?", |s| s.as_str());
            let public = if k.public_key.is_empty() {
                "none yet".to_owned()
            } else {
                hex::encode(&k.public_key)
            };
            println!(
                "  {node:<10} {:<18} {status:<8} version {}  threshold {} of {} ({})  public \
                 key {public}",
                k.scheme.as_str(),
                k.version,
                k.threshold,
                k.participants.len(),
                k.participants.join(", ")
            );
        }
        if !n.answer.message.is_empty() {
            println!("  {node:<10} under way: {}", n.answer.message);
        }
    }
    if ok_keys.len() > 1 && ok_keys.iter().any(|keys| !keys.is_empty()) {
        if agree {
            println!(
                "the {} nodes that answered ok report the same keys",
                ok_keys.len()
            );
        } else {
            println!("the nodes DISAGREE on the keys: see above");
        }
    }
    if !all_ok {
        eprintln!("error: not every node that answered answered ok");
    }
    Ok(all_ok)
}

/// Whether two nodes report the same keys (scheme, status, public key, chain code, version,
/// threshold, committee).
fn same_keys(a: &[KeyInfo], b: &[KeyInfo]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let view = |k: &KeyInfo| {
                (
                    k.scheme,
                    k.status,
                    k.public_key.clone(),
                    k.chain_code,
                    k.version,
                    k.threshold,
                    k.participants.clone(),
                )
            };
            view(x) == view(y)
        })
}

fn answer_line(
    status: Status,
    code: Option<keyrack_client::codes::ErrorCode>,
    message: &str,
) -> String {
    match code {
        Some(code) => format!("{} {code}: {message}", status_str(status)),
        None => status_str(status).to_owned(),
    }
}

/// Each node's results for a request; returns whether at least one node answered and every
/// answer is ok with its signature (if any) verified.
pub(super) fn request_results(results: &RequestResults, json: bool) -> anyhow::Result<bool> {
    let answered = results
        .nodes
        .iter()
        .filter(|n| n.answer().is_some())
        .count();
    let all_ok = answered > 0
        && results.nodes.iter().all(|n| {
            n.results.iter().all(|r| {
                r.body.code == Some(keyrack_client::codes::ErrorCode::Replayed)
                    || (r.body.status == Status::Ok && !matches!(r.signature_check, Some(Err(_))))
            })
        });
    if json {
        request_results_json(results, all_ok)?;
        return Ok(all_ok);
    }
    println!(
        "request {}: {answered} of {} nodes answered",
        results.request_id,
        results.nodes.len()
    );
    for n in &results.nodes {
        print_node_results(n);
    }
    if results.ignored.total() > 0 {
        println!("{}", results.ignored);
    }
    if answered == 0 {
        eprintln!(
            "error: no result for request {} from this client: not sent by this client id, \
             not answered yet, or older than the result stream keeps (one hour)",
            results.request_id
        );
    } else if !all_ok {
        eprintln!("error: not every node's answer is ok");
    }
    Ok(all_ok)
}

fn print_node_results(n: &NodeResults) {
    let node = &n.node;
    if n.results.is_empty() {
        println!(
            "  {node:<10} pending: no result (still working, not among the signers, or never \
             got the request)"
        );
        return;
    }
    let several = n.results.len() > 1;
    for r in &n.results {
        let b = &r.body;
        print!("  {node:<10} {}", answer_line(b.status, b.code, &b.message));
        if several {
            print!("  (about request bytes {})", hex::encode(b.request_hash));
        }
        println!();
        for k in &b.keys {
            println!(
                "    {} public key {}  version {}  threshold {} of {}",
                k.scheme,
                hex::encode(&k.public_key),
                k.version,
                k.threshold,
                k.participants.join(", ")
            );
        }
        if let Some(s) = &b.signature {
            let path = DerivationPath(s.derivation_path.clone());
            match &r.signature_check {
                Some(Ok(())) => println!("    {} signature, path {path}: verified", s.scheme),
                Some(Err(why)) => {
                    println!(
                        "    {} signature, path {path}: DOES NOT VERIFY ({why})",
                        s.scheme
                    )
                }
                None => println!("    {} signature, path {path}", s.scheme),
            }
            print_signature_lines(s, "    ");
        }
    }
}

fn request_results_json(results: &RequestResults, all_ok: bool) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct SignedJson<'a> {
        #[serde(flatten)]
        signature: SignatureJson<'a>,
        verified: bool,
        verify_error: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct ResultJson<'a> {
        status: &'static str,
        code: Option<String>,
        message: &'a str,
        request_hash: String,
        at_ms: u64,
        keys: Vec<KeyJson<'a>>,
        signature: Option<SignedJson<'a>>,
    }
    #[derive(Serialize)]
    struct NodeJson<'a> {
        node: &'a str,
        status: &'static str,
        code: Option<String>,
        message: Option<&'a str>,
        results: Vec<ResultJson<'a>>,
    }
    #[derive(Serialize)]
    struct Out<'a> {
        ok: bool,
        request_id: &'a str,
        nodes: Vec<NodeJson<'a>>,
    }
    let nodes = results
        .nodes
        .iter()
        .map(|n| {
            let answer = n.answer().map(|r| &r.body);
            NodeJson {
                node: &n.node,
                status: answer.map_or("pending", |b| status_str(b.status)),
                code: answer.and_then(|b| b.code).map(|c| c.to_string()),
                message: answer.map(|b| b.message.as_str()),
                results: n
                    .results
                    .iter()
                    .map(|r| ResultJson {
                        status: status_str(r.body.status),
                        code: r.body.code.map(|c| c.to_string()),
                        message: &r.body.message,
                        request_hash: hex::encode(r.body.request_hash),
                        at_ms: r.body.at_ms,
                        keys: r.body.keys.iter().map(KeyJson::of).collect(),
                        signature: r.body.signature.as_ref().map(|s| SignedJson {
                            signature: SignatureJson::of(s),
                            verified: matches!(r.signature_check, Some(Ok(()))),
                            verify_error: match &r.signature_check {
                                Some(Err(why)) => Some(why.as_str()),
                                _ => None,
                            },
                        }),
                    })
                    .collect(),
            }
        })
        .collect();
    print_json(&Out {
        ok: all_ok,
        request_id: &results.request_id,
        nodes,
    })
}

/// An SDK error after the request was sent (or while connecting): its kind, node, code and
/// message, on stderr, or as the JSON failure object on stdout.
pub(super) fn failure(e: &SdkError, request_id: Option<&str>, json: bool) -> anyhow::Result<()> {
    let (kind, node, code, message) = match e {
        SdkError::Refused {
            node,
            code,
            message,
        } => ("refused", Some(node.as_str()), Some(*code), message.clone()),
        SdkError::Failed {
            node,
            code,
            message,
        } => ("failed", Some(node.as_str()), Some(*code), message.clone()),
        SdkError::InvalidResult { node, .. } => {
            ("invalid_result", Some(node.as_str()), None, e.to_string())
        }
        SdkError::BadSignature { node, .. } => {
            ("bad_signature", Some(node.as_str()), None, e.to_string())
        }
        SdkError::Disagreement { .. } => ("disagreement", None, None, e.to_string()),
        SdkError::NoKeys { .. } => ("no_keys", None, None, e.to_string()),
        SdkError::Timeout { .. } => ("timeout", None, None, e.to_string()),
        SdkError::StreamsMissing { .. } => ("streams_missing", None, None, e.to_string()),
        _ => ("transport", None, None, e.to_string()),
    };
    if json {
        #[derive(Serialize)]
        struct ErrorJson<'a> {
            kind: &'a str,
            node: Option<&'a str>,
            code: Option<String>,
            message: &'a str,
        }
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            request_id: Option<&'a str>,
            error: ErrorJson<'a>,
        }
        return print_json(&Out {
            ok: false,
            request_id,
            error: ErrorJson {
                kind,
                node,
                code: code.map(|c| c.to_string()),
                message: &message,
            },
        });
    }
    eprintln!("error: {e}");
    if let SdkError::Timeout { answered, .. } = e {
        if answered
            .iter()
            .any(|a| a.code == Some(ErrorCode::TimeLocked))
        {
            eprintln!(
                "the request is approved and time-locked at the nodes above: they carry it out \
                 when its delay has passed, unless an approver vetoes it (`keyrack client \
                 reject REQUEST_HASH`); this command need not wait for that"
            );
        }
    }
    if let Some(id) = request_id {
        eprintln!("request {id} (`keyrack client status {id}` shows each node's result)");
    }
    Ok(())
}
