//! Evaluation: a request against every rule, as a set, with a trace of every condition.

use std::collections::BTreeSet;

use keyrack_plugin::Intent;
use serde::Serialize;

use crate::file::{Conditions, Delay, Effect, Limit, Operation, Per, Policy, Rule};
use crate::ledger::{ledger_asset, Ledger, UsageQuery};
use crate::pattern::{glob_match, path_text, same_address};
use crate::time::{hh_mm, weekday, WEEKDAYS};

/// What the policy decides on: the verified request, what the node knows about it (a sign
/// request's decoded intent, a lifecycle request's thresholds and committees), the clock.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// What is asked.
    pub operation: Operation,
    /// SHA-256 of the request body: approvals are bound to it.
    pub request_hash: [u8; 32],
    /// The initiator (manifest id) that signed the request.
    pub initiator: &'a str,
    /// The initiator's roles in the manifest.
    pub roles: &'a [String],
    /// The key id.
    pub key_id: &'a str,
    /// The schemes the request names (sign: exactly one; keygen, reshare, refresh, delete:
    /// one or more; status: none means every scheme of the key).
    pub schemes: &'a [String],
    /// keygen, reshare (and refresh): the thresholds and committees concerned.
    pub lifecycle: Lifecycle<'a>,
    /// The derivation path (hardened indices ≥ 2^31); empty = the root key.
    pub derivation_path: &'a [u32],
    /// Whether the client asks to sign a digest it computed (no message, no decoding).
    pub raw_digest: bool,
    /// The decoded intent; `None` for a plain message or a raw digest.
    pub intent: Option<&'a Intent>,
    /// Now, in ms since the Unix epoch (UTC).
    pub now_ms: u64,
}

/// What a keygen, reshare or refresh makes of a key, as the deciding node knows it.
///
/// The request says what it asks (`new_threshold`, `new_committee`; for a reshare `None`
/// means unchanged); the key's current threshold and committee come from the deciding
/// node's own store (`current`, one entry per scheme of the request it holds). A node that
/// holds no share of the key (one joining its committee) has no `current`: conditions that
/// need it (`threshold_change`, `committee_change`, and the new values of an unchanged
/// threshold or committee) are not judged there — they do not hold. The policy file
/// allows them only in deny rules for reshare, so such a node never allows what the
/// holders deny: every holder takes part in a reshare and judges them itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lifecycle<'a> {
    /// keygen: the threshold asked. reshare: the new threshold asked; `None` = unchanged.
    pub new_threshold: Option<u16>,
    /// keygen: the committee's size (every node of the manifest). reshare: the new
    /// committee's size; `None` = unchanged.
    pub new_committee: Option<u16>,
    /// reshare, refresh: the key's threshold and committee now, per scheme this node holds.
    pub current: &'a [Committee],
    /// keygen: it may re-create a deleted key id.
    pub reuse_deleted_id: bool,
}

/// A key's threshold and committee size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Committee {
    /// Signers needed.
    pub threshold: u16,
    /// Members.
    pub size: u16,
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
    /// Carry it out: these allow and approval rules matched (sorted), every approval
    /// requirement met.
    Allow {
        /// The rules that matched.
        rules: Vec<String>,
        /// The longest delay of the matched approval rules: the request is carried out only
        /// once it has passed since the approvals were met, and any member of a matched
        /// approval rule's group may veto it meanwhile.
        #[serde(skip_serializing_if = "Option::is_none")]
        delay: Option<RuleDelay>,
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

/// The delay an allowed request waits, and the rule that sets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleDelay {
    /// The rule.
    pub rule: String,
    /// The delay.
    #[serde(flatten)]
    pub delay: Delay,
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

    /// `schemes`: every scheme the request names must be listed for an allow or approval
    /// rule to match; any one listed makes a deny rule apply. A request naming none (a status
    /// of every scheme of the key) fails closed.
    fn schemes(&self, listed: &[String], deny: bool) -> Check {
        let asked = self.req.schemes;
        if asked.is_empty() {
            return missing("the request names no scheme (every scheme of the key)");
        }
        let is_listed = |s: &&String| listed.contains(s);
        let (hit, detail) = if deny {
            match asked.iter().find(is_listed) {
                Some(s) => (true, format!("scheme {s} is in {}", list(listed))),
                None => (false, format!("no scheme asked is in {}", list(listed))),
            }
        } else {
            match asked.iter().find(|s| !is_listed(s)) {
                Some(s) => (false, format!("scheme {s} is not in {}", list(listed))),
                None => (
                    true,
                    format!("scheme {} is in {}", asked.join(", "), list(listed)),
                ),
            }
        };
        known(hit, detail)
    }

    /// The threshold (`threshold = true`) or committee size a keygen or reshare makes, per
    /// scheme: the request's value, or the current one where it keeps it (empty when this
    /// node does not know it).
    fn new_values(&self, threshold: bool) -> Vec<u16> {
        let lc = &self.req.lifecycle;
        let asked = if threshold {
            lc.new_threshold
        } else {
            lc.new_committee
        };
        match asked {
            Some(v) => vec![v],
            None => lc
                .current
                .iter()
                .map(|c| if threshold { c.threshold } else { c.size })
                .collect(),
        }
    }

    /// `min_new_*` / `max_new_*`: holds when it holds for any scheme's new value.
    fn new_bound(&self, threshold: bool, bound: u16, at_least: bool) -> Check {
        let what = if threshold {
            "new threshold"
        } else {
            "new committee size"
        };
        let values = self.new_values(threshold);
        if values.is_empty() {
            return known(
                false,
                format!(
                    "the {what} is unchanged and this node holds no share of the key: its \
                     holders judge it"
                ),
            );
        }
        let ok = |v: &u16| if at_least { *v >= bound } else { *v <= bound };
        let (op, not) = if at_least { (">=", "<") } else { ("<=", ">") };
        match values.iter().find(|v| ok(v)) {
            Some(v) => known(true, format!("{what} {v} {op} {bound}")),
            None => known(
                false,
                format!(
                    "{what} {} {not} {bound}",
                    values
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }

    /// `threshold_change` / `committee_change`: how a reshare moves the key's threshold or
    /// committee size, per scheme this node holds; holds when any is listed.
    fn change(&self, threshold: bool, listed: &[String]) -> Check {
        let lc = &self.req.lifecycle;
        if lc.current.is_empty() {
            return known(
                false,
                "this node holds no share of the key: its holders judge the change",
            );
        }
        let names = if threshold {
            ["lower", "same", "raise"]
        } else {
            ["shrink", "same", "grow"]
        };
        let mut seen = Vec::new();
        for c in lc.current {
            let (now, new) = if threshold {
                (c.threshold, lc.new_threshold.unwrap_or(c.threshold))
            } else {
                (c.size, lc.new_committee.unwrap_or(c.size))
            };
            let way = match new.cmp(&now) {
                std::cmp::Ordering::Less => names[0],
                std::cmp::Ordering::Equal => names[1],
                std::cmp::Ordering::Greater => names[2],
            };
            let text = format!("{now} -> {new} ({way})");
            if listed.iter().any(|l| l == way) {
                return known(true, format!("{text} is in {}", list(listed)));
            }
            seen.push(text);
        }
        known(
            false,
            format!("{} not in {}", seen.join(", "), list(listed)),
        )
    }

    fn conditions(&self, c: &Conditions, deny: bool) -> Vec<(&'static str, Check)> {
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
            out.push(("schemes", self.schemes(schemes, deny)));
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
        for (name, bound, threshold, at_least) in [
            ("min_new_threshold", c.min_new_threshold, true, true),
            ("max_new_threshold", c.max_new_threshold, true, false),
            ("min_new_committee", c.min_new_committee, false, true),
            ("max_new_committee", c.max_new_committee, false, false),
        ] {
            if let Some(bound) = bound {
                out.push((name, self.new_bound(threshold, bound, at_least)));
            }
        }
        if let Some(listed) = &c.threshold_change {
            out.push(("threshold_change", self.change(true, listed)));
        }
        if let Some(listed) = &c.committee_change {
            out.push(("committee_change", self.change(false, listed)));
        }
        out
    }

    fn rule(&self, rule: &Rule) -> RuleTrace {
        let deny = rule.effect == Effect::Deny;
        let op = self.req.operation;
        let mut conditions = Vec::new();
        if !rule.operations.contains(&op) {
            // Another kind's rule: nothing else of it is read.
            conditions.push(ConditionTrace {
                condition: "operations".into(),
                holds: false,
                detail: format!(
                    "{op} is not in {}",
                    rule.operations
                        .iter()
                        .map(|o| o.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
            return RuleTrace {
                rule: rule.id.clone(),
                effect: rule.effect,
                matched: false,
                conditions,
                approvals: None,
            };
        }
        let sign = op == Operation::Sign;
        // The re-created-id gate of keygen, as the raw-digest one below.
        if op == Operation::Keygen {
            let reuse = self.req.lifecycle.reuse_deleted_id;
            if deny && rule.reuse_deleted_id {
                conditions.push(ConditionTrace {
                    condition: "reuse_deleted_id".into(),
                    holds: reuse,
                    detail: if reuse {
                        "the keygen may re-create a deleted key id".into()
                    } else {
                        "the keygen does not re-create a deleted key id".into()
                    },
                });
            } else if !deny && reuse {
                conditions.push(ConditionTrace {
                    condition: "reuse_deleted_id".into(),
                    holds: rule.reuse_deleted_id,
                    detail: if rule.reuse_deleted_id {
                        "re-creating a deleted key id allowed by this rule".into()
                    } else {
                        "the keygen may re-create a deleted key id and this rule does not set \
                         reuse_deleted_id = true"
                            .into()
                    },
                });
            }
        }
        // The raw-digest gate: allow/approval rules match a raw digest only with
        // raw_digest = true; a deny rule with raw_digest = true applies to raw digests only.
        // (Rules with raw_digest or plain_message govern sign only, and only a sign request
        // is a raw digest or a plain message.)
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
        let plain = sign && !self.req.raw_digest && self.req.intent.is_none();
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
        for (name, check) in self.conditions(&rule.conditions, deny) {
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
            let delay = matched(Effect::AllowWithApprovals)
                .filter_map(|(t, r)| {
                    r.delay.as_ref().map(|d| RuleDelay {
                        rule: t.rule.clone(),
                        delay: d.clone(),
                    })
                })
                .max_by_key(|d| d.delay.ms);
            match unmet {
                Some(o) => o,
                None if !allowing.is_empty() => Outcome::Allow {
                    rules: allowing,
                    delay,
                },
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

    /// The approver groups of the approval rules that matched (sorted, distinct): a member
    /// of any of them other than the initiator may reject the request, and so stop it,
    /// while it waits for approvals or for its delay.
    pub fn veto_groups(&self) -> Vec<String> {
        let groups: BTreeSet<String> = self
            .trace
            .iter()
            .filter(|t| t.matched)
            .filter_map(|t| t.approvals.as_ref().map(|a| a.group.clone()))
            .collect();
        groups.into_iter().collect()
    }

    /// The outcome in one line.
    pub fn summary(&self) -> String {
        match &self.outcome {
            Outcome::Allow { rules, delay: None } => format!("ALLOW (rules: {})", rules.join(", ")),
            Outcome::Allow {
                rules,
                delay: Some(d),
            } => format!(
                "ALLOW after a delay of {} (rule '{}'; any approver of the rule may veto \
                 meanwhile) (rules: {})",
                d.delay.window,
                d.rule,
                rules.join(", ")
            ),
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
