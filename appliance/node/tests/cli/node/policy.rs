//! Policy on a cluster of node processes (SoftHSM, real nats-server): every node decides
//! for itself. An over-limit transfer under policies/examples/treasury.toml waits for
//! approvals and is refused by every node, naming the rule, when none come; with two
//! approvals of the treasury group it is signed; a treasury approver's rejection refuses it
//! at every node (an outsider's is ignored). Bundles need a majority of the policy
//! administrators; a tampered bundle file stops a node at start.

use std::path::Path;
use std::process::Command;

use keyrack_client::codes::ErrorCode;
use keyrack_client::request::{InitiatorKey, PayloadKind};
use keyrack_client::sdk::NodeAnswer;
use solana_message::{Address, Hash, Message};
use solana_system_interface::instruction as system;

use super::super::cluster::{NodeFiles, CLUSTER, OFFICER};
use super::super::{keyrack, KEYRACK};
use super::*;

/// The example policy the approval test runs.
const TREASURY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../policies/examples/treasury.toml"
);
/// An address in treasury.toml's `exchanges` book.
const EXCHANGE: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
/// treasury.toml's wallet admin (role `wallet-admin`): creates, moves and deletes keys.
pub(super) const WENDY: &str = "wendy";
/// A key id treasury.toml tags `hot`.
const HOT: &str = "hot-1";
pub(super) const SOL: u64 = 1_000_000_000;

/// A Solana message paying `lamports` from `from` (the fee payer) to [`EXCHANGE`]; `nonce`
/// makes each message distinct (the recent blockhash).
pub(super) fn transfer(from: &[u8], lamports: u64, nonce: u8) -> Vec<u8> {
    let from = Address::new_from_array(from.try_into().unwrap());
    let to: Address = EXCHANGE.parse().unwrap();
    Message::new_with_blockhash(
        &[system::transfer(&from, &to, lamports)],
        Some(&from),
        &Hash::new_from_array([nonce; 32]),
    )
    .serialize()
}

/// Checks a signed Solana transfer: the signature (ed25519-dalek, strict) over exactly the
/// message sent, under the key, and the wire transaction verified by Solana's own library.
pub(super) fn check_solana(signed: &VerifiedSignature, key: &[u8], message: &[u8]) {
    assert_eq!(signed.signature.digest_or_message, message);
    check_signature(&signed.signature, Scheme::Ed25519, key, message);
    let wire = signed
        .signed_payload
        .as_ref()
        .expect("a signed transaction");
    let tx: solana_transaction::versioned::VersionedTransaction =
        wincode::deserialize(wire).expect("the wire transaction parses");
    tx.verify_and_hash_message()
        .expect("Solana verifies the transaction's signatures");
    assert_eq!(tx.signatures[0].as_ref(), &signed.signature.signature[..]);
}

/// Three node processes under treasury.toml with the trader `tom`, the wallet admin
/// [`WENDY`] and the initiators `others` (no role; treasury.toml's approvers are alice, bob
/// and carol), and the Ed25519 key [`HOT`], created by wendy (treasury.toml lets wallet
/// admins create keys). Returns the key's public key.
pub(super) async fn treasury_cluster(others: &[&str]) -> (Cluster, Vec<u8>) {
    let mut builder = Cluster::builder(3)
        .policy(Path::new(TREASURY))
        .initiator("tom", "trader")
        .initiator(WENDY, "wallet-admin");
    for who in others {
        builder = builder.initiator(who, "");
    }
    let cluster = builder.start();
    let agreed = cluster
        .client_as(WENDY, WENDY)
        .await
        .keygen(HOT, &[Scheme::Ed25519], 2, WAIT)
        .await
        .expect("keygen");
    let key = agreed.keys[0].public_key.clone();
    (cluster, key)
}

/// The SDK error's code (a refusal or failure).
fn code_of(e: &SdkError) -> Option<ErrorCode> {
    match e {
        SdkError::Refused { code, .. } | SdkError::Failed { code, .. } => Some(*code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn softhsm_an_over_limit_transfer_is_refused_without_approvals_and_signed_with_two() {
    let (cluster, key) = treasury_cluster(&["bob", "carol"]).await;
    let admin = cluster.client("app").await;
    let tom = cluster.client_as("tom", "tom").await;
    let mut results = cluster.results("tom").await;

    // The key's Solana address, as `keyrack client address` shows it: the base58 of the
    // public key (as Solana's own library writes it).
    let work = tempfile::tempdir().unwrap();
    let config = client_config(&cluster, work.path(), "tom");
    let out = keyrack(&[
        "client",
        "address",
        HOT,
        "--scheme",
        "ed25519",
        "--config",
        config.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let solana_address = Address::new_from_array(key.as_slice().try_into().unwrap()).to_string();
    assert_eq!(
        shown["addresses"]["solana"][0],
        solana_address.as_str(),
        "{shown}"
    );
    let sign = |client: &Client, lamports: u64, nonce: u8, lifetime: Duration| {
        client.sign_chain_body(
            HOT,
            Scheme::Ed25519,
            "solana",
            &transfer(&key, lamports, nonce),
            PayloadKind::Transaction,
            &[],
            lifetime,
        )
    };

    // Pays `lamports` as tom (a trader), expecting it signed at once.
    let pay = |lamports: u64, nonce: u8, why: &'static str| {
        let (tom, key) = (&tom, &key);
        async move {
            let message = transfer(key, lamports, nonce);
            let signed = tom
                .sign_chain(
                    HOT,
                    Scheme::Ed25519,
                    "solana",
                    &message,
                    PayloadKind::Transaction,
                    &[],
                    WAIT,
                )
                .await
                .expect(why);
            check_solana(&signed, key, &message);
        }
    };

    // 6 SOL of the key's 10 SOL a day: signed, no approval needed.
    pay(6 * SOL, 1, "a transfer within the limit is signed").await;

    // Alice is no trader: no rule allows her (default deny), at every node.
    let body = sign(&admin, SOL, 2, WAIT);
    let denied_id = body.request_id.clone();
    let e = admin.request(body, WAIT).await.unwrap_err();
    assert_eq!(code_of(&e), Some(ErrorCode::PolicyDenied), "{e}");
    let mut alice_results = cluster.results("app").await;
    let denied = alice_results
        .until(WAIT, "three refusals of alice's transfer", |r| {
            r.iter().filter(|r| r.request_id == denied_id).count() == 3
        })
        .await;
    for r in denied.iter().filter(|r| r.request_id == denied_id) {
        assert_eq!(r.code, Some(ErrorCode::PolicyDenied), "{}", describe([r]));
        assert!(r.message.contains("default deny"), "{}", r.message);
    }

    // 6 SOL more would make 12: the over-limit rule needs 2 treasury approvals. Nobody
    // approves: every node said it waits, then refuses when the request expires, naming
    // the rule.
    let body = sign(&tom, 6 * SOL, 3, Duration::from_secs(6));
    let refused_id = body.request_id.clone();
    let e = tom
        .request(body, Duration::from_secs(20))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(ErrorCode::ApprovalsRequired), "{e}");
    let answers = results
        .until(WAIT, "three final refusals", |r| {
            r.iter()
                .filter(|r| r.request_id == refused_id && r.status == Status::Refused)
                .count()
                == 3
        })
        .await;
    let of_request: Vec<&ResultBody> = answers
        .iter()
        .filter(|r| r.request_id == refused_id)
        .collect();
    for node in cluster.node_ids() {
        let mine: Vec<&&ResultBody> = of_request.iter().filter(|r| r.node_id == node).collect();
        assert!(
            mine.iter().any(|r| r.status == Status::Pending),
            "{node} said it waits for approvals: {}",
            describe(of_request.iter().copied())
        );
        let last = mine
            .iter()
            .find(|r| r.status == Status::Refused)
            .expect("a final refusal");
        assert_eq!(last.code, Some(ErrorCode::ApprovalsRequired));
        assert!(
            last.message.contains("solana-over-daily-limit"),
            "{node} names the rule: {}",
            last.message
        );
    }

    // The refused request reserved nothing: 3 SOL more (9 in all) still fits.
    pay(3 * SOL, 4, "9 SOL in a day is within the limit").await;

    // The same over-limit transfer again, with time for approvals: every node says it waits,
    // giving the request hash; bob's approval is one of two; carol's makes two: signed.
    let body = sign(&tom, 6 * SOL, 5, Duration::from_secs(120));
    let message = body.payload.clone().unwrap();
    let approved_id = body.request_id.clone();
    let hash = InitiatorKey::load("tom", &cluster.key_path("tom"))
        .unwrap()
        .sign_request(&body)
        .unwrap()
        .hash();
    let pending = tom.submit(body).await.expect("submitted");
    let (notices_tx, mut notices) = tokio::sync::mpsc::unbounded_channel::<NodeAnswer>();
    let waiter = tokio::spawn(async move {
        pending
            .wait_with_notices(Duration::from_secs(120), move |a| {
                let _ = notices_tx.send(a.clone());
            })
            .await
    });
    let mut waiting = BTreeSet::new();
    while waiting.len() < 3 {
        let notice = tokio::time::timeout(WAIT, notices.recv())
            .await
            .expect("every node says the request waits")
            .expect("a notice");
        assert_eq!(notice.status, Status::Pending);
        assert!(
            notice.message.contains("solana-over-daily-limit")
                && notice.message.contains(&hex::encode(hash)),
            "{}",
            notice.message
        );
        waiting.insert(notice.node);
    }
    let bob = cluster.client_as("bob", "bob").await;
    let ack = bob
        .approve(hash, Duration::from_secs(300), WAIT)
        .await
        .expect("every node records bob's approval");
    assert_eq!(ack.answers.len(), 3);
    assert!(!waiter.is_finished(), "one approval of two signs nothing");
    let carol = cluster.client_as("carol", "carol").await;
    let approved_at = keyrack_client::now_ms();
    carol
        .approve(hash, Duration::from_secs(300), WAIT)
        .await
        .expect("every node records carol's approval");
    let signed = match waiter.await.unwrap().expect("signed with two approvals") {
        Outcome::Signature(s) => s,
        other => panic!("a sign outcome, not {other:?}"),
    };
    check_solana(&signed, &key, &message);
    for r in results.until_ok(&approved_id, 2).await {
        assert!(
            r.status != Status::Ok || r.at_ms >= approved_at,
            "{} signed before the second approval",
            r.node_id
        );
    }

    // Every node's audit log verifies, and holds the decisions with the rule named.
    for (node, entries) in verified_audit_logs(&cluster) {
        let text = serde_json::Value::Array(entries).to_string();
        assert!(text.contains("solana-over-daily-limit"), "{node}");
    }
}

/// Whether `node`'s store lists `request_id` as waiting for approvals (read beside the
/// running node).
pub(super) fn queued_for_approvals(node: &NodeFiles, request_id: &str) -> bool {
    keyrack_node::store::Store::open_read_only(&node.store, &node.id)
        .unwrap()
        .parked(request_id)
        .unwrap()
        .is_some()
}

/// Every node's audit log, checked with `keyrack audit verify`, then its entries as
/// `keyrack audit show --json` prints them: (node id, entries), in node order.
pub(super) fn verified_audit_logs(cluster: &Cluster) -> Vec<(String, Vec<serde_json::Value>)> {
    let mut logs = Vec::new();
    for node in cluster.nodes() {
        let out = Command::new(KEYRACK)
            .args(["audit", "verify", "--config"])
            .arg(&node.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            node.id,
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = keyrack(&[
            "audit",
            "show",
            "--config",
            node.config.to_str().unwrap(),
            "--limit",
            "1000000",
            "--json",
        ]);
        logs.push((
            node.id.clone(),
            serde_json::from_slice(&shown.stdout).unwrap(),
        ));
    }
    logs
}

#[tokio::test(flavor = "multi_thread")]
async fn softhsm_a_waiting_transfer_rejected_by_a_treasury_approver_is_refused_everywhere() {
    // ann is no treasury approver: her rejection is ignored. Her id sorts before bob's, so a
    // node that counted it would name her, not bob, whenever it re-evaluated.
    let (cluster, key) = treasury_cluster(&["bob", "ann"]).await;
    let tom = cluster.client_as("tom", "tom").await;
    let mut results = cluster.results("tom").await;

    // 11 SOL is over the key's 10 SOL a day: it waits for 2 treasury approvals.
    let body = tom.sign_chain_body(
        HOT,
        Scheme::Ed25519,
        "solana",
        &transfer(&key, 11 * SOL, 1),
        PayloadKind::Transaction,
        &[],
        Duration::from_secs(120),
    );
    let request_id = body.request_id.clone();
    let hash = InitiatorKey::load("tom", &cluster.key_path("tom"))
        .unwrap()
        .sign_request(&body)
        .unwrap()
        .hash();
    let pending = tom.submit(body).await.expect("submitted");
    let waiter = tokio::spawn(async move {
        pending
            .wait_with_notices(Duration::from_secs(120), |_| {})
            .await
    });
    results
        .until(WAIT, "every node says the transfer waits", |r| {
            r.iter()
                .filter(|r| r.request_id == request_id && r.status == Status::Pending)
                .count()
                == 3
        })
        .await;

    // ann's rejection is recorded by every node, and ignored: the request still waits at
    // every node (still on its approval queue) and nobody refused it.
    let ann = cluster.client_as("ann", "ann").await;
    let ack = ann
        .reject(hash, Duration::from_secs(300), WAIT)
        .await
        .expect("every node records ann's rejection");
    assert_eq!(ack.answers.len(), 3);
    for a in &ack.answers {
        assert!(
            a.message.contains("rejection by 'ann'") && a.message.contains(&hex::encode(hash)),
            "{}",
            a.message
        );
    }
    for node in cluster.nodes() {
        assert!(
            queued_for_approvals(node, &request_id),
            "{} still waits for approvals after ann's rejection",
            node.id
        );
    }
    assert!(!waiter.is_finished(), "ann's rejection refuses nothing");
    assert!(
        results
            .of(&request_id)
            .iter()
            .all(|r| r.status == Status::Pending),
        "{}",
        describe(results.of(&request_id))
    );

    // bob, a treasury approver, rejects it with the CLI: every node refuses it at once.
    let work = tempfile::tempdir().unwrap();
    let config = client_config(&cluster, work.path(), "bob");
    let out = keyrack(&[
        "client",
        "reject",
        &hex::encode(hash),
        "--valid-for",
        "300",
        "--config",
        config.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["what"], "rejection", "{shown}");
    assert_eq!(shown["nodes"].as_array().map(Vec::len), Some(3), "{shown}");

    let e = waiter
        .await
        .unwrap()
        .expect_err("a rejected request is not signed");
    assert_eq!(code_of(&e), Some(ErrorCode::ApprovalRejected), "{e}");
    let answers = results
        .until(WAIT, "three refusals of the rejected transfer", |r| {
            r.iter()
                .filter(|r| r.request_id == request_id && r.status == Status::Refused)
                .count()
                == 3
        })
        .await;
    for r in answers
        .iter()
        .filter(|r| r.request_id == request_id && r.status != Status::Pending)
    {
        assert_eq!(r.status, Status::Refused, "{}", describe([r]));
        assert_eq!(
            r.code,
            Some(ErrorCode::ApprovalRejected),
            "{}",
            describe([r])
        );
        assert!(
            r.message.contains("'bob'")
                && r.message.contains("'treasury'")
                && r.message.contains("solana-over-daily-limit"),
            "{} names the approver, group and rule: {}",
            r.node_id,
            r.message
        );
    }
    for node in cluster.nodes() {
        assert!(
            !queued_for_approvals(node, &request_id),
            "{} took the refused request off its approval queue",
            node.id
        );
    }

    // Every node's audit log verifies and holds both rejections and the decision.
    for (node, entries) in verified_audit_logs(&cluster) {
        let rejections: BTreeSet<&str> = entries
            .iter()
            .filter(|e| e["kind"] == "approval" && e["entry"]["verdict"] == "reject")
            .inspect(|e| assert_eq!(e["entry"]["rejects"], hex::encode(hash), "{e}"))
            .filter_map(|e| e["entry"]["approver"].as_str())
            .collect();
        assert_eq!(rejections, BTreeSet::from(["ann", "bob"]), "{node}");
        // Its decisions, in order: it waited, then bob's rejection refused it.
        let decisions: Vec<&serde_json::Value> = entries
            .iter()
            .filter(|e| e["kind"] == "decision" && e["request_id"] == request_id.as_str())
            .map(|e| &e["entry"]["outcome"])
            .collect();
        assert_eq!(
            decisions,
            [
                "waiting for approvals",
                "rejected by 'bob' of approver group 'treasury' (rule 'solana-over-daily-limit')"
            ],
            "{node}"
        );
    }
}

/// Writes a `client.toml` for the manifest initiator `id` of `cluster` into `dir`.
pub(super) fn client_config(cluster: &Cluster, dir: &Path, id: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{id}.client.toml"));
    std::fs::write(
        &path,
        format!(
            "cluster = \"{CLUSTER}\"\nclient_id = \"{id}\"\nnats = [\"{}\"]\nmanifest = {:?}\n\
             initiator = \"{id}\"\ninitiator_key = {:?}\n",
            cluster.nats_url(),
            cluster.manifest_path().to_str().unwrap(),
            cluster.key_path(id).to_str().unwrap(),
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn softhsm_bundles_need_a_majority_of_policy_admins_and_a_tampered_file_stops_a_node() {
    let mut cluster = Cluster::builder(3)
        .initiator("officer2", "policy-admin")
        .start();
    let work = tempfile::tempdir().unwrap();
    let w = |name: &str| work.path().join(name);
    let app = cluster.client("app").await;
    keygen(&cluster, &app, &[Scheme::Ed25519]).await;
    let sign_message = |text: &'static [u8]| {
        let app = &app;
        async move {
            app.sign(
                WALLET,
                Scheme::Ed25519,
                text,
                PayloadKind::Message,
                &[],
                WAIT,
            )
            .await
        }
    };
    sign_message(b"under version 1")
        .await
        .expect("the development policy signs plain messages");

    // Version 2 allows EVM transactions only: plain messages fall to the default deny.
    std::fs::write(
        w("v2.toml"),
        "format = 1\n[[rules]]\nid = \"evm-only\"\neffect = \"allow\"\nchains = [\"evm\"]\n",
    )
    .unwrap();
    let v1 = cluster.policy_bundle_path().to_owned();
    let v2 = w("v2.bundle.toml");
    let sign_v2 = |admin: &str, create: bool| {
        let key = cluster.key_path(admin);
        let mut args = vec![
            "policy",
            "sign",
            "--key",
            key.to_str().unwrap(),
            "--admin",
            admin,
        ];
        let (v1, v2, policy) = (
            v1.to_str().unwrap().to_owned(),
            v2.to_str().unwrap().to_owned(),
            w("v2.toml").to_str().unwrap().to_owned(),
        );
        let owned: Vec<String> = if create {
            vec![
                "--policy".into(),
                policy,
                "--cluster".into(),
                CLUSTER.into(),
                "--version".into(),
                "2".into(),
                "--previous-bundle".into(),
                v1,
                "--threshold".into(),
                "2".into(),
                "--out".into(),
                v2,
            ]
        } else {
            vec!["--bundle".into(), v2]
        };
        args.extend(owned.iter().map(String::as_str));
        let out = keyrack(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let officer = client_config(&cluster, work.path(), OFFICER);
    let activate = |bundle: &Path| {
        keyrack(&[
            "policy",
            "activate",
            bundle.to_str().unwrap(),
            "--config",
            officer.to_str().unwrap(),
            "--json",
        ])
    };

    // Only a policy admin may carry a bundle: alice (no role) is refused, before any check of
    // the bundle itself.
    sign_v2(OFFICER, true);
    let alice = client_config(&cluster, work.path(), "alice");
    let out = keyrack(&[
        "policy",
        "activate",
        v2.to_str().unwrap(),
        "--config",
        alice.to_str().unwrap(),
        "--json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("not_authorized") && text.contains("policy-admin"),
        "{text}"
    );

    // Signed by one of the two policy admins: every node refuses it; version 1 stays.
    let out = activate(&v2);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("policy_bundle_refused"), "{text}");
    assert!(
        text.contains("1 distinct policy admin(s), 2 required"),
        "names the missing signature: {text}"
    );
    let refused: serde_json::Value = serde_json::from_str(&text).unwrap();
    let refused_id = refused["request_id"].as_str().unwrap().to_owned();
    let mut officer_results = cluster.results(OFFICER).await;
    let answers = officer_results
        .until(
            WAIT,
            "every node's refusal of the under-signed bundle",
            |r| r.iter().filter(|r| r.request_id == refused_id).count() == 3,
        )
        .await;
    for r in answers {
        assert_eq!(
            r.code,
            Some(ErrorCode::PolicyBundleRefused),
            "{}",
            describe([r])
        );
    }
    sign_message(b"still version 1")
        .await
        .expect("version 1 is still active");

    // The second admin signs too: activated at every node; plain messages are now denied.
    sign_v2("officer2", false);
    let out = activate(&v2);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    for node in cluster.node_ids() {
        assert!(text.contains(&node), "{node} acknowledged: {text}");
    }
    let e = sign_message(b"under version 2").await.unwrap_err();
    assert_eq!(code_of(&e), Some(ErrorCode::PolicyDenied), "{e}");

    // Version 1 again is older: refused everywhere, version 2 stays.
    let out = activate(&v1);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("policy_bundle_refused"));

    // A tampered bundle file (the one every node's config names): node0 refuses to start on
    // it, naming the file; with the file restored it starts, still on version 2.
    cluster.stop_node(0);
    let original = std::fs::read_to_string(&v1).unwrap();
    let tampered = original.replacen("effect = \\\"allow\\\"", "effect = \\\"allow\\\" ", 1);
    let tampered = if tampered == original {
        original.replacen("allow-everything-unsafe", "allow-everything-unsafe2", 1)
    } else {
        tampered
    };
    assert_ne!(tampered, original, "the bundle file was changed");
    std::fs::write(&v1, &tampered).unwrap();
    cluster.spawn_node(0);
    let (status, log) = cluster.wait_exit(0, Duration::from_secs(30));
    assert!(!status.success(), "node0 refused to start: {log}");
    assert!(
        log.contains("refusing to load it") && log.contains(v1.to_str().unwrap()),
        "{log}"
    );
    std::fs::write(&v1, &original).unwrap();
    cluster.start_node(0);
    let e = sign_message(b"after the restart").await.unwrap_err();
    assert_eq!(code_of(&e), Some(ErrorCode::PolicyDenied), "{e}");
}
