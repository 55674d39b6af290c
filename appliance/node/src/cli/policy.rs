//! `keyrack policy …`: lint, sign, explain and test policy files and bundles.
//!
//! The rules (file format, semantics, bundle hash and signatures) are
//! [`keyrack_policy`]'s; this module reads files, builds a payload decoder from the node's
//! chain plugins for fixtures, writes bundles and reports. It never activates a bundle
//! (that is a signed `policy` request the nodes judge themselves) and holds an admin key
//! only for one signature.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use keyrack_plugin::{Intent, PayloadFormat, Registry, SignerKey};
use keyrack_policy::{
    Bundle, Fixture, Operation, Policy, PolicyAdmin, SignedBundle, BUNDLE_FORMAT,
};

use super::keys::load_key;
use super::manifest::create_file;
use crate::fsutil::replace_file;

/// `keyrack policy …`
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file or a policy bundle: errors (exit 1) and lint warnings.
    ///
    /// Errors name the field at fault (`rules[2].max_valeu: unknown field …`). Warnings
    /// (shadowed or unreachable rules, contradictions, a deny of everything) are printed but
    /// do not fail the check. For a bundle, its policy is checked and, with --manifest, its
    /// signatures too (as the first bundle, or as the successor of --active).
    Check {
        /// A policy TOML file or a bundle TOML file (from `keyrack policy sign`).
        file: PathBuf,
        /// For a bundle: the cluster manifest whose initiators with role policy-admin sign
        /// bundles; the bundle's signatures are verified against them.
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// For a bundle with --manifest: the bundle active now (verify as its successor).
        #[arg(long, value_name = "BUNDLE")]
        active: Option<PathBuf>,
    },
    /// Create a signed policy bundle, or add a signature to one.
    ///
    /// Create: --policy --cluster --version --threshold [--previous-bundle] --key --admin
    /// --out. Add a signature (the file is rewritten atomically; signing again replaces
    /// that admin's earlier signature): --bundle --key --admin.
    Sign {
        /// The policy TOML to bundle (checked first: a policy with errors is never bundled).
        #[arg(long, value_name = "FILE", conflicts_with = "bundle", requires_all = ["cluster", "version", "threshold", "out"])]
        policy: Option<PathBuf>,
        /// The cluster id the bundle is for.
        #[arg(long, value_name = "ID")]
        cluster: Option<String>,
        /// The bundle version: 1 for the first, then the active version + 1.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
        /// The bundle this one succeeds (its hash becomes `previous`); needed for version > 1.
        #[arg(long, value_name = "BUNDLE")]
        previous_bundle: Option<PathBuf>,
        /// How many policy admins must sign this bundle and its successor (a majority).
        #[arg(long, value_name = "T")]
        threshold: Option<u16>,
        /// The bundle file to write (never overwritten).
        #[arg(long, value_name = "BUNDLE")]
        out: Option<PathBuf>,
        /// An existing bundle to add a signature to, in place.
        #[arg(long, value_name = "BUNDLE", conflicts_with_all = ["cluster", "version", "previous_bundle", "threshold", "out"])]
        bundle: Option<PathBuf>,
        /// The admin's Ed25519 key file (from `keyrack keys generate`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The policy admin id to sign as (a manifest initiator with role policy-admin).
        #[arg(long, value_name = "ID")]
        admin: String,
    },
    /// Evaluate one fixture request against a policy and print every rule's verdict.
    Explain {
        /// A policy TOML file or a bundle.
        #[arg(long, value_name = "FILE_OR_BUNDLE")]
        policy: PathBuf,
        /// The request: a fixture file (see `keyrack policy test --help`).
        #[arg(long, value_name = "FIXTURE")]
        request: PathBuf,
        /// Print the decision as JSON (as the audit log records it).
        #[arg(long)]
        json: bool,
    },
    /// Run every fixture (*.toml) in DIR against its policy; exit 1 on any failure.
    ///
    /// A fixture is one request with its expected outcome (format: the keyrack_policy
    /// crate's `fixture` docs and policies/README.md). Its policy: --policy if given, else
    /// the fixture's `policy` key (relative to the fixture), else DIR/../<DIR name>.toml
    /// (policies/examples/treasury/ runs against policies/examples/treasury.toml).
    Test {
        /// The directory of fixtures.
        dir: PathBuf,
        /// The policy (or bundle) for every fixture.
        #[arg(long, value_name = "FILE_OR_BUNDLE")]
        policy: Option<PathBuf>,
    },
    /// Activate a signed bundle on every node of the cluster (a `policy` request).
    ///
    /// Sent as the initiator of the client configuration, which must hold the manifest role
    /// policy-admin. Every node verifies the bundle itself (enough valid signatures of
    /// policy admins, a successor of its active bundle) and refuses it otherwise
    /// (policy_bundle_refused); waits until every node answered. Exit 1 if one refused.
    Activate {
        /// The signed bundle file (from `keyrack policy sign`).
        bundle: PathBuf,
        /// The client configuration (docs/CONFIG.md, "client.toml").
        #[arg(
            long,
            value_name = "FILE",
            env = "KEYRACK_CLIENT_CONFIG",
            default_value = "client.toml"
        )]
        config: PathBuf,
        /// Seconds to wait for every node.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        timeout: u64,
        /// Print one JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `keyrack policy` command.
pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check {
            file,
            manifest,
            active,
        } => check(&file, manifest.as_deref(), active.as_deref()),
        PolicyCommand::Sign {
            policy,
            cluster,
            version,
            previous_bundle,
            threshold,
            out,
            bundle,
            key,
            admin,
        } => match (policy, bundle) {
            (Some(policy), None) => create_bundle(
                &policy,
                cluster.context("give --cluster ID")?,
                version.context("give --version N")?,
                previous_bundle.as_deref(),
                threshold.context("give --threshold T")?,
                &out.context("give --out BUNDLE")?,
                &key,
                &admin,
            ),
            (None, Some(bundle)) => add_signature(&bundle, &key, &admin),
            _ => bail!("give --policy FILE (create a bundle) or --bundle BUNDLE (add a signature)"),
        },
        PolicyCommand::Activate {
            bundle,
            config,
            timeout,
            json,
        } => super::client::activate_policy(&config, &bundle, timeout, json),
        PolicyCommand::Explain {
            policy,
            request,
            json,
        } => explain(&policy, &request, json),
        PolicyCommand::Test { dir, policy } => test(&dir, policy.as_deref()),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_bundle(path: &Path) -> anyhow::Result<SignedBundle> {
    SignedBundle::from_toml(&read(path)?).with_context(|| path.display().to_string())
}

/// A policy file or the policy inside a bundle (signatures not checked).
fn load_policy(path: &Path) -> anyhow::Result<Policy> {
    let text = read(path)?;
    let policy_text = if SignedBundle::looks_like_bundle(&text) {
        SignedBundle::from_toml(&text)
            .with_context(|| path.display().to_string())?
            .bundle
            .policy
    } else {
        text
    };
    Policy::from_toml(&policy_text)
        .with_context(|| format!("{} is not a valid policy", path.display()))
}

fn print_findings(policy: &Policy) -> usize {
    let findings = policy.lint();
    for f in &findings {
        match &f.rule {
            Some(r) => println!("warning: rule {r}: {}", f.message),
            None => println!("warning: {}", f.message),
        }
    }
    findings.len()
}

fn policy_admins(manifest: &Path) -> anyhow::Result<(String, Vec<PolicyAdmin>)> {
    let m = super::read_manifest(manifest)?;
    let admins = crate::daemon::policy::policy_admins(&m);
    Ok((m.cluster_id().to_owned(), admins))
}

fn check(path: &Path, manifest: Option<&Path>, active: Option<&Path>) -> anyhow::Result<ExitCode> {
    let text = read(path)?;
    let fail = |msg: String| {
        eprintln!("error: {}: {msg}", path.display());
        Ok(ExitCode::FAILURE)
    };
    if !SignedBundle::looks_like_bundle(&text) {
        if manifest.is_some() || active.is_some() {
            bail!(
                "--manifest and --active check a bundle's signatures; {} is a policy file",
                path.display()
            );
        }
        let policy = match Policy::from_toml(&text) {
            Ok(p) => p,
            Err(e) => return fail(e.to_string()),
        };
        let warnings = print_findings(&policy);
        println!(
            "ok: {} is a valid policy ({} rule(s), {warnings} warning(s))",
            path.display(),
            policy.rules().len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let signed = match SignedBundle::from_toml(&text) {
        Ok(b) => b,
        Err(e) => return fail(e.to_string()),
    };
    let b = &signed.bundle;
    println!(
        "bundle: cluster {} version {} threshold {}",
        b.cluster_id, b.version, b.admin_threshold
    );
    println!("  hash      {}", hex::encode(signed.hash()));
    println!(
        "  previous  {}",
        b.previous.map_or("none".to_owned(), hex::encode)
    );
    let signers: Vec<&str> = signed
        .signatures
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    println!(
        "  signed by {}",
        if signers.is_empty() {
            "nobody".to_owned()
        } else {
            signers.join(", ")
        }
    );
    let policy = match Policy::from_toml(&b.policy) {
        Ok(p) => p,
        Err(e) => return fail(format!("its policy is invalid: {e}")),
    };
    let warnings = print_findings(&policy);
    match manifest {
        Some(m) => {
            let (cluster, admins) = policy_admins(m)?;
            let active = match active {
                Some(a) => Some(
                    read_bundle(a)?
                        .verify(&cluster, &admins, None)
                        .or_else(|_| {
                            read_bundle(a)?
                                .verify_installed(&cluster, &admins)
                                .map_err(anyhow::Error::from)
                        })
                        .with_context(|| format!("--active {} does not verify", a.display()))?,
                ),
                None => None,
            };
            match signed.verify(&cluster, &admins, active.as_ref()) {
                Ok(v) => println!(
                    "ok: signatures verify ({}), policy valid, {warnings} warning(s)",
                    v.signers().join(", ")
                ),
                Err(e) => return fail(e.to_string()),
            }
        }
        None => {
            if active.is_some() {
                bail!("--active needs --manifest (the policy admins)");
            }
            println!("ok: the bundle's policy is valid ({} rule(s), {warnings} warning(s)); signatures not checked (give --manifest)", policy.rules().len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn create_bundle(
    policy_path: &Path,
    cluster: String,
    version: u64,
    previous_bundle: Option<&Path>,
    threshold: u16,
    out: &Path,
    key: &Path,
    admin: &str,
) -> anyhow::Result<ExitCode> {
    let policy = read(policy_path)?;
    Policy::from_toml(&policy).with_context(|| {
        format!(
            "{} is not a valid policy: nothing written",
            policy_path.display()
        )
    })?;
    let previous = match (previous_bundle, version) {
        (Some(p), _) => {
            let prev = read_bundle(p)?;
            if prev.bundle.cluster_id != cluster {
                bail!(
                    "--previous-bundle {} is for cluster '{}', not '{cluster}'",
                    p.display(),
                    prev.bundle.cluster_id
                );
            }
            if prev.bundle.version.checked_add(1) != Some(version) {
                bail!(
                    "--previous-bundle {} is version {}: this one must be version {}",
                    p.display(),
                    prev.bundle.version,
                    prev.bundle.version.saturating_add(1)
                );
            }
            Some(prev.hash())
        }
        (None, 1) => None,
        (None, v) => bail!("version {v} succeeds a bundle: give it with --previous-bundle BUNDLE"),
    };
    if threshold == 0 {
        bail!("--threshold must be at least 1 (and a majority of the policy admins)");
    }
    let mut signed = SignedBundle::new(Bundle {
        format: BUNDLE_FORMAT,
        cluster_id: cluster,
        version,
        previous,
        admin_threshold: threshold,
        policy,
    });
    let key = load_key(key)?;
    signed.sign_as(admin, key.signing_key());
    let text = signed.to_toml();
    if SignedBundle::from_toml(&text).ok().as_ref() != Some(&signed) {
        bail!("the bundle does not read back as written (a bug: please report it)");
    }
    create_file(out, text.as_bytes()).with_context(|| format!("--out {}", out.display()))?;
    println!(
        "wrote bundle {} version {} to {}",
        signed.bundle.cluster_id,
        version,
        out.display()
    );
    println!("  hash {}", hex::encode(signed.hash()));
    println!("  signed by {admin} (1 of {threshold} needed)");
    Ok(ExitCode::SUCCESS)
}

fn add_signature(path: &Path, key: &Path, admin: &str) -> anyhow::Result<ExitCode> {
    let mut signed = read_bundle(path)?;
    let key = load_key(key)?;
    signed.sign_as(admin, key.signing_key());
    replace_file(&std::path::absolute(path)?, signed.to_toml().as_bytes())
        .with_context(|| format!("cannot rewrite {}", path.display()))?;
    let signers: Vec<&str> = signed
        .signatures
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    println!("signed {} as {admin}", path.display());
    println!("  hash {}", hex::encode(signed.hash()));
    println!(
        "  signed by {} ({} of {} needed)",
        signers.join(", "),
        signers.len(),
        signed.bundle.admin_threshold
    );
    Ok(ExitCode::SUCCESS)
}

/// Decodes fixture payloads with the node's chain plugins (Bitcoin addresses for regtest).
struct ChainDecoder {
    registry: Option<Registry>,
    error: Option<String>,
}

impl ChainDecoder {
    fn new() -> Self {
        let mut registry = Registry::new();
        match crate::chains::register(&mut registry, "regtest") {
            Ok(()) => Self {
                registry: Some(registry),
                error: None,
            },
            Err(e) => Self {
                registry: None,
                error: Some(e.to_string()),
            },
        }
    }

    fn decode(
        &self,
        chain: &str,
        format: PayloadFormat,
        payload: &[u8],
        scheme: &str,
        public_key: &[u8],
    ) -> Result<Intent, String> {
        let registry = self.registry.as_ref().ok_or_else(|| {
            format!(
                "the chain plugins did not load: {}",
                self.error.as_deref().unwrap_or("")
            )
        })?;
        let plugin = registry.chain(chain).ok_or_else(|| {
            format!(
                "no chain plugin '{chain}' (known: {})",
                registry.chain_ids().join(", ")
            )
        })?;
        plugin
            .decode(format, payload, SignerKey { scheme, public_key })
            .map(|d| d.intent)
            .map_err(|e| e.to_string())
    }
}

fn explain(policy_path: &Path, request: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let policy = load_policy(policy_path)?;
    let fixture = Fixture::load(request)?;
    let decoder = ChainDecoder::new();
    let decode =
        |c: &str, f: PayloadFormat, p: &[u8], s: &str, k: &[u8]| decoder.decode(c, f, p, s, k);
    let intent = fixture.intent(&decode)?;
    let decision = policy.evaluate(
        &fixture.request(intent.as_ref()),
        &fixture.approvals,
        &fixture.ledger(),
    );
    if json {
        let report = serde_json::json!({
            "request": fixture.name,
            "request_hash": hex::encode(fixture.request_hash),
            "intent": intent,
            "decision": decision,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "request {} ({})",
            fixture.name,
            hex::encode(fixture.request_hash)
        );
        if let Some(d) = &fixture.description {
            println!("  {d}");
        }
        println!(
            "{} by {} ({}) of key {} ({})",
            fixture.operation,
            fixture.initiator,
            if fixture.roles.is_empty() {
                "no roles".to_owned()
            } else {
                fixture.roles.join(", ")
            },
            fixture.key_id,
            if fixture.schemes.is_empty() {
                "every scheme".to_owned()
            } else {
                fixture.schemes.join(", ")
            }
        );
        match (fixture.operation, &intent) {
            (Operation::Sign, Some(i)) => println!("intent: {}", serde_json::to_string(i)?),
            (Operation::Sign, None) => println!(
                "intent: none ({})",
                if fixture.raw_digest {
                    "a raw digest"
                } else {
                    "a plain message"
                }
            ),
            (Operation::Keygen | Operation::Reshare | Operation::Refresh, _) => {
                let or = |v: Option<u16>| v.map_or("unchanged".to_owned(), |v| v.to_string());
                let now = match fixture.current.first() {
                    Some(c) => format!("{} of {}", c.threshold, c.size),
                    None => "unknown here (this node holds no share of the key)".to_owned(),
                };
                println!(
                    "asks: threshold {}, committee size {}{}; the key now: {now}",
                    or(fixture.new_threshold),
                    or(fixture.new_committee),
                    if fixture.reuse_deleted_id {
                        ", may re-create a deleted key id"
                    } else {
                        ""
                    }
                );
            }
            (Operation::Delete | Operation::Status, _) => {}
        }
        print!("{}", decision.explain());
    }
    Ok(ExitCode::SUCCESS)
}

fn default_policy_for(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = std::path::absolute(dir)?;
    let name = dir
        .file_name()
        .context("the fixture directory has no name")?;
    let parent = dir
        .parent()
        .context("the fixture directory has no parent")?;
    Ok(parent.join(format!("{}.toml", name.to_string_lossy())))
}

fn test(dir: &Path, policy: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the fixture directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no fixtures (*.toml) in {}", dir.display());
    }
    let decoder = ChainDecoder::new();
    let decode =
        |c: &str, f: PayloadFormat, p: &[u8], s: &str, k: &[u8]| decoder.decode(c, f, p, s, k);
    let mut policies: BTreeMap<PathBuf, Result<Policy, String>> = BTreeMap::new();
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let outcome = (|| -> Result<Vec<String>, String> {
            let fixture = Fixture::load(file).map_err(|e| e.to_string())?;
            let policy_path = match (policy, &fixture.policy) {
                (Some(p), _) => p.to_owned(),
                (None, Some(p)) => file.parent().unwrap_or(Path::new(".")).join(p),
                (None, None) => default_policy_for(dir).map_err(|e| format!("{e:#}"))?,
            };
            let policy = policies
                .entry(policy_path.clone())
                .or_insert_with(|| load_policy(&policy_path).map_err(|e| format!("{e:#}")))
                .as_ref()
                .map_err(Clone::clone)?;
            let result = fixture.run(policy, &decode).map_err(|e| e.to_string())?;
            Ok(result.failures)
        })();
        match outcome {
            Ok(failures) if failures.is_empty() => {
                passed += 1;
                println!("pass  {name}");
            }
            Ok(failures) => {
                failed += 1;
                println!("FAIL  {name}: {}", failures.join("; "));
            }
            Err(e) => {
                failed += 1;
                println!("FAIL  {name}: {e}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
