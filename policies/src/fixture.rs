//! Fixtures: one TOML file per case, a request with its expected outcome, for
//! `keyrack policy test` and `keyrack policy explain --request`.
//!
//! ```toml
//! description = "a small transfer to an exchange"   # optional
//! policy = "../treasury.toml"    # optional: the policy to run against, relative to this file
//! operation = "sign"             # default sign; keygen reshare refresh delete status
//! initiator = "alice"
//! roles = ["trader"]             # default none
//! key_id = "hot-1"
//! scheme = "ecdsa-secp256k1"     # or schemes = ["ecdsa-secp256k1", "ed25519"] (lifecycle)
//! # keygen, reshare: new_threshold = 3, new_committee = 5 (a reshare's: absent = unchanged)
//! # reshare, refresh: threshold = 2, committee = 3 (the key's now, at the deciding node;
//! #                   absent = the node holds no share of it)
//! # keygen: reuse_deleted_id = true
//! derivation_path = "m/0/1"      # default "m" (the root key)
//! raw_digest = false             # default false
//! now = "2025-03-04T12:00:00Z"   # or now_ms = 1741089600000
//!
//! [intent]                       # the decoded intent, given directly (or none: a plain message)
//! chain = "evm"
//! network = "1"                  # optional, like fee, method, contract
//! action = "transfer"
//! fee = "420000000000000"
//! [[intent.transfers]]
//! to = "0x…"
//! asset = "native"
//! amount = "1000000000000000000"   # integer or decimal string
//!
//! # … or, instead of [intent], a payload for the chain plugin to decode:
//! # chain = "evm", format = "transaction", payload = "<hex>", public_key = "<hex>"
//!
//! [[approvals]]                  # bound to this fixture's request unless request_hash is given
//! approver = "bob"
//! expires_at_ms = 1741093200000  # or expires_in = "1h" (from now)
//!
//! [[usage]]                      # prior ledger entries, each one request
//! ago = "2h"                     # or at_ms
//! amount = "500"                 # key_id and initiator default to the fixture's
//! asset = "evm:native"           # as the ledger names assets: <chain>:<asset>
//! destination = "0x…"
//!
//! [expect]
//! outcome = "allow"              # allow | needs_approvals | deny
//! rule = "small-transfers"       # optional: a rule that allowed, the approval rule named,
//!                                # the deny rule, or "(default)" for the default deny
//! delay = "24h"                  # optional, allow only: the delay (or "none")
//! ```
//!
//! The fixture's request hash is the SHA-256 of its file bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keyrack_plugin::{Intent, PayloadFormat, Transfer};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::eval::{Approval, Committee, Decision, Lifecycle, Outcome, Request};
use crate::file::{Amount, Operation, Policy};
use crate::ledger::{LedgerEntry, MemoryLedger};
use crate::pattern::parse_path;
use crate::time::{parse_duration_ms, parse_rfc3339_ms};

/// Decodes a fixture's payload: `(chain, format, payload, scheme, public_key)` → intent.
/// The CLI passes one built on the node's chain plugins.
pub type Decoder<'a> =
    dyn Fn(&str, PayloadFormat, &[u8], &str, &[u8]) -> Result<Intent, String> + 'a;

/// Why a fixture cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid fixture.
    #[error("fixture {name}: {message}")]
    Invalid {
        /// The fixture's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Its payload does not decode.
    #[error("fixture {name}: the payload does not decode: {message}")]
    Decode {
        /// The fixture's name.
        name: String,
        /// The decoder's error.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferFile {
    to: String,
    asset: String,
    amount: Amount,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntentFile {
    chain: String,
    network: Option<String>,
    action: String,
    #[serde(default)]
    transfers: Vec<TransferFile>,
    fee: Option<Amount>,
    method: Option<String>,
    contract: Option<String>,
    #[serde(default)]
    details: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalFile {
    approver: String,
    expires_at_ms: Option<u64>,
    expires_in: Option<String>,
    request_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageFile {
    at_ms: Option<u64>,
    ago: Option<String>,
    key_id: Option<String>,
    initiator: Option<String>,
    destination: Option<String>,
    asset: Option<String>,
    #[serde(default)]
    amount: Option<Amount>,
}

/// What a fixture expects.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `allow`, `needs_approvals` or `deny`.
    pub outcome: String,
    /// The rule (see the module docs); not checked when absent.
    pub rule: Option<String>,
    /// For `allow`: the delay the request waits (`24h`), or `"none"`; not checked when
    /// absent.
    pub delay: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    description: Option<String>,
    policy: Option<String>,
    operation: Option<String>,
    initiator: String,
    #[serde(default)]
    roles: Vec<String>,
    key_id: String,
    scheme: Option<String>,
    schemes: Option<Vec<String>>,
    new_threshold: Option<u16>,
    new_committee: Option<u16>,
    threshold: Option<u16>,
    committee: Option<u16>,
    #[serde(default)]
    reuse_deleted_id: bool,
    derivation_path: Option<String>,
    #[serde(default)]
    raw_digest: bool,
    now: Option<toml::Value>,
    now_ms: Option<u64>,
    intent: Option<IntentFile>,
    chain: Option<String>,
    format: Option<PayloadFormat>,
    payload: Option<String>,
    public_key: Option<String>,
    #[serde(default)]
    approvals: Vec<ApprovalFile>,
    #[serde(default)]
    usage: Vec<UsageFile>,
    expect: Expectation,
}

#[derive(Clone, Debug)]
enum IntentSource {
    None,
    Given(Intent),
    Decode {
        chain: String,
        format: PayloadFormat,
        payload: Vec<u8>,
        public_key: Vec<u8>,
    },
}

/// A parsed fixture.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// Its name (the file name without `.toml`).
    pub name: String,
    /// Its file, when loaded from one.
    pub path: Option<PathBuf>,
    /// SHA-256 of the file bytes: the request hash approvals are bound to.
    pub request_hash: [u8; 32],
    /// What it shows.
    pub description: Option<String>,
    /// The `policy` key: a policy (or bundle) file, relative to the fixture's directory.
    pub policy: Option<String>,
    /// What the request asks.
    pub operation: Operation,
    /// The request's initiator.
    pub initiator: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// The key id.
    pub key_id: String,
    /// The schemes (sign: exactly one).
    pub schemes: Vec<String>,
    /// keygen, reshare: the new threshold and committee size asked.
    pub new_threshold: Option<u16>,
    /// See `new_threshold`.
    pub new_committee: Option<u16>,
    /// reshare, refresh: the key's threshold and committee size at the deciding node, the
    /// same for every scheme (empty: the node holds no share of the key).
    pub current: Vec<Committee>,
    /// keygen: may re-create a deleted key id.
    pub reuse_deleted_id: bool,
    /// The derivation path.
    pub derivation_path: Vec<u32>,
    /// Whether it is a raw digest.
    pub raw_digest: bool,
    /// The instant.
    pub now_ms: u64,
    source: IntentSource,
    /// The approvals, bound to `request_hash` unless the file says otherwise.
    pub approvals: Vec<Approval>,
    /// Prior usage: each entry one earlier request, with its instant.
    pub usage: Vec<(u64, LedgerEntry)>,
    /// The expected outcome.
    pub expect: Expectation,
}

/// The result of running a fixture.
#[derive(Clone, Debug)]
pub struct FixtureResult {
    /// The decision.
    pub decision: Decision,
    /// What did not match the expectation (empty = passed).
    pub failures: Vec<String>,
}

impl FixtureResult {
    /// Whether the decision is what the fixture expects.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn hex_field(name: &str, field: &str, text: &str) -> Result<Vec<u8>, FixtureError> {
    hex::decode(text.trim().trim_start_matches("0x")).map_err(|e| FixtureError::Invalid {
        name: name.to_owned(),
        message: format!("{field}: not hex ({e})"),
    })
}

impl Fixture {
    /// Reads a fixture file.
    pub fn load(path: &Path) -> Result<Self, FixtureError> {
        let bytes = std::fs::read(path).map_err(|source| FixtureError::Read {
            path: path.to_owned(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let mut f = Self::from_toml(&name, &bytes)?;
        f.path = Some(path.to_owned());
        Ok(f)
    }

    /// Parses a fixture from its file bytes.
    pub fn from_toml(name: &str, bytes: &[u8]) -> Result<Self, FixtureError> {
        let invalid = |message: String| FixtureError::Invalid {
            name: name.to_owned(),
            message,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))?;
        let f: FixtureFile =
            toml::from_str(text).map_err(|e: toml::de::Error| invalid(e.to_string()))?;
        let request_hash: [u8; 32] = Sha256::digest(bytes).into();
        let now_ms = match (&f.now, f.now_ms) {
            (Some(_), Some(_)) => return Err(invalid("give now or now_ms, not both".into())),
            (None, None) => {
                return Err(invalid(
                    "give the request's time: now = \"2025-03-04T12:00:00Z\" (UTC) or now_ms"
                        .into(),
                ))
            }
            (None, Some(ms)) => ms,
            (Some(v), None) => {
                let s = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Datetime(d) => d.to_string(),
                    _ => return Err(invalid("now: expected an RFC 3339 UTC time".into())),
                };
                parse_rfc3339_ms(&s).map_err(|e| invalid(format!("now: {e}")))?
            }
        };
        let derivation_path = match &f.derivation_path {
            Some(p) => parse_path(p).map_err(|e| invalid(format!("derivation_path: {e}")))?,
            None => Vec::new(),
        };
        let decode_fields = (&f.chain, &f.format, &f.payload, &f.public_key);
        let source = match (f.intent, decode_fields) {
            (Some(_), (Some(_), _, _, _) | (_, Some(_), _, _) | (_, _, Some(_), _) | (_, _, _, Some(_))) => {
                return Err(invalid("give either [intent] or chain/format/payload/public_key, not both".into()))
            }
            (Some(i), _) => IntentSource::Given(Intent {
                chain: i.chain,
                network: i.network,
                action: i.action,
                transfers: i
                    .transfers
                    .into_iter()
                    .map(|t| Transfer {
                        to: t.to,
                        asset: t.asset,
                        amount: t.amount.0,
                    })
                    .collect(),
                fee: i.fee.map(|a| a.0),
                method: i.method,
                contract: i.contract,
                details: i.details,
            }),
            (None, (None, None, None, None)) => IntentSource::None,
            (None, (Some(chain), Some(format), Some(payload), Some(public_key))) => IntentSource::Decode {
                chain: chain.clone(),
                format: *format,
                payload: hex_field(name, "payload", payload)?,
                public_key: hex_field(name, "public_key", public_key)?,
            },
            (None, _) => {
                return Err(invalid(
                    "a payload to decode needs all of chain, format, payload (hex) and public_key (hex)".into(),
                ))
            }
        };
        let mut approvals = Vec::with_capacity(f.approvals.len());
        for (i, a) in f.approvals.into_iter().enumerate() {
            let expires_at_ms = match (a.expires_at_ms, &a.expires_in) {
                (Some(ms), None) => ms,
                (None, Some(d)) => now_ms.saturating_add(
                    parse_duration_ms(d)
                        .map_err(|e| invalid(format!("approvals[{i}].expires_in: {e}")))?,
                ),
                _ => {
                    return Err(invalid(format!(
                        "approvals[{i}]: give expires_at_ms or expires_in (not both)"
                    )))
                }
            };
            let request_hash = match &a.request_hash {
                None => request_hash,
                Some(h) => hex_field(name, &format!("approvals[{i}].request_hash"), h)?
                    .try_into()
                    .map_err(|_| {
                        invalid(format!(
                            "approvals[{i}].request_hash: expected 64 hex digits"
                        ))
                    })?,
            };
            approvals.push(Approval {
                approver: a.approver,
                request_hash,
                expires_at_ms,
            });
        }
        let mut usage = Vec::with_capacity(f.usage.len());
        for (i, u) in f.usage.into_iter().enumerate() {
            let at = match (u.at_ms, &u.ago) {
                (Some(ms), None) => ms,
                (None, Some(d)) => now_ms.saturating_sub(
                    parse_duration_ms(d).map_err(|e| invalid(format!("usage[{i}].ago: {e}")))?,
                ),
                _ => return Err(invalid(format!("usage[{i}]: give at_ms or ago (not both)"))),
            };
            usage.push((
                at,
                LedgerEntry {
                    key_id: u.key_id.unwrap_or_else(|| f.key_id.clone()),
                    initiator: u.initiator.unwrap_or_else(|| f.initiator.clone()),
                    destination: u.destination,
                    asset: u.asset,
                    amount: u.amount.map_or(0, |a| a.0),
                },
            ));
        }
        let operation = match f.operation.as_deref() {
            None => Operation::Sign,
            Some(o) => Operation::parse(o).ok_or_else(|| {
                invalid(format!(
                    "operation: '{o}' is not one of keygen, sign, reshare, refresh, delete, status"
                ))
            })?,
        };
        let schemes = match (f.scheme, f.schemes) {
            (Some(s), None) => vec![s],
            (None, Some(list)) => list,
            (None, None) if operation == Operation::Status => vec![],
            _ => {
                return Err(invalid(
                    "give scheme = \"…\" or schemes = [\"…\"] (one of them)".into(),
                ))
            }
        };
        let is_sign = operation == Operation::Sign;
        if is_sign && schemes.len() != 1 {
            return Err(invalid("a sign request names exactly one scheme".into()));
        }
        if !is_sign
            && (f.raw_digest
                || f.derivation_path.is_some()
                || !matches!(source, IntentSource::None))
        {
            return Err(invalid(format!(
                "raw_digest, derivation_path, [intent] and payloads are for sign requests, not {operation}"
            )));
        }
        let lifecycle = f.new_threshold.is_some()
            || f.new_committee.is_some()
            || f.threshold.is_some()
            || f.committee.is_some();
        if lifecycle
            && !matches!(
                operation,
                Operation::Keygen | Operation::Reshare | Operation::Refresh
            )
        {
            return Err(invalid(format!(
                "new_threshold, new_committee, threshold and committee are for keygen, reshare and refresh, not {operation}"
            )));
        }
        if f.reuse_deleted_id && operation != Operation::Keygen {
            return Err(invalid("reuse_deleted_id is for keygen".into()));
        }
        let current = match (f.threshold, f.committee) {
            (Some(threshold), Some(size)) => vec![Committee { threshold, size }],
            (None, None) => vec![],
            _ => return Err(invalid("give the key's threshold and committee (its size) together, or neither (the node holds no share of the key)".into())),
        };
        if !["allow", "needs_approvals", "deny"].contains(&f.expect.outcome.as_str()) {
            return Err(invalid(format!(
                "expect.outcome: '{}' is not one of allow, needs_approvals, deny",
                f.expect.outcome
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            path: None,
            request_hash,
            description: f.description,
            policy: f.policy,
            operation,
            initiator: f.initiator,
            roles: f.roles,
            key_id: f.key_id,
            schemes,
            new_threshold: f.new_threshold,
            new_committee: f.new_committee,
            current,
            reuse_deleted_id: f.reuse_deleted_id,
            derivation_path,
            raw_digest: f.raw_digest,
            now_ms,
            source,
            approvals,
            usage,
            expect: f.expect,
        })
    }

    /// Whether the fixture needs a decoder (it gives a payload rather than an intent).
    pub fn needs_decoder(&self) -> bool {
        matches!(self.source, IntentSource::Decode { .. })
    }

    /// The intent: given, decoded with `decode`, or none.
    pub fn intent(&self, decode: &Decoder<'_>) -> Result<Option<Intent>, FixtureError> {
        match &self.source {
            IntentSource::None => Ok(None),
            IntentSource::Given(i) => Ok(Some(i.clone())),
            IntentSource::Decode {
                chain,
                format,
                payload,
                public_key,
            } => decode(
                chain,
                *format,
                payload,
                self.schemes.first().map_or("", String::as_str),
                public_key,
            )
            .map(Some)
            .map_err(|message| FixtureError::Decode {
                name: self.name.clone(),
                message,
            }),
        }
    }

    /// The prior usage as a ledger.
    pub fn ledger(&self) -> MemoryLedger {
        let mut l = MemoryLedger::new();
        for (at, e) in &self.usage {
            l.record(*at, vec![e.clone()]);
        }
        l
    }

    /// The request, for an intent from [`Fixture::intent`].
    pub fn request<'a>(&'a self, intent: Option<&'a Intent>) -> Request<'a> {
        Request {
            operation: self.operation,
            request_hash: self.request_hash,
            initiator: &self.initiator,
            roles: &self.roles,
            key_id: &self.key_id,
            schemes: &self.schemes,
            lifecycle: Lifecycle {
                new_threshold: self.new_threshold,
                new_committee: self.new_committee,
                current: &self.current,
                reuse_deleted_id: self.reuse_deleted_id,
            },
            derivation_path: &self.derivation_path,
            raw_digest: self.raw_digest,
            intent,
            now_ms: self.now_ms,
        }
    }

    /// Evaluates the fixture's request against `policy`.
    pub fn evaluate(
        &self,
        policy: &Policy,
        decode: &Decoder<'_>,
    ) -> Result<Decision, FixtureError> {
        let intent = self.intent(decode)?;
        Ok(policy.evaluate(
            &self.request(intent.as_ref()),
            &self.approvals,
            &self.ledger(),
        ))
    }

    /// Evaluates and compares with the expectation.
    pub fn run(
        &self,
        policy: &Policy,
        decode: &Decoder<'_>,
    ) -> Result<FixtureResult, FixtureError> {
        let decision = self.evaluate(policy, decode)?;
        let mut failures = Vec::new();
        let got = decision.outcome.kind();
        if got != self.expect.outcome {
            failures.push(format!(
                "expected {}, got {}",
                self.expect.outcome,
                decision.summary()
            ));
        } else if let Some(want) = &self.expect.rule {
            let ok = match &decision.outcome {
                Outcome::Allow { rules, .. } => rules.contains(want),
                Outcome::NeedsApprovals { rule, .. } => rule == want,
                Outcome::Deny { rule, .. } => match rule {
                    Some(r) => r == want,
                    None => want == "(default)",
                },
            };
            if !ok {
                failures.push(format!(
                    "expected rule '{want}', got {}",
                    decision.summary()
                ));
            }
        }
        if let (Some(want), Outcome::Allow { delay, .. }) = (&self.expect.delay, &decision.outcome)
        {
            let got = delay.as_ref().map_or("none", |d| d.delay.window.as_str());
            if got != want {
                failures.push(format!("expected delay {want}, got {got}"));
            }
        }
        Ok(FixtureResult { decision, failures })
    }
}
