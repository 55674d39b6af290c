//! `keyrack manifest create|next|sign|show`, on nodes made by `keyrack init --backend soft`
//! and admin keys made by `keyrack keys generate`.

use super::keys::generate;
use super::*;

/// Three soft nodes, admins alice/bob/carol (2 of 3) and an initiator, all in one directory.
struct Cluster {
    dir: tempfile::TempDir,
    _target: Target,
    _parents: Vec<tempfile::TempDir>,
    nodes: Vec<PathBuf>,
    /// (key file, public key file, public key hex) per admin: alice, bob, carol.
    admins: Vec<(PathBuf, PathBuf, String)>,
    initiator: (PathBuf, PathBuf, String),
}

const ADMINS: [&str; 3] = ["alice", "bob", "carol"];

fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let target = target("soft");
    let (parents, nodes) = (0..3)
        .map(|i| init_node(&target, &format!("node{i}")))
        .unzip();
    let admins = ADMINS.iter().map(|a| generate(dir.path(), a)).collect();
    let initiator = generate(dir.path(), "backend");
    Cluster {
        dir,
        _target: target,
        _parents: parents,
        nodes,
        admins,
        initiator,
    }
}

impl Cluster {
    fn file(&self, name: &str) -> String {
        path(&self.dir.path().join(name))
    }

    /// `manifest create` of the 2-of-3 cluster with the nodes in the order given.
    fn create(&self, out: &str, node_order: &[usize]) -> Output {
        let mut args: Vec<String> = ["manifest", "create", "--cluster", "prod", "--out", out]
            .map(String::from)
            .into();
        for &i in node_order {
            args.extend([
                "--node".into(),
                path(&self.nodes[i].join("identity.pub.toml")),
            ]);
        }
        args.extend([
            "--initiator".into(),
            format!("backend={}:keygen,sign", path(&self.initiator.1)),
        ]);
        for (id, (_, public, hex)) in ADMINS.iter().zip(&self.admins) {
            // Both spellings of a public key: its file, and its hex.
            let key = if *id == "carol" {
                hex.clone()
            } else {
                path(public)
            };
            args.extend(["--admin".into(), format!("{id}={key}")]);
        }
        args.extend(["--admin-threshold".into(), "2".into()]);
        keyrack(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `manifest sign` as admin `as_admin` with admin `key_of`'s key file.
    fn sign(&self, manifest: &str, key_of: usize, as_admin: &str, current: Option<&str>) -> Output {
        let key = path(&self.admins[key_of].0);
        let mut args = vec![
            "manifest",
            "sign",
            "--manifest",
            manifest,
            "--key",
            &key,
            "--admin",
            as_admin,
        ];
        if let Some(c) = current {
            args.extend(["--current", c]);
        }
        keyrack(&args)
    }
}

fn show(manifest: &str, current: Option<&str>) -> Output {
    let mut args = vec!["manifest", "show", "--manifest", manifest];
    if let Some(c) = current {
        args.extend(["--current", c]);
    }
    keyrack(&args)
}

fn show_json(manifest: &str, current: Option<&str>) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["manifest", "show", "--manifest", manifest, "--json"];
    if let Some(c) = current {
        args.extend(["--current", c]);
    }
    let out = keyrack(&args);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    (out.status.code(), report)
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "expected success:\n{}{}",
        stdout(out),
        stderr(out)
    );
}

fn node_ids(report: &serde_json::Value) -> Vec<String> {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn create_sign_show_until_a_quorum_of_admins_signed() {
    let c = cluster();
    let m1 = c.file("m1.toml");
    ok(&c.create(&m1, &[2, 0, 1]));

    // Unsigned: show prints it all but does not verify.
    let out = show(&m1, None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("0 valid admin signature(s), 2 required"),
        "{text}"
    );
    assert!(text.contains("roles: keygen, sign"), "{text}");
    assert!(text.contains("NOT VERIFIED"), "{text}");

    // One signature: still under-signed, and says how many it has and needs.
    ok(&c.sign(&m1, 0, "alice", None));
    let out = show(&m1, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("1 valid admin signature(s), 2 required"),
        "{}",
        stdout(&out)
    );

    // A key signing as another admin is refused, and the file is left as it was.
    let before = std::fs::read_to_string(&m1).unwrap();
    let wrong = c.sign(&m1, 0, "bob", None);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("is not admin 'bob''s"),
        "{}",
        stderr(&wrong)
    );
    let stranger = c.sign(&m1, 0, "mallory", None);
    assert!(
        stderr(&stranger).contains("'mallory' is not an admin"),
        "{}",
        stderr(&stranger)
    );
    assert_eq!(std::fs::read_to_string(&m1).unwrap(), before);

    // The second admin: verified; nodes in the order given (the key index order).
    ok(&c.sign(&m1, 1, "bob", None));
    ok(&show(&m1, None));
    let (code, report) = show_json(&m1, None);
    assert_eq!(code, Some(0));
    assert_eq!(node_ids(&report), ["node2", "node0", "node1"]);
    assert_eq!(report["version"], 1);
    assert_eq!(report["admin_threshold"], 2);
    assert_eq!(
        report["initiators"][0]["public_key"],
        c.initiator.2.as_str()
    );
    assert_eq!(report["admins"][2]["public_key"], c.admins[2].2.as_str());
    let statuses: Vec<_> = report["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["admin"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("alice", "valid"), ("bob", "valid")]);

    // create never overwrites.
    let signed = std::fs::read_to_string(&m1).unwrap();
    let again = c.create(&m1, &[0, 1, 2]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&m1).unwrap(), signed);

    // A secret key file given as a public key is refused before it reaches a manifest.
    let leak = keyrack(&[
        "manifest",
        "create",
        "--cluster",
        "prod",
        "--out",
        &c.file("leak.toml"),
        "--node",
        &path(&c.nodes[0]),
        "--admin",
        &format!("alice={}", path(&c.admins[0].0)),
        "--admin-threshold",
        "1",
    ]);
    assert_eq!(leak.status.code(), Some(2));
    assert!(
        stderr(&leak).contains("SECRET key file"),
        "{}",
        stderr(&leak)
    );
    assert!(!Path::new(&c.file("leak.toml")).exists());

    // Tampering: a node key changed in the file (its identity no longer verifies) ...
    let tampered = c.file("tampered.toml");
    let node1_key = report["nodes"][2]["signing_key"].as_str().unwrap();
    std::fs::write(&tampered, signed.replace(node1_key, &c.admins[2].2)).unwrap();
    let out = show(&tampered, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("node1"), "{}", stderr(&out));
    // ... or a role added: the admins' signatures no longer verify.
    std::fs::write(
        &tampered,
        signed.replace("\"keygen\", \"sign\"", "\"keygen\", \"sign\", \"delete\""),
    )
    .unwrap();
    let (code, report) = show_json(&tampered, None);
    assert_eq!(code, Some(1));
    assert_eq!(report["signatures"][0]["status"], "invalid");
    assert_eq!(report["verified"], false);
}

#[test]
fn next_makes_a_successor_signed_by_the_current_admins() {
    let c = cluster();
    let (m1, m2) = (c.file("m1.toml"), c.file("m2.toml"));
    ok(&c.create(&m1, &[0, 1, 2]));
    ok(&c.sign(&m1, 0, "alice", None));
    ok(&c.sign(&m1, 2, "carol", None));
    let (_, v1) = show_json(&m1, None);

    // Version 2 drops node1 and hands administration to dave alone.
    let dir = c.dir.path();
    let dave = generate(dir, "dave");
    let out = keyrack(&[
        "manifest",
        "next",
        "--from",
        &m1,
        "--out",
        &m2,
        "--node",
        &path(&c.nodes[0]),
        "--node",
        &path(&c.nodes[2]),
        "--admin",
        &format!("dave={}", path(&dave.1)),
        "--admin-threshold",
        "1",
    ]);
    ok(&out);
    assert!(stdout(&out).contains("--current"), "{}", stdout(&out));
    let (code, v2) = show_json(&m2, Some(&m1));
    assert_eq!(code, Some(1));
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["previous"], v1["hash"]);
    assert_eq!(node_ids(&v2), ["node0", "node2"]);
    assert_eq!(v2["initiators"], v1["initiators"], "initiators are kept");

    // Signed by its own new admin only: a bootstrap, but not a successor of version 1.
    let dave_signs = keyrack(&[
        "manifest",
        "sign",
        "--manifest",
        &m2,
        "--key",
        &path(&dave.0),
        "--admin",
        "dave",
    ]);
    ok(&dave_signs);
    let (code, report) = show_json(&m2, Some(&m1));
    assert_eq!(code, Some(1));
    assert_eq!(report["bootstrap"]["ok"], true);
    assert_eq!(report["successor"]["ok"], false);
    ok(&show(&m2, None));

    // A version-1 admin signs only with --current (which names the admins in office).
    let without = c.sign(&m2, 1, "bob", None);
    assert_eq!(without.status.code(), Some(2));
    assert!(
        stderr(&without).contains("--current"),
        "{}",
        stderr(&without)
    );
    ok(&c.sign(&m2, 1, "bob", Some(&m1)));
    assert_eq!(
        show(&m2, Some(&m1)).status.code(),
        Some(1),
        "1 of 2 current admins"
    );
    ok(&c.sign(&m2, 0, "alice", Some(&m1)));
    ok(&show(&m2, Some(&m1)));

    // Version 3 hands administration back to alice and bob, who sign it: it verifies on its
    // own, but as the successor of version 2 (in office: dave alone) it fails.
    let m3 = c.file("m3.toml");
    ok(&keyrack(&[
        "manifest",
        "next",
        "--from",
        &m2,
        "--out",
        &m3,
        "--admin",
        &format!("alice={}", c.admins[0].2),
        "--admin",
        &format!("bob={}", c.admins[1].2),
        "--admin-threshold",
        "2",
    ]));
    ok(&c.sign(&m3, 0, "alice", None));
    ok(&c.sign(&m3, 1, "bob", None));
    ok(&show(&m3, None));
    let out = keyrack(&[
        "manifest",
        "show",
        "--manifest",
        &m3,
        "--current",
        &m1,
        "--current",
        &m2,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("FAIL successor: manifest version 3 has 0 valid"),
        "{text}"
    );
    // Signing it with --current m1 is refused: it is not version 1's successor.
    let out = c.sign(&m3, 0, "alice", Some(&m1));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not the successor"),
        "{}",
        stderr(&out)
    );
}

/// `manifest publish` without running nodes: bad input is refused before NATS is touched
/// (exit 2, naming the option), an unreachable server is an error (exit 2), and a published
/// manifest nobody answers reports every node silent (exit 1).
#[test]
fn publish_refuses_bad_input_and_reports_silent_nodes() {
    let help = keyrack(&["manifest", "publish", "--help"]);
    ok(&help);
    for phrase in ["signed verdict", "--current", "--timeout", "Exit status 0"] {
        assert!(
            stdout(&help).contains(phrase),
            "{phrase}: {}",
            stdout(&help)
        );
    }

    let c = cluster();
    let m1 = c.file("m1.toml");
    ok(&c.create(&m1, &[0, 1, 2]));
    ok(&c.sign(&m1, 0, "alice", None));
    let publish = |manifest: &str, current: Option<&str>, url: &str, timeout: &str| {
        let mut args = vec![
            "manifest",
            "publish",
            "--manifest",
            manifest,
            "--nats",
            url,
            "--timeout",
            timeout,
        ];
        if let Some(c) = current {
            args.extend(["--current", c]);
        }
        keyrack(&args)
    };

    let garbage = c.file("garbage.toml");
    std::fs::write(&garbage, "format = 1\nthis is not a manifest").unwrap();
    let out = publish(&garbage, None, "nats://127.0.0.1:1", "1");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--manifest") && stderr(&out).contains("garbage.toml"),
        "{}",
        stderr(&out)
    );
    let missing = c.file("missing.toml");
    let out = publish(&missing, None, "nats://127.0.0.1:1", "1");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));

    // Nothing listens on port 1.
    let out = publish(&m1, None, "nats://127.0.0.1:1", "1");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("could not publish within"),
        "{}",
        stderr(&out)
    );

    // A real server, no node: published, nobody answers.
    let nats = keyrack_tests::NatsServer::start();
    let out = publish(&m1, Some(&m1), &nats.url, "1");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    for node in ["node0", "node1", "node2"] {
        assert!(
            text.lines()
                .any(|l| l.contains(node) && l.contains("silent: no verdict within")),
            "{text}"
        );
    }
    assert!(
        text.contains("0 of 3 node(s) of version 1 accepted it"),
        "{text}"
    );
    // The same file again within the dedup window: JetStream drops it, and says so.
    let out = publish(&m1, None, &nats.url, "1");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("duplicate"), "{}", stdout(&out));
}

/// One key, one member: a public key listed for two initiators (or an initiator and an
/// admin) is refused by `create` and `next`, which write nothing, and a file that lists one
/// (written by hand) by `sign`, `show` and `publish`, which leave it as it is.
#[test]
fn a_key_listed_for_two_members_is_refused_everywhere() {
    let c = cluster();
    let backend = &c.initiator.2;
    let shared = format!(
        "initiators 'backend' and 'backend2' share one public key (ed25519:{}…): every \
         initiator and admin needs its own key",
        &backend[..8]
    );
    let nodes: Vec<String> = c
        .nodes
        .iter()
        .map(|n| path(&n.join("identity.pub.toml")))
        .collect();
    let refused = |out: &Output, message: &str, file: &str| {
        assert_eq!(out.status.code(), Some(2), "{}{}", stdout(out), stderr(out));
        assert!(stderr(out).contains(message), "{}", stderr(out));
        assert!(!Path::new(file).exists(), "{file} was written");
    };

    // create: two initiators with one key (the file and the hex spelling), then an
    // initiator whose key is an admin's.
    let dup = c.file("dup.toml");
    let create = |initiators: &[String]| {
        let mut args: Vec<&str> = vec!["manifest", "create", "--cluster", "prod", "--out", &dup];
        for n in &nodes {
            args.extend(["--node", n]);
        }
        for i in initiators {
            args.extend(["--initiator", i]);
        }
        let alice = format!("alice={}", c.admins[0].2);
        args.extend(["--admin", &alice, "--admin-threshold", "1"]);
        keyrack(&args)
    };
    let two_initiators = [
        format!("backend={}:sign", path(&c.initiator.1)),
        format!("backend2={backend}:approve"),
    ];
    refused(&create(&two_initiators), &shared, &dup);
    refused(
        &create(&[format!("backend={}:sign", c.admins[0].2)]),
        "initiator 'backend' and admin 'alice' share one public key",
        &dup,
    );

    // next: the same two initiators in a successor of a valid manifest.
    let m1 = c.file("m1.toml");
    ok(&c.create(&m1, &[0, 1, 2]));
    let m2 = c.file("m2.toml");
    let out = keyrack(&[
        "manifest",
        "next",
        "--from",
        &m1,
        "--out",
        &m2,
        "--initiator",
        &two_initiators[0],
        "--initiator",
        &two_initiators[1],
    ]);
    refused(&out, &shared, &m2);

    // sign, show and publish: the file written by hand (a second initiator with backend's
    // key, before the admins).
    let text = std::fs::read_to_string(&m1).unwrap();
    let hand = text.replacen(
        "[[admins]]\n",
        &format!(
            "[[initiators]]\nid = \"backend2\"\npublic_key = \"{backend}\"\nroles = [\"approve\"]\n\n[[admins]]\n"
        ),
        1,
    );
    assert_ne!(hand, text);
    let by_hand = c.file("by-hand.toml");
    std::fs::write(&by_hand, &hand).unwrap();
    let outs = [
        c.sign(&by_hand, 0, "alice", None),
        show(&by_hand, None),
        keyrack(&[
            "manifest",
            "publish",
            "--manifest",
            &by_hand,
            "--nats",
            "nats://127.0.0.1:1",
            "--timeout",
            "1",
        ]),
    ];
    for out in &outs {
        assert_eq!(out.status.code(), Some(2), "{}{}", stdout(out), stderr(out));
        assert!(stderr(out).contains(&shared), "{}", stderr(out));
    }
    assert_eq!(std::fs::read_to_string(&by_hand).unwrap(), hand);
}
