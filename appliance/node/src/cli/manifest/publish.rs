//! `keyrack manifest publish`: hands a signed manifest to the running nodes over NATS (the
//! cluster's manifest stream) and reports each node's signed verdict. The nodes decide
//! (docs/PROTOCOL.md §2); this only publishes, verifies their verdicts and reports.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use keyrack_client::identity::PublicIdentity;
use keyrack_client::manifest::SignedManifest;
use keyrack_client::subjects;
use keyrack_client::verdict::{SignedVerdict, VerdictBody};
use serde::Serialize;

use crate::transport::{Bus, MAX_MANIFEST_BYTES};

/// One node's answer, as reported.
#[derive(Serialize)]
struct NodeAnswer {
    node_id: String,
    /// Whether the published manifest lists the node.
    listed: bool,
    /// `accepted`, `refused` or `silent`.
    verdict: &'static str,
    /// The node's reason (absent when silent).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The node's manifest version after judging (absent when silent).
    #[serde(skip_serializing_if = "Option::is_none")]
    current_version: Option<u64>,
}

/// What `keyrack manifest publish` reports.
#[derive(Serialize)]
struct PublishReport {
    cluster_id: String,
    version: u64,
    hash: String,
    /// JetStream dropped this copy: the same file was published within its dedup window.
    duplicate: bool,
    nodes: Vec<NodeAnswer>,
    /// Every node the manifest lists accepted it.
    all_accepted: bool,
}

/// Publishes `path` and collects verdicts for up to `timeout`.
pub(super) fn run(
    path: &Path,
    nats: &[String],
    current: Option<&Path>,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--manifest: cannot read {}", path.display()))?;
    if text.len() > MAX_MANIFEST_BYTES {
        bail!(
            "--manifest {} is {} bytes; the manifest stream takes at most {MAX_MANIFEST_BYTES}",
            path.display(),
            text.len()
        );
    }
    let signed = SignedManifest::from_toml(&text)
        .with_context(|| format!("--manifest {}", path.display()))?;
    let current = current
        .map(|c| super::load_manifest(c).with_context(|| format!("--current {}", c.display())))
        .transpose()?;
    let cluster = signed.manifest.cluster_id.clone();
    if let Some(c) = &current {
        if c.manifest.cluster_id != cluster {
            bail!(
                "--current is a manifest of cluster '{}', --manifest of '{cluster}'",
                c.manifest.cluster_id
            );
        }
    }
    // Who may answer: the nodes of the published manifest, then those only the current one
    // lists (a node being removed still judges the manifest that removes it).
    let mut keys: BTreeMap<String, (PublicIdentity, bool)> = BTreeMap::new();
    for n in &signed.manifest.nodes {
        keys.insert(n.node_id().to_owned(), (n.clone(), true));
    }
    for n in current.iter().flat_map(|c| &c.manifest.nodes) {
        keys.entry(n.node_id().to_owned())
            .or_insert_with(|| (n.clone(), false));
    }
    let hash = signed.hash();
    let message_hash: [u8; 32] = {
        use sha2::Digest as _;
        sha2::Sha256::digest(text.as_bytes()).into()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (duplicate, verdicts) = runtime.block_on(async {
        let setup = async {
            let bus = Bus::connect(nats, "keyrack-manifest-publish", &cluster).await?;
            // Subscribed before publishing: verdicts are core NATS, not kept for latecomers.
            let inbox = bus
                .subscribe(subjects::manifest_verdict_filter(&cluster)?)
                .await?;
            bus.ensure_manifest_stream().await?;
            let duplicate = bus.publish_manifest(text.into_bytes()).await?;
            anyhow::Ok((duplicate, inbox))
        };
        let (duplicate, mut inbox) = tokio::time::timeout(timeout, setup)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "--nats {}: could not publish within {timeout:?} (is NATS with JetStream running there?)",
                    nats.join(",")
                )
            })??;
        let mut verdicts: BTreeMap<String, VerdictBody> = BTreeMap::new();
        if duplicate {
            return anyhow::Ok((true, verdicts));
        }
        let listed_answered = |v: &BTreeMap<String, VerdictBody>| {
            keys.iter()
                .filter(|(_, (_, listed))| *listed)
                .all(|(id, _)| v.contains_key(id))
        };
        let deadline = tokio::time::Instant::now() + timeout;
        while !(listed_answered(&verdicts) && verdicts.len() == keys.len()) {
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, inbox.next()).await else {
                break;
            };
            let Ok(received) = SignedVerdict::parse(&message.payload) else {
                continue;
            };
            let Some((identity, _)) = keys.get(received.node_id()) else {
                continue;
            };
            match received.verify(identity) {
                Ok(body) if body.message_hash == message_hash && body.cluster_id == cluster => {
                    verdicts.entry(body.node_id.clone()).or_insert(body);
                }
                Ok(_) => {} // about another manifest
                Err(e) => eprintln!("warning: a verdict on {} does not verify: {e}", message.subject),
            }
        }
        anyhow::Ok((false, verdicts))
    })?;
    let nodes: Vec<NodeAnswer> = keys
        .iter()
        .map(|(id, (_, listed))| match verdicts.get(id) {
            Some(v) => NodeAnswer {
                node_id: id.clone(),
                listed: *listed,
                verdict: if v.accepted { "accepted" } else { "refused" },
                reason: Some(v.reason.clone()),
                current_version: Some(v.current_version),
            },
            None => NodeAnswer {
                node_id: id.clone(),
                listed: *listed,
                verdict: "silent",
                reason: None,
                current_version: None,
            },
        })
        .filter(|a| a.listed || a.verdict != "silent")
        .collect();
    let all_accepted = !duplicate
        && nodes
            .iter()
            .filter(|a| a.listed)
            .all(|a| a.verdict == "accepted");
    let report = PublishReport {
        cluster_id: cluster,
        version: signed.manifest.version,
        hash: hex::encode(hash),
        duplicate,
        nodes,
        all_accepted,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report, path, timeout);
    }
    Ok(if report.all_accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print(report: &PublishReport, path: &Path, timeout: Duration) {
    println!(
        "published {} (cluster '{}' version {}, hash {})",
        path.display(),
        report.cluster_id,
        report.version,
        report.hash
    );
    if report.duplicate {
        println!(
            "  JetStream dropped it as a duplicate: the same manifest was published within the last few minutes and the nodes judged that copy; publish again later to ask them again"
        );
        return;
    }
    let w = report
        .nodes
        .iter()
        .map(|n| n.node_id.len())
        .max()
        .unwrap_or(0);
    for n in &report.nodes {
        let at = n
            .current_version
            .map(|v| format!(" (node at version {v})"))
            .unwrap_or_default();
        let not_listed = if n.listed {
            ""
        } else {
            " [not in this manifest]"
        };
        let line = match (n.verdict, &n.reason) {
            ("silent", _) => format!("silent: no verdict within {timeout:?}"),
            (verdict, Some(reason)) => format!("{verdict}: {reason}{at}"),
            (verdict, None) => format!("{verdict}{at}"),
        };
        println!("  {:w$}  {line}{not_listed}", n.node_id);
    }
    let listed = report.nodes.iter().filter(|n| n.listed).count();
    let accepted = report
        .nodes
        .iter()
        .filter(|n| n.listed && n.verdict == "accepted")
        .count();
    println!(
        "{accepted} of {listed} node(s) of version {} accepted it{}",
        report.version,
        if report.all_accepted {
            ""
        } else {
            ": NOT ACCEPTED BY ALL"
        }
    );
}
