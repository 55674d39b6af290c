//! Evaluation: a request against every rule, as a set, with a trace of every condition.

use std::collections::BTreeSet;

use keyrack_plugin::Intent;
use serde::Serialize;

use crate::file::{Conditions, Effect, Limit, Per, Policy, Rule};
use crate::ledger::{ledger_asset, Ledger, UsageQuery};
use crate::pattern::{glob_match, path_text, same_address};
use crate::time::{hh_mm, weekday, WEEKDAYS};

/// What the policy decides on: the verified sign request, its decoded intent, the clock.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// SHA-256 of the request body: approvals are bound to it.
    pub request_hash: [u8; 32],
    /// The initiator (manifest id) that signed the request.
    pub initiator: &'a str,
    /// The initiator's roles in the manifest.
    pub roles: &'a [String],
    /// The key id.
    pub key_id: &'a str,
    /// The key's scheme id.
    pub scheme: &'a str,
    /// The derivation path (hardened indices ≥ 2^31); empty = the root key.
    pub derivation_path: &'a [u32],
    /// Whether the client asks to sign a digest it computed (no message, no decoding).
    pub raw_digest: bool,
    /// The decoded intent; `None` for a plain message or a raw digest.
    pub intent: Option<&'a Intent>,
    /// Now, in ms since the Unix epoch (UTC).
    pub now_ms: u64,
}

/// One approval of a request, its signature already verified by the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// The approving initiator.
    pub approver: String,
    /// The request it approves.
    #[serde(with = "hex_32")]
    pub request_hash: [u8; 32],
    /// It counts while `now_ms < expires_at_ms`.
    pub expires_at_ms: u64,
}

mod hex_32 {
    pub fn serialize<S: serde::Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

/// The verdict on one condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConditionTrace {
    /// The condition's key in the policy file (`max_value`, `destinations_in`, …).
    pub condition: String,
    /// Whether it holds (after fail-closed for a missing field).
    pub holds: bool,
    /// Why, for people: `value 5000000 > max_value 1000000`.
    pub detail: String,
}

/// How an approval rule stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApprovalTrace {
    /// The approver group.
    pub group: String,
    /// How many are needed.
    pub required: u16,
    /// The approvers counted (sorted).
    pub have: Vec<String>,
    /// Approvals not counted, each with why.
    pub ignored: Vec<String>,
}

/// The verdict on one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleTrace {
    /// The rule's id.
    pub rule: String,
    /// Its effect.
    pub effect: Effect,
    /// Whether every condition held.
    pub matched: bool,
    /// Every condition, in a fixed order.
    pub conditions: Vec<ConditionTrace>,
    /// For a matched allow-with-approvals rule: the approvals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalTrace>,
}

/// The outcome of an evaluation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Sign: these allow and approval rules matched (sorted), every approval requirement met.
    Allow {
        /// The rules that matched.
        rules: Vec<String>,
    },
    /// Not yet: `rule` (the first unmet approval rule by id) needs `required` approvers of
    /// `group`; `have` are the valid ones counted so far.
    NeedsApprovals {
        /// The rule.
        rule: String,
        /// The approver group.
        group: String,
        /// How many are needed.
        required: u16,
        /// The valid approvers counted.
        have: Vec<String>,
    },
    /// Refuse.
    Deny {
        /// The deny rule that matched (the first by id), `None` for the default deny.
        rule: Option<String>,
        /// Why, for people.
        reason: String,
    },
}

impl Outcome {
    /// `allow`, `needs_approvals`, `deny`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Allow { .. } => "allow",
            Outcome::NeedsApprovals { .. } => "needs_approvals",
            Outcome::Deny { .. } => "deny",
        }
    }
}

/// An evaluation: the outcome and every rule's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Every rule, sorted by id.
    pub trace: Vec<RuleTrace>,
}

/// A condition's verdict before fail-closed: `None` = a field it reads is missing.
struct Check {
    holds: Option<bool>,
    detail: String,
}

fn known(holds: bool, detail: impl Into<String>) -> Check {
    Check {
        holds: Some(holds),
        detail: detail.into(),
    }
}

fn missing(detail: impl Into<String>) -> Check {
    Check {
        holds: None,
        detail: detail.into(),
    }
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

/// What [`Check`]s read.
struct Ctx<'a, 'r> {
    policy: &'a Policy,
    req: &'a Request<'r>,
    ledger: &'a dyn Ledger,
}

const NO_INTENT: &str = "the request has no decoded intent (a plain message or raw digest)";

impl Ctx<'_, '_> {
    fn intent(&self) -> Result<&Intent, Check> {
        self.req.intent.ok_or_else(|| missing(NO_INTENT))
    }

    fn chain(&self) -> &str {
        self.req.intent.map(|i| i.chain.as_str()).unwrap_or("")
    }

    fn in_book(&self, book: &str, address: &str) -> bool {
        self.policy
            .address_book(book)
            .unwrap_or(&[])
            .iter()
            .any(|a| same_address(self.chain(), a, address))
    }

    fn key_in_tag(&self, tag: &str) -> Option<String> {
        self.policy
            .key_tag(tag)
            .unwrap_or(&[])
            .iter()
            .find(|p| glob_match(p, self.req.key_id))
            .cloned()
    }

    fn destinations(&self, books: &[String], want_in: bool) -> Check {
        let intent = match self.intent() {
            Ok(i) => i,
            Err(c) => return c,
        };
        if intent.transfers.is_empty() {
            return missing("the intent has no transfers, so no destination");
        }
        for t in &intent.transfers {
            let hit = books.iter().find(|b| self.in_book(b, &t.to));
            match (want_in, hit) {
                (true, None) => {
                    return known(false, format!("{} is in none of {}", t.to, list(books)))
                }
                (false, Some(b)) => return known(false, format!("{} is in {b}", t.to)),
                _ => {}
            }
        }
        let n = intent.transfers.len();
        if want_in {
            known(
                true,
                format!("all {n} destination(s) are in {}", list(books)),
            )
        } else {
            known(
                true,
                format!("none of {n} destination(s) is in {}", list(books)),
            )
        }
    }

    fn intent_field(
        &self,
        name: &str,
        get: impl Fn(&Intent) -> Option<String>,
        allowed: &[String],
        address_like: bool,
    ) -> Check {
        let intent = match self.intent() {
            Ok(i) => i,
            Err(c) => return c,
        };
        let Some(v) = get(intent) else {
            return missing(format!("{name} not produced by the decoder"));
        };
        let hit = allowed.iter().any(|a| {
            if address_like {
                same_address(&intent.chain, a, &v)
            } else {
                *a == v
            }
        });
        if hit {
            known(true, format!("{name} {v} is listed"))
        } else {
            known(false, format!("{name} {v} is not in {}", list(allowed)))
        }
    }

    fn value(&self) -> Result<u128, Check> {
        let intent = self.intent()?;
        intent
            .value()
            .ok_or_else(|| missing("value not produced: the transfers move several assets"))
    }

    /// One limit: `Some(true)` = within.
    fn limit(&self, limit: &Limit) -> Check {
        let req = self.req;
        let since_ms = req.now_ms.saturating_sub(limit.window_ms);
        // (destination, asset, amount of this request) per scope queried.
        let mut scopes: Vec<(Option<&str>, Option<String>, u128)> = Vec::new();
        let needs_value = limit.max_value.is_some();
        let intent = req.intent;
        let intent_chain = intent.map_or("", |i| i.chain.as_str());
        let qualified = |asset: &str| ledger_asset(intent_chain, asset);
        match limit.per {
            Per::Key | Per::Initiator => {
                if needs_value {
                    let value = match self.value() {
                        Ok(v) => v,
                        Err(c) => return c,
                    };
                    scopes.push((None, intent.and_then(|i| i.asset()).map(qualified), value));
                } else {
                    scopes.push((None, None, 0));
                }
            }
            Per::Destination => {
                let Some(intent) = intent else {
                    return missing(NO_INTENT);
                };
                if intent.transfers.is_empty() {
                    return missing("the intent has no transfers, so no destination");
                }
                let asset = if needs_value {
                    match intent.asset() {
                        Some(a) => Some(qualified(a)),
                        None => {
                            return missing("value not produced: the transfers move several assets")
                        }
                    }
                } else {
                    None
                };
                let dests: BTreeSet<&str> =
                    intent.transfers.iter().map(|t| t.to.as_str()).collect();
                for d in dests {
                    let amount = intent
                        .transfers
                        .iter()
                        .filter(|t| t.to == d)
                        .fold(0u128, |s, t| s.saturating_add(t.amount));
                    scopes.push((Some(d), asset.clone(), amount));
                }
            }
        }
        let mut details = Vec::new();
        let mut within = true;
        for (destination, asset, amount) in scopes {
            let q = UsageQuery {
                per: limit.per,
                key_id: req.key_id,
                initiator: req.initiator,
                destination,
                asset: asset.as_deref(),
                since_ms,
            };
            let usage = match self.ledger.usage(&q) {
                Ok(u) => u,
                Err(e) => return missing(format!("ledger error ({e})")),
            };
            let scope = match (limit.per, destination) {
                (Per::Key, _) => format!("key {}", req.key_id),
                (Per::Initiator, _) => format!("initiator {}", req.initiator),
                (Per::Destination, d) => format!("destination {}", d.unwrap_or("")),
            };
            let mut parts = Vec::new();
            if let Some(max) = limit.max_value {
                let total = usage.value.saturating_add(amount);
                let ok = total <= max;
                within &= ok;
                parts.push(format!(
                    "value {} + {amount} = {total} {} max_value {max}",
                    usage.value,
                    if ok { "<=" } else { ">" }
                ));
            }
            if let Some(max) = limit.max_count {
                let total = usage.count.saturating_add(1);
                let ok = total <= max;
                within &= ok;
                parts.push(format!(
                    "count {} + 1 = {total} {} max_count {max}",
                    usage.count,
                    if ok { "<=" } else { ">" }
                ));
            }
            details.push(format!(
                "{scope} in the last {}: {}",
                limit.window,
                parts.join(", ")
            ));
        }
        known(within, details.join("; "))
    }

    fn limits(&self, limits: &[Limit], over: bool) -> Check {
        let checks: Vec<Check> = limits.iter().map(|l| self.limit(l)).collect();
        let detail = limits
            .iter()
            .zip(&checks)
            .map(|(l, c)| {
                let verdict = match c.holds {
                    Some(true) => "within",
                    Some(false) => "over",
                    None => "unknown",
                };
                format!("[{}] {verdict}: {}", l.describe(), c.detail)
            })
            .collect::<Vec<_>>()
            .join(" | ");
        let states: Vec<Option<bool>> = checks.iter().map(|c| c.holds.map(|w| w != over)).collect();
        // within_limits: all within (AND); over_limits: any over (OR). Unknown = missing.
        let holds = if over {
            if states.contains(&Some(true)) {
                Some(true)
            } else if states.contains(&None) {
                None
            } else {
                Some(false)
            }
        } else if states.contains(&Some(false)) {
            Some(false)
        } else if states.contains(&None) {
            None
        } else {
            Some(true)
        };
        Check { holds, detail }
    }

    fn conditions(&self, c: &Conditions) -> Vec<(&'static str, Check)> {
        let req = self.req;
        let mut out = Vec::new();
        if let Some(ids) = &c.initiators {
            let hit = ids.iter().any(|i| i == req.initiator);
            out.push((
                "initiators",
                known(
                    hit,
                    format!(
                        "initiator {} {} {}",
                        req.initiator,
                        if hit { "is in" } else { "is not in" },
                        list(ids)
                    ),
                ),
            ));
        }
        if let Some(roles) = &c.roles {
            let hit = req.roles.iter().find(|r| roles.contains(r));
            out.push((
                "roles",
                match hit {
                    Some(r) => known(true, format!("initiator holds role {r}")),
                    None => known(
                        false,
                        format!(
                            "initiator holds none of {} (has: {})",
                            list(roles),
                            if req.roles.is_empty() {
                                "no roles".into()
                            } else {
                                list(req.roles)
                            }
                        ),
                    ),
                },
            ));
        }
        if let Some(pats) = &c.keys {
            let hit = pats.iter().find(|p| glob_match(p, req.key_id));
            out.push((
                "keys",
                match hit {
                    Some(p) => known(true, format!("key {} matches {p}", req.key_id)),
                    None => known(
                        false,
                        format!("key {} matches none of {}", req.key_id, list(pats)),
                    ),
                },
            ));
        }
        if let Some(tags) = &c.key_tags {
            let hit = tags.iter().find_map(|t| self.key_in_tag(t).map(|p| (t, p)));
            out.push((
                "key_tags",
                match hit {
                    Some((t, p)) => known(true, format!("key {} is tagged {t} ({p})", req.key_id)),
                    None => known(
                        false,
                        format!("key {} has none of the tags {}", req.key_id, list(tags)),
                    ),
                },
            ));
        }
        if let Some(schemes) = &c.schemes {
            let hit = schemes.iter().any(|s| s == req.scheme);
            out.push((
                "schemes",
                known(
                    hit,
                    format!(
                        "scheme {} {} {}",
                        req.scheme,
                        if hit { "is in" } else { "is not in" },
                        list(schemes)
                    ),
                ),
            ));
        }
        if let Some(chains) = &c.chains {
            out.push((
                "chains",
                match req.intent {
                    Some(i) => {
                        let hit = chains.contains(&i.chain);
                        known(
                            hit,
                            format!(
                                "chain {} {} {}",
                                i.chain,
                                if hit { "is in" } else { "is not in" },
                                list(chains)
                            ),
                        )
                    }
                    None => Check {
                        holds: None,
                        detail: "a plain message or raw digest has no chain".into(),
                    },
                },
            ));
        }
        if let Some(nets) = &c.networks {
            out.push((
                "networks",
                self.intent_field("network", |i| i.network.clone(), nets, false),
            ));
        }
        if let Some(actions) = &c.actions {
            out.push((
                "actions",
                self.intent_field("action", |i| Some(i.action.clone()), actions, false),
            ));
        }
        if let Some(books) = &c.destinations_in {
            out.push(("destinations_in", self.destinations(books, true)));
        }
        if let Some(books) = &c.destinations_not_in {
            out.push(("destinations_not_in", self.destinations(books, false)));
        }
        if let Some(tokens) = &c.tokens {
            let check = match self.intent() {
                Err(c) => c,
                Ok(i) if i.transfers.is_empty() => {
                    missing("token not produced: the intent moves nothing")
                }
                Ok(i) => match i.asset() {
                    None => missing("token not produced: the transfers move several assets"),
                    Some(_) => {
                        self.intent_field("token", |i| i.asset().map(str::to_owned), tokens, true)
                    }
                },
            };
            out.push(("tokens", check));
        }
        if let Some(methods) = &c.methods {
            out.push((
                "methods",
                self.intent_field("method", |i| i.method.clone(), methods, false),
            ));
        }
        if let Some(contracts) = &c.contracts {
            out.push((
                "contracts",
                self.intent_field("contract", |i| i.contract.clone(), contracts, true),
            ));
        }
        if let Some(min) = c.min_value {
            out.push((
                "min_value",
                match self.value() {
                    Err(c) => c,
                    Ok(v) => known(
                        v >= min,
                        format!(
                            "value {v} {} min_value {min}",
                            if v >= min { ">=" } else { "<" }
                        ),
                    ),
                },
            ));
        }
        if let Some(max) = c.max_value {
            out.push((
                "max_value",
                match self.value() {
                    Err(c) => c,
                    Ok(v) => known(
                        v <= max,
                        format!(
                            "value {v} {} max_value {max}",
                            if v <= max { "<=" } else { ">" }
                        ),
                    ),
                },
            ));
        }
        if let Some(max) = c.max_fee {
            let check = match self.intent() {
                Err(c) => c,
                Ok(i) => match i.fee {
                    None => missing("fee not produced by the decoder"),
                    Some(f) => known(
                        f <= max,
                        format!(
                            "fee {f} {} max_fee {max}",
                            if f <= max { "<=" } else { ">" }
                        ),
                    ),
                },
            };
            out.push(("max_fee", check));
        }
        if let Some(pats) = &c.derivation_paths {
            let path = path_text(req.derivation_path);
            let hit = c
                .derivation_patterns
                .iter()
                .find(|p| p.matches(req.derivation_path));
            out.push((
                "derivation_paths",
                match hit {
                    Some(p) => known(true, format!("path {path} matches {}", p.text)),
                    None => known(false, format!("path {path} matches none of {}", list(pats))),
                },
            ));
        }
        if let (Some(text), Some(hours)) = (&c.hours_utc, &c.hours) {
            let now = hh_mm(req.now_ms);
            let hit = hours.contains(req.now_ms);
            out.push((
                "hours_utc",
                known(
                    hit,
                    format!(
                        "{now} UTC is {} {text}",
                        if hit { "within" } else { "outside" }
                    ),
                ),
            ));
        }
        if let Some(days) = &c.weekdays {
            let today = WEEKDAYS[weekday(req.now_ms)];
            let hit = days.iter().any(|d| d == today);
            out.push((
                "weekdays",
                known(
                    hit,
                    format!(
                        "{today} (UTC) {} {}",
                        if hit { "is in" } else { "is not in" },
                        list(days)
                    ),
                ),
            ));
        }
        if let Some(limits) = &c.within_limits {
            out.push(("within_limits", self.limits(limits, false)));
        }
        if let Some(limits) = &c.over_limits {
            out.push(("over_limits", self.limits(limits, true)));
        }
        out
    }

    fn rule(&self, rule: &Rule) -> RuleTrace {
        let deny = rule.effect == Effect::Deny;
        let mut conditions = Vec::new();
        // The raw-digest gate: allow/approval rules match a raw digest only with
        // raw_digest = true; a deny rule with raw_digest = true applies to raw digests only.
        if deny && rule.raw_digest {
            let holds = self.req.raw_digest;
            conditions.push(ConditionTrace {
                condition: "raw_digest".into(),
                holds,
                detail: if holds {
                    "the request is a raw digest".into()
                } else {
                    "the request is not a raw digest".into()
                },
            });
        } else if !deny && self.req.raw_digest {
            conditions.push(ConditionTrace {
                condition: "raw_digest".into(),
                holds: rule.raw_digest,
                detail: if rule.raw_digest {
                    "raw digest allowed by this rule".into()
                } else {
                    "the request is a raw digest and this rule does not set raw_digest = true"
                        .into()
                },
            });
        }
        // The plain-message gate, the same way: opaque bytes match an allow/approval rule
        // only with plain_message = true; a deny rule with it applies to plain messages only.
        let plain = !self.req.raw_digest && self.req.intent.is_none();
        if deny && rule.plain_message {
            conditions.push(ConditionTrace {
                condition: "plain_message".into(),
                holds: plain,
                detail: if plain {
                    "the request is a plain message".into()
                } else {
                    "the request is not a plain message".into()
                },
            });
        } else if !deny && plain {
            conditions.push(ConditionTrace {
                condition: "plain_message".into(),
                holds: rule.plain_message,
                detail: if rule.plain_message {
                    "plain message allowed by this rule".into()
                } else {
                    "the request is a plain message (no chain decoded it) and this rule does not \
                     set plain_message = true"
                        .into()
                },
            });
        }
        for (name, check) in self.conditions(&rule.conditions) {
            let (holds, detail) = match check.holds {
                Some(h) => (h, check.detail),
                None if deny => (
                    true,
                    format!("{}: fails closed (the deny applies)", check.detail),
                ),
                None => (false, format!("{}: fails closed", check.detail)),
            };
            conditions.push(ConditionTrace {
                condition: name.into(),
                holds,
                detail,
            });
        }
        RuleTrace {
            rule: rule.id.clone(),
            effect: rule.effect,
            matched: conditions.iter().all(|c| c.holds),
            conditions,
            approvals: None,
        }
    }

    fn approvals(&self, rule: &Rule, approvals: &[Approval]) -> ApprovalTrace {
        let Some(req) = &rule.approvals else {
            return ApprovalTrace {
                group: String::new(),
                required: 0,
                have: Vec::new(),
                ignored: Vec::new(),
            };
        };
        let members = self.policy.approver_group(&req.group).unwrap_or(&[]);
        let mut have = BTreeSet::new();
        let mut ignored = Vec::new();
        for a in approvals {
            let why = if a.request_hash != self.req.request_hash {
                Some("approves another request")
            } else if a.expires_at_ms <= self.req.now_ms {
                Some("expired")
            } else if a.approver == self.req.initiator {
                Some("is the request's initiator")
            } else if !members.contains(&a.approver) {
                Some("not in the group")
            } else {
                None
            };
            match why {
                Some(why) => ignored.push(format!("{}: {why}", a.approver)),
                None => {
                    have.insert(a.approver.clone());
                }
            }
        }
        ApprovalTrace {
            group: req.group.clone(),
            required: req.required,
            have: have.into_iter().collect(),
            ignored,
        }
    }
}

impl Policy {
    /// Decides on `req`. Default deny; any matching deny wins; otherwise the most restrictive
    /// matching effect; rule order never matters; a condition on a missing field fails
    /// closed (see the crate docs).
    pub fn evaluate(
        &self,
        req: &Request<'_>,
        approvals: &[Approval],
        ledger: &dyn Ledger,
    ) -> Decision {
        let ctx = Ctx {
            policy: self,
            req,
            ledger,
        };
        let mut trace: Vec<RuleTrace> = self.rules.iter().map(|r| ctx.rule(r)).collect();
        for (t, r) in trace.iter_mut().zip(&self.rules) {
            if t.matched && r.effect == Effect::AllowWithApprovals {
                t.approvals = Some(ctx.approvals(r, approvals));
            }
        }
        let matched = |e: Effect| {
            trace
                .iter()
                .zip(&self.rules)
                .filter(move |(t, r)| t.matched && r.effect == e)
        };
        let outcome = if let Some((t, r)) = matched(Effect::Deny).next() {
            Outcome::Deny {
                rule: Some(t.rule.clone()),
                reason: match &r.description {
                    Some(d) => format!("denied by rule '{}': {d}", r.id),
                    None => format!("denied by rule '{}'", r.id),
                },
            }
        } else {
            let unmet = matched(Effect::AllowWithApprovals).find_map(|(t, _)| {
                let a = t.approvals.as_ref()?;
                (a.have.len() < usize::from(a.required)).then(|| Outcome::NeedsApprovals {
                    rule: t.rule.clone(),
                    group: a.group.clone(),
                    required: a.required,
                    have: a.have.clone(),
                })
            });
            let allowing: Vec<String> = trace
                .iter()
                .filter(|t| t.matched && t.effect != Effect::Deny)
                .map(|t| t.rule.clone())
                .collect();
            match unmet {
                Some(o) => o,
                None if !allowing.is_empty() => Outcome::Allow { rules: allowing },
                None => Outcome::Deny {
                    rule: None,
                    reason: "no rule allows this request (default deny)".into(),
                },
            }
        };
        Decision { outcome, trace }
    }
}

impl Decision {
    /// Whether the outcome is allow.
    pub fn is_allowed(&self) -> bool {
        matches!(self.outcome, Outcome::Allow { .. })
    }

    /// The outcome in one line.
    pub fn summary(&self) -> String {
        match &self.outcome {
            Outcome::Allow { rules } => format!("ALLOW (rules: {})", rules.join(", ")),
            Outcome::NeedsApprovals {
                rule,
                group,
                required,
                have,
            } => {
                format!(
                "NEEDS APPROVALS: rule '{rule}' needs {required} of group '{group}', has {} ({})",
                have.len(),
                if have.is_empty() { "none".to_owned() } else { have.join(", ") }
            )
            }
            Outcome::Deny { reason, .. } => format!("DENY: {reason}"),
        }
    }

    /// The full rule trace for people, as `keyrack policy explain` prints it.
    pub fn explain(&self) -> String {
        let mut s = format!("outcome: {}\n", self.summary());
        s.push_str(&format!(
            "rules ({}, sorted by id; order never matters):\n",
            self.trace.len()
        ));
        for t in &self.trace {
            s.push_str(&format!(
                "  {} {} [{}]{}\n",
                if t.matched { "MATCH" } else { "-    " },
                t.rule,
                t.effect,
                if t.conditions.is_empty() {
                    " (no conditions: matches every request)"
                } else {
                    ""
                }
            ));
            for c in &t.conditions {
                s.push_str(&format!(
                    "      {} {}: {}\n",
                    if c.holds { "ok  " } else { "FAIL" },
                    c.condition,
                    c.detail
                ));
            }
            if let Some(a) = &t.approvals {
                s.push_str(&format!(
                    "      approvals: {} of {} required from group '{}'{}\n",
                    a.have.len(),
                    a.required,
                    a.group,
                    if a.have.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", a.have.join(", "))
                    }
                ));
                for i in &a.ignored {
                    s.push_str(&format!("      ignored approval {i}\n"));
                }
            }
        }
        s
    }
}
