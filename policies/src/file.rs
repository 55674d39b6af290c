//! The policy file: parsing, validation, and the parsed [`Policy`] the evaluator reads.
//!
//! Parsing goes in two steps so that an error names the field at fault by its path
//! (`rules[2].approvals.grup`): the text is read as a TOML table, then each part is
//! deserialised on its own (every struct refuses unknown fields), then cross-references are
//! checked (groups, books and tags a rule names exist; ids are unique; patterns parse).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::pattern::PathPattern;
use crate::time::{parse_duration_ms, HoursUtc, WEEKDAYS};

/// The only policy file format.
pub const POLICY_FORMAT: u32 = 1;

/// The chains a policy may name.
pub const CHAINS: [&str; 3] = ["evm", "bitcoin", "solana"];

/// The schemes a policy may name.
pub const SCHEMES: [&str; 3] = ["ecdsa-secp256k1", "schnorr-secp256k1", "ed25519"];

/// The schemes that can sign for `chain`.
pub fn chain_schemes(chain: &str) -> &'static [&'static str] {
    match chain {
        "evm" => &["ecdsa-secp256k1"],
        "bitcoin" => &["ecdsa-secp256k1", "schnorr-secp256k1"],
        "solana" => &["ed25519"],
        _ => &[],
    }
}

/// The request kinds a rule can govern (its `operations`). `policy`, `approve` and `reject`
/// requests are not governed by rules: they have checks of their own (bundle signatures by
/// the policy administrators; approver groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Create a key.
    Keygen,
    /// Sign with a key.
    Sign,
    /// Move a key to a new committee and/or threshold.
    Reshare,
    /// New shares for a key, same committee and threshold.
    Refresh,
    /// Erase a key's shares everywhere.
    Delete,
    /// Read a key's status.
    Status,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 6] = [
        Operation::Keygen,
        Operation::Sign,
        Operation::Reshare,
        Operation::Refresh,
        Operation::Delete,
        Operation::Status,
    ];

    /// `keygen`, `sign`, `reshare`, `refresh`, `delete`, `status` (the request kinds' names).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Keygen => "keygen",
            Operation::Sign => "sign",
            Operation::Reshare => "reshare",
            Operation::Refresh => "refresh",
            Operation::Delete => "delete",
            Operation::Status => "status",
        }
    }

    /// Reads [`Operation::as_str`]'s form.
    pub fn parse(text: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The values `threshold_change` may list.
pub const THRESHOLD_CHANGES: [&str; 3] = ["lower", "same", "raise"];
/// The values `committee_change` may list.
pub const COMMITTEE_CHANGES: [&str; 3] = ["shrink", "same", "grow"];
/// The longest `delay` a rule may set.
pub const MAX_DELAY_MS: u64 = 30 * 24 * 3600 * 1000;

/// Why a policy file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not TOML at all.
    #[error("not valid TOML: {0}")]
    Syntax(String),
    /// A field is unknown, missing, of the wrong type or has a value out of bounds.
    #[error("{path}: {message}")]
    Field {
        /// Where: `rules[2].approvals.group`, `approver_groups.treasury`, …
        path: String,
        /// What is wrong and, where it helps, what is expected.
        message: String,
    },
}

fn field_err(path: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::Field {
        path: path.into(),
        message: message.into(),
    }
}

/// Deserialises `value` as `T`, naming `path` (and the unknown field, when that is the
/// error) in the error.
fn from_value<T: DeserializeOwned>(value: toml::Value, path: &str) -> Result<T, PolicyError> {
    value.try_into().map_err(|e: toml::de::Error| {
        let msg = e.message().to_owned();
        let unknown = msg
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name.to_owned());
        match unknown {
            Some(name) => {
                let full = if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                };
                field_err(full, msg)
            }
            None => field_err(if path.is_empty() { "(top level)" } else { path }, msg),
        }
    })
}

/// An amount in base units: a TOML integer, or a decimal string for values past `i64`
/// (`"1000000000000000000000"`; `_` separators allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Amount(pub u128);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer, or a decimal string for large amounts")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                u128::try_from(v)
                    .map(Amount)
                    .map_err(|_| E::custom(format!("amount {v} is negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                parse_amount(v).map(Amount).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a decimal amount (`_` separators allowed).
pub fn parse_amount(text: &str) -> Result<u128, String> {
    let digits: String = text.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{text}' is not a decimal amount in base units"));
    }
    digits
        .parse()
        .map_err(|_| format!("'{text}' is larger than 2^128 - 1"))
}

/// A rule's effect. Ordered by restrictiveness: `Allow < AllowWithApprovals < Deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// Sign.
    Allow,
    /// Sign once k of the named approver group approved this exact request.
    AllowWithApprovals,
    /// Refuse.
    Deny,
}

impl Effect {
    /// `allow`, `allow-with-approvals`, `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::AllowWithApprovals => "allow-with-approvals",
            Effect::Deny => "deny",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose usage a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// Everything the key signed.
    Key,
    /// Everything the request's initiator had signed.
    Initiator,
    /// Everything sent to each destination of the request (checked per destination).
    Destination,
}

impl Per {
    /// `key`, `initiator`, `destination`.
    pub fn as_str(self) -> &'static str {
        match self {
            Per::Key => "key",
            Per::Initiator => "initiator",
            Per::Destination => "destination",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitFile {
    per: Per,
    window: String,
    max_value: Option<Amount>,
    max_count: Option<u64>,
}

/// A rolling-window limit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Limit {
    /// Whose usage.
    pub per: Per,
    /// The window as written (`24h`).
    pub window: String,
    /// The window in milliseconds.
    pub window_ms: u64,
    /// The most value (of the request's single asset) in the window, this request included.
    pub max_value: Option<u128>,
    /// The most requests in the window, this one included.
    pub max_count: Option<u64>,
}

impl Limit {
    /// How a person reads it: `per key, 24h: value ≤ 1000, count ≤ 10`.
    pub fn describe(&self) -> String {
        let mut caps = Vec::new();
        if let Some(v) = self.max_value {
            caps.push(format!("max_value {v}"));
        }
        if let Some(c) = self.max_count {
            caps.push(format!("max_count {c}"));
        }
        format!(
            "per {} over {}: {}",
            self.per.as_str(),
            self.window,
            caps.join(", ")
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsFile {
    group: String,
    required: u16,
}

/// What an `allow-with-approvals` rule needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApprovalRequirement {
    /// The approver group.
    pub group: String,
    /// How many distinct members must approve.
    pub required: u16,
}

/// A rule's time lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delay {
    /// As written (`24h`).
    pub window: String,
    /// In milliseconds.
    pub ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    effect: Effect,
    description: Option<String>,
    operations: Option<Vec<String>>,
    approvals: Option<toml::Value>,
    delay: Option<String>,
    #[serde(default)]
    raw_digest: bool,
    #[serde(default)]
    plain_message: bool,
    #[serde(default)]
    reuse_deleted_id: bool,
    initiators: Option<Vec<String>>,
    roles: Option<Vec<String>>,
    keys: Option<Vec<String>>,
    key_tags: Option<Vec<String>>,
    schemes: Option<Vec<String>>,
    chains: Option<Vec<String>>,
    networks: Option<Vec<String>>,
    actions: Option<Vec<String>>,
    destinations_in: Option<Vec<String>>,
    destinations_not_in: Option<Vec<String>>,
    tokens: Option<Vec<String>>,
    methods: Option<Vec<String>>,
    contracts: Option<Vec<String>>,
    min_value: Option<Amount>,
    max_value: Option<Amount>,
    max_fee: Option<Amount>,
    derivation_paths: Option<Vec<String>>,
    hours_utc: Option<String>,
    weekdays: Option<Vec<String>>,
    within_limits: Option<Vec<toml::Value>>,
    over_limits: Option<Vec<toml::Value>>,
    min_new_threshold: Option<u16>,
    max_new_threshold: Option<u16>,
    min_new_committee: Option<u16>,
    max_new_committee: Option<u16>,
    threshold_change: Option<Vec<String>>,
    committee_change: Option<Vec<String>>,
}

/// A rule's conditions: every one given must hold; a list means "any of".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// The request's initiator is one of these.
    pub initiators: Option<Vec<String>>,
    /// The initiator holds one of these roles.
    pub roles: Option<Vec<String>>,
    /// The key id matches one of these patterns (`*` wildcard).
    pub keys: Option<Vec<String>>,
    /// The key id matches a pattern of one of these tags.
    pub key_tags: Option<Vec<String>>,
    /// The key's scheme is one of these.
    pub schemes: Option<Vec<String>>,
    /// The payload's chain is one of these (a plain message or digest has none).
    pub chains: Option<Vec<String>>,
    /// The intent's network is one of these.
    pub networks: Option<Vec<String>>,
    /// The intent's action is one of these.
    pub actions: Option<Vec<String>>,
    /// Every transfer's destination is in one of these address books.
    pub destinations_in: Option<Vec<String>>,
    /// No transfer's destination is in any of these address books.
    pub destinations_not_in: Option<Vec<String>>,
    /// The intent's single asset is one of these (`native` or a token contract / mint).
    pub tokens: Option<Vec<String>>,
    /// The intent's method is one of these.
    pub methods: Option<Vec<String>>,
    /// The intent's contract (or program) is one of these.
    pub contracts: Option<Vec<String>>,
    /// The intent's value is at least this.
    pub min_value: Option<u128>,
    /// The intent's value is at most this.
    pub max_value: Option<u128>,
    /// The intent's fee is at most this.
    pub max_fee: Option<u128>,
    /// The derivation path matches one of these patterns.
    pub derivation_paths: Option<Vec<String>>,
    pub(crate) derivation_patterns: Vec<PathPattern>,
    /// The time of day (UTC) is in this range, as written.
    pub hours_utc: Option<String>,
    pub(crate) hours: Option<HoursUtc>,
    /// The weekday (UTC) is one of these.
    pub weekdays: Option<Vec<String>>,
    /// The request stays within every one of these limits.
    pub within_limits: Option<Vec<Limit>>,
    /// The request would exceed one of these limits.
    pub over_limits: Option<Vec<Limit>>,
    /// keygen, reshare: the threshold after the request is at least this.
    pub min_new_threshold: Option<u16>,
    /// keygen, reshare: the threshold after the request is at most this.
    pub max_new_threshold: Option<u16>,
    /// keygen, reshare: the committee after the request has at least this many members.
    pub min_new_committee: Option<u16>,
    /// keygen, reshare: the committee after the request has at most this many members.
    pub max_new_committee: Option<u16>,
    /// reshare: the threshold goes one of these ways (`lower`, `same`, `raise`).
    pub threshold_change: Option<Vec<String>>,
    /// reshare: the committee's size goes one of these ways (`shrink`, `same`, `grow`).
    pub committee_change: Option<Vec<String>>,
}

impl Conditions {
    /// Whether no condition is given (the rule matches every request).
    pub fn is_empty(&self) -> bool {
        *self == Conditions::default()
    }
}

/// One rule of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Unique id.
    pub id: String,
    /// What it does when it matches.
    pub effect: Effect,
    /// For people.
    pub description: Option<String>,
    /// The request kinds it governs (sorted, distinct). A rule that names none governs
    /// `sign` (what every rule meant before rules had an operation scope).
    pub operations: Vec<Operation>,
    /// For `allow-with-approvals`: the group and count.
    pub approvals: Option<ApprovalRequirement>,
    /// For `allow-with-approvals`: once approved, the request is carried out only after
    /// this delay, during which any member of the approver group can veto (reject) it.
    pub delay: Option<Delay>,
    /// Allow and approval rules: whether a raw-digest request may match. Deny rules: whether
    /// the rule applies only to raw-digest requests.
    pub raw_digest: bool,
    /// Allow and approval rules: whether a plain message (no chain: the node signs it, or its
    /// SHA-256, without decoding it) may match. Deny rules: whether the rule applies only to
    /// plain messages. Opaque bytes can be a chain transaction in disguise (a Solana message
    /// is signed as is), so no rule allows them unless it says so.
    pub plain_message: bool,
    /// Allow and approval rules: whether a keygen that re-creates a deleted key id may
    /// match. Deny rules: whether the rule applies only to such keygens. A key id is deleted
    /// for good unless a rule says otherwise.
    pub reuse_deleted_id: bool,
    /// What must hold.
    pub conditions: Conditions,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    format: Option<u32>,
    description: Option<String>,
    #[serde(default)]
    approver_groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    address_books: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    key_tags: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rules: Vec<toml::Value>,
}

/// A parsed and validated policy. Rules are kept sorted by id (their order in the file
/// never matters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub(crate) description: Option<String>,
    pub(crate) approver_groups: BTreeMap<String, Vec<String>>,
    pub(crate) address_books: BTreeMap<String, Vec<String>>,
    pub(crate) key_tags: BTreeMap<String, Vec<String>>,
    pub(crate) rules: Vec<Rule>,
}

/// A token: 1-64 of a-z, 0-9, '-', '_' (rule ids, group, book and tag names).
fn is_token(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn check_token(path: &str, what: &str, s: &str) -> Result<(), PolicyError> {
    if is_token(s) {
        Ok(())
    } else {
        Err(field_err(
            path,
            format!("invalid {what} '{s}': use 1-64 of a-z, 0-9, '-' and '_'"),
        ))
    }
}

fn non_empty_list(path: &str, list: &Option<Vec<String>>) -> Result<(), PolicyError> {
    match list {
        Some(l) if l.is_empty() => Err(field_err(
            path,
            "an empty list can never hold: remove the condition or list something",
        )),
        Some(l) => {
            if let Some(e) = l.iter().find(|e| e.is_empty()) {
                return Err(field_err(path, format!("empty entry {e:?}")));
            }
            Ok(())
        }
        None => Ok(()),
    }
}

fn known_names(
    path: &str,
    what: &str,
    list: &Option<Vec<String>>,
    known: &BTreeMap<String, Vec<String>>,
) -> Result<(), PolicyError> {
    for name in list.iter().flatten() {
        if !known.contains_key(name) {
            let have: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(field_err(
                path,
                format!(
                    "no {what} '{name}' is defined (defined: {})",
                    if have.is_empty() {
                        "none".to_owned()
                    } else {
                        have.join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}

fn one_of(
    path: &str,
    what: &str,
    list: &Option<Vec<String>>,
    allowed: &[&str],
) -> Result<(), PolicyError> {
    for v in list.iter().flatten() {
        if !allowed.contains(&v.as_str()) {
            return Err(field_err(
                path,
                format!("unknown {what} '{v}' (known: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

fn parse_limits(
    path: &str,
    values: Option<Vec<toml::Value>>,
) -> Result<Option<Vec<Limit>>, PolicyError> {
    let Some(values) = values else {
        return Ok(None);
    };
    if values.is_empty() {
        return Err(field_err(
            path,
            "an empty list of limits: remove it or give a limit",
        ));
    }
    let mut limits = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let p = format!("{path}[{i}]");
        let f: LimitFile = from_value(v, &p)?;
        let window_ms =
            parse_duration_ms(&f.window).map_err(|m| field_err(format!("{p}.window"), m))?;
        if f.max_value.is_none() && f.max_count.is_none() {
            return Err(field_err(&p, "a limit needs max_value, max_count or both"));
        }
        limits.push(Limit {
            per: f.per,
            window: f.window,
            window_ms,
            max_value: f.max_value.map(|a| a.0),
            max_count: f.max_count,
        });
    }
    Ok(Some(limits))
}

/// A rule's `operations`: known kinds, listed once each, at least one; `sign` when absent.
fn parse_operations(path: &str, list: Option<&Vec<String>>) -> Result<Vec<Operation>, PolicyError> {
    let Some(list) = list else {
        return Ok(vec![Operation::Sign]);
    };
    if list.is_empty() {
        return Err(field_err(
            path,
            "an empty list governs nothing: list request kinds, or leave it out (sign)",
        ));
    }
    let mut ops = Vec::with_capacity(list.len());
    for name in list {
        let Some(op) = Operation::parse(name) else {
            let known: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
            return Err(field_err(
                path,
                format!("unknown operation '{name}' (known: {})", known.join(", ")),
            ));
        };
        if ops.contains(&op) {
            return Err(field_err(path, format!("'{name}' is listed twice")));
        }
        ops.push(op);
    }
    ops.sort();
    Ok(ops)
}

/// In a rule that governs reshare, conditions on the threshold and committee go in deny
/// rules only: a node that holds no share of the key (one joining its committee) does not
/// know the key's threshold and committee, so it could not tell whether an allow rule
/// matches, and would decide differently from the holders (see [`crate::Lifecycle`]).
fn reshare_deny_only(
    path: &str,
    present: bool,
    effect: Effect,
    operations: &[Operation],
) -> Result<(), PolicyError> {
    if present && effect != Effect::Deny && operations.contains(&Operation::Reshare) {
        return Err(field_err(
            path,
            "in a rule that governs reshare, threshold and committee conditions go in deny \
             rules only (a node joining the key's committee cannot judge them: the key's \
             holders do); allow the reshare in a rule without them and deny what must not \
             happen",
        ));
    }
    Ok(())
}

impl Policy {
    /// Parses and validates a policy file. Unknown fields, bad values and references to
    /// undefined groups, books or tags are errors naming the field's path.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e: toml::de::Error| PolicyError::Syntax(e.to_string()))?;
        let file: PolicyFile = from_value(toml::Value::Table(table), "")?;
        match file.format {
            None | Some(POLICY_FORMAT) => {}
            Some(f) => {
                return Err(field_err(
                    "format",
                    format!(
                        "format {f} is not supported (this keyrack reads format {POLICY_FORMAT})"
                    ),
                ))
            }
        }
        for (kind, map) in [
            ("approver_groups", &file.approver_groups),
            ("address_books", &file.address_books),
            ("key_tags", &file.key_tags),
        ] {
            for (name, entries) in map {
                let path = format!("{kind}.{name}");
                check_token(&path, "name", name)?;
                non_empty_list(&path, &Some(entries.clone()))?;
            }
        }
        let mut rules = Vec::with_capacity(file.rules.len());
        let mut ids = BTreeSet::new();
        for (i, value) in file.rules.into_iter().enumerate() {
            let rule = Self::parse_rule(
                i,
                value,
                &file.approver_groups,
                &file.address_books,
                &file.key_tags,
            )?;
            if !ids.insert(rule.id.clone()) {
                return Err(field_err(
                    format!("rules[{i}].id"),
                    format!("rule id '{}' is used twice: ids must be unique", rule.id),
                ));
            }
            rules.push(rule);
        }
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Policy {
            description: file.description,
            approver_groups: file.approver_groups,
            address_books: file.address_books,
            key_tags: file.key_tags,
            rules,
        })
    }

    fn parse_rule(
        i: usize,
        value: toml::Value,
        groups: &BTreeMap<String, Vec<String>>,
        books: &BTreeMap<String, Vec<String>>,
        tags: &BTreeMap<String, Vec<String>>,
    ) -> Result<Rule, PolicyError> {
        let base = format!("rules[{i}]");
        let f: RuleFile = from_value(value, &base)?;
        let base = format!("rules[{i}]");
        let p = |field: &str| format!("{base}.{field}");
        check_token(&p("id"), "rule id", &f.id)?;
        let approvals = match (f.effect, f.approvals) {
            (Effect::AllowWithApprovals, Some(v)) => {
                let a: ApprovalsFile = from_value(v, &p("approvals"))?;
                if !groups.contains_key(&a.group) {
                    known_names(
                        &p("approvals.group"),
                        "approver group",
                        &Some(vec![a.group.clone()]),
                        groups,
                    )?;
                }
                if a.required == 0 {
                    return Err(field_err(
                        p("approvals.required"),
                        "required = 0 would allow without approval: use effect = \"allow\"",
                    ));
                }
                Some(ApprovalRequirement {
                    group: a.group,
                    required: a.required,
                })
            }
            (Effect::AllowWithApprovals, None) => return Err(field_err(
                p("approvals"),
                "an allow-with-approvals rule needs approvals = { group = \"…\", required = k }",
            )),
            (_, Some(_)) => {
                return Err(field_err(
                    p("approvals"),
                    format!(
                    "approvals only go with effect = \"allow-with-approvals\" (this rule is {})",
                    f.effect
                ),
                ))
            }
            (_, None) => None,
        };
        let operations = parse_operations(&p("operations"), f.operations.as_ref())?;
        let delay = match (f.delay, f.effect) {
            (None, _) => None,
            (Some(window), Effect::AllowWithApprovals) => {
                let ms = parse_duration_ms(&window).map_err(|m| field_err(p("delay"), m))?;
                if ms > MAX_DELAY_MS {
                    return Err(field_err(
                        p("delay"),
                        format!("{window} is longer than 30 days"),
                    ));
                }
                Some(Delay { window, ms })
            }
            (Some(_), effect) => {
                return Err(field_err(
                    p("delay"),
                    format!(
                        "a delay goes with effect = \"allow-with-approvals\" (this rule is \
                         {effect}): the approver group is who may veto during it"
                    ),
                ))
            }
        };
        for (name, list) in [
            ("initiators", &f.initiators),
            ("roles", &f.roles),
            ("keys", &f.keys),
            ("key_tags", &f.key_tags),
            ("schemes", &f.schemes),
            ("chains", &f.chains),
            ("networks", &f.networks),
            ("actions", &f.actions),
            ("destinations_in", &f.destinations_in),
            ("destinations_not_in", &f.destinations_not_in),
            ("tokens", &f.tokens),
            ("methods", &f.methods),
            ("contracts", &f.contracts),
            ("derivation_paths", &f.derivation_paths),
            ("weekdays", &f.weekdays),
            ("threshold_change", &f.threshold_change),
            ("committee_change", &f.committee_change),
        ] {
            non_empty_list(&p(name), list)?;
        }
        one_of(
            &p("threshold_change"),
            "threshold change",
            &f.threshold_change,
            &THRESHOLD_CHANGES,
        )?;
        one_of(
            &p("committee_change"),
            "committee change",
            &f.committee_change,
            &COMMITTEE_CHANGES,
        )?;
        // Each condition reads what some request kinds have: a rule may use it only if every
        // operation it governs has it (else the condition could never be judged, and would
        // fail closed on every request of that kind).
        let only = |field: &str, present: bool, allowed: &[Operation], why: &str| match operations
            .iter()
            .find(|o| !allowed.contains(o))
        {
            Some(o) if present => Err(field_err(
                p(field),
                format!(
                    "{why}; this rule also governs {o}: give it operations = [{}] (or \
                         fewer)",
                    allowed
                        .iter()
                        .map(|a| format!("\"{a}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            _ => Ok(()),
        };
        let payload = "it reads a sign request's payload";
        for (field, present) in [
            ("raw_digest", f.raw_digest),
            ("plain_message", f.plain_message),
            ("chains", f.chains.is_some()),
            ("networks", f.networks.is_some()),
            ("actions", f.actions.is_some()),
            ("destinations_in", f.destinations_in.is_some()),
            ("destinations_not_in", f.destinations_not_in.is_some()),
            ("tokens", f.tokens.is_some()),
            ("methods", f.methods.is_some()),
            ("contracts", f.contracts.is_some()),
            ("min_value", f.min_value.is_some()),
            ("max_value", f.max_value.is_some()),
            ("max_fee", f.max_fee.is_some()),
            ("derivation_paths", f.derivation_paths.is_some()),
            ("within_limits", f.within_limits.is_some()),
            ("over_limits", f.over_limits.is_some()),
        ] {
            only(field, present, &[Operation::Sign], payload)?;
        }
        only(
            "reuse_deleted_id",
            f.reuse_deleted_id,
            &[Operation::Keygen],
            "it reads a keygen request",
        )?;
        for (field, present) in [
            ("min_new_threshold", f.min_new_threshold.is_some()),
            ("max_new_threshold", f.max_new_threshold.is_some()),
            ("min_new_committee", f.min_new_committee.is_some()),
            ("max_new_committee", f.max_new_committee.is_some()),
        ] {
            only(
                field,
                present,
                &[Operation::Keygen, Operation::Reshare],
                "it reads the threshold and committee a keygen or reshare makes",
            )?;
            reshare_deny_only(&p(field), present, f.effect, &operations)?;
        }
        for (field, present) in [
            ("threshold_change", f.threshold_change.is_some()),
            ("committee_change", f.committee_change.is_some()),
        ] {
            only(
                field,
                present,
                &[Operation::Reshare],
                "it compares a reshare's new threshold and committee with the key's",
            )?;
            reshare_deny_only(&p(field), present, f.effect, &operations)?;
        }
        known_names(&p("key_tags"), "key tag", &f.key_tags, tags)?;
        known_names(
            &p("destinations_in"),
            "address book",
            &f.destinations_in,
            books,
        )?;
        known_names(
            &p("destinations_not_in"),
            "address book",
            &f.destinations_not_in,
            books,
        )?;
        one_of(&p("schemes"), "scheme", &f.schemes, &SCHEMES)?;
        one_of(&p("chains"), "chain", &f.chains, &CHAINS)?;
        one_of(
            &p("actions"),
            "action",
            &f.actions,
            &keyrack_plugin::actions::ALL,
        )?;
        one_of(&p("weekdays"), "weekday", &f.weekdays, &WEEKDAYS)?;
        let derivation_patterns = f
            .derivation_paths
            .iter()
            .flatten()
            .map(|s| PathPattern::parse(s).map_err(|m| field_err(p("derivation_paths"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        let hours = f
            .hours_utc
            .as_deref()
            .map(|h| HoursUtc::parse(h).map_err(|m| field_err(p("hours_utc"), m)))
            .transpose()?;
        let within_limits = parse_limits(&p("within_limits"), f.within_limits)?;
        let over_limits = parse_limits(&p("over_limits"), f.over_limits)?;
        Ok(Rule {
            id: f.id,
            effect: f.effect,
            description: f.description,
            operations,
            approvals,
            delay,
            raw_digest: f.raw_digest,
            plain_message: f.plain_message,
            reuse_deleted_id: f.reuse_deleted_id,
            conditions: Conditions {
                initiators: f.initiators,
                roles: f.roles,
                keys: f.keys,
                key_tags: f.key_tags,
                schemes: f.schemes,
                chains: f.chains,
                networks: f.networks,
                actions: f.actions,
                destinations_in: f.destinations_in,
                destinations_not_in: f.destinations_not_in,
                tokens: f.tokens,
                methods: f.methods,
                contracts: f.contracts,
                min_value: f.min_value.map(|a| a.0),
                max_value: f.max_value.map(|a| a.0),
                max_fee: f.max_fee.map(|a| a.0),
                derivation_paths: f.derivation_paths,
                derivation_patterns,
                hours_utc: f.hours_utc,
                hours,
                weekdays: f.weekdays,
                within_limits,
                over_limits,
                min_new_threshold: f.min_new_threshold,
                max_new_threshold: f.max_new_threshold,
                min_new_committee: f.min_new_committee,
                max_new_committee: f.max_new_committee,
                threshold_change: f.threshold_change,
                committee_change: f.committee_change,
            },
        })
    }

    /// The rules, sorted by id.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules
            .binary_search_by(|r| r.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.rules[i])
    }

    /// The policy's description.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The members of an approver group.
    pub fn approver_group(&self, name: &str) -> Option<&[String]> {
        self.approver_groups.get(name).map(Vec::as_slice)
    }

    /// The addresses of an address book.
    pub fn address_book(&self, name: &str) -> Option<&[String]> {
        self.address_books.get(name).map(Vec::as_slice)
    }

    /// The key id patterns of a key tag.
    pub fn key_tag(&self, name: &str) -> Option<&[String]> {
        self.key_tags.get(name).map(Vec::as_slice)
    }
}
