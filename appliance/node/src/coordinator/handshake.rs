//! The prepare / ready / start handshake of one request, at one node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::ranking::{leader_order, session_id};

/// Who must take part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Every member (keygen, reshare, refresh, delete).
    All,
    /// The first `t` members ready (signing).
    Threshold(u16),
}

/// A leader's decision: who runs attempt `attempt`, in member order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Start {
    /// The request.
    pub request_id: String,
    /// Attempt number (0 = first leader).
    pub attempt: u32,
    /// The leader that decided.
    pub leader: String,
    /// Participants, in member (key index) order.
    pub participants: Vec<String>,
    /// Execution id of the session.
    pub session: [u8; 32],
}

/// What the node must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `Ready` for `attempt` to `to` (the attempt's leader; possibly this node).
    SendReady {
        /// The leader.
        to: String,
        /// The attempt.
        attempt: u32,
    },
    /// This node leads and has enough ready: publish this `Start` to every member.
    PublishStart(Start),
    /// Run the session.
    Run(Start),
    /// A valid `Start` left this node out: stand down (it neither signs nor waits).
    StandDown,
    /// Every leader was tried and none started the request.
    Fail(String),
}

/// The handshake state of one request at one node.
#[derive(Debug)]
pub struct Handshake {
    request_id: String,
    me: String,
    members: Vec<String>,
    order: Vec<String>,
    need: Need,
    timeout: Duration,
    attempt: u32,
    deadline: Instant,
    ready: bool,
    finished: bool,
    /// Ready senders per attempt, in arrival order (only kept for attempts this node leads).
    readies: BTreeMap<u32, Vec<String>>,
}

impl Handshake {
    /// Starts the handshake of `request_id` among `members` (in key index order), of which
    /// `need` must take part; each leader gets `leader_timeout` to start the request.
    pub fn new(
        request_id: &str,
        me: &str,
        members: &[String],
        need: Need,
        now: Instant,
        leader_timeout: Duration,
    ) -> Self {
        Handshake {
            request_id: request_id.to_owned(),
            me: me.to_owned(),
            members: members.to_vec(),
            order: leader_order(request_id, members)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            need,
            timeout: leader_timeout,
            attempt: 0,
            deadline: now + leader_timeout,
            ready: false,
            finished: false,
            readies: BTreeMap::new(),
        }
    }

    /// The leader of an attempt.
    pub fn leader(&self, attempt: u32) -> Option<&str> {
        self.order.get(attempt as usize).map(String::as_str)
    }

    /// This node has checked the request and will take part.
    pub fn accept(&mut self) -> Vec<Action> {
        self.ready = true;
        self.send_ready()
    }

    fn send_ready(&mut self) -> Vec<Action> {
        let Some(leader) = self.leader(self.attempt).map(str::to_owned) else {
            return vec![];
        };
        if leader == self.me {
            let me = self.me.clone();
            self.on_ready(&me, self.attempt)
        } else {
            vec![Action::SendReady {
                to: leader,
                attempt: self.attempt,
            }]
        }
    }

    /// A (verified) `Ready` from `from` for `attempt`.
    pub fn on_ready(&mut self, from: &str, attempt: u32) -> Vec<Action> {
        if self.finished
            || self.leader(attempt) != Some(self.me.as_str())
            || !self.members.iter().any(|m| m == from)
        {
            return vec![];
        }
        let list = self.readies.entry(attempt).or_default();
        if !list.iter().any(|r| r == from) {
            list.push(from.to_owned());
        }
        let chosen: Option<Vec<&String>> = match self.need {
            Need::All => (list.len() == self.members.len()).then(|| list.iter().collect()),
            Need::Threshold(t) => {
                (list.len() >= usize::from(t)).then(|| list.iter().take(usize::from(t)).collect())
            }
        };
        let Some(chosen) = chosen else { return vec![] };
        let participants: Vec<String> = self
            .members
            .iter()
            .filter(|m| chosen.contains(m))
            .cloned()
            .collect();
        let start = Start {
            request_id: self.request_id.clone(),
            attempt,
            leader: self.me.clone(),
            session: session_id(&self.request_id, attempt, &self.me, &participants),
            participants,
        };
        let mut actions = vec![Action::PublishStart(start.clone())];
        actions.extend(self.on_start(start));
        actions
    }

    /// A (verified) `Start`, sent by `from`. Accepted for any attempt, even one this node
    /// has moved past: nodes start their clocks when each takes the request, so a slow
    /// leader's valid `Start` may arrive after a faster node's deadline. A node runs at most one
    /// `Start`; two different ones cannot both complete a signing, since t > n/2.
    pub fn on_start(&mut self, start: Start) -> Vec<Action> {
        let valid = !self.finished
            && start.request_id == self.request_id
            && self.leader(start.attempt) == Some(start.leader.as_str())
            && self.participants_valid(&start.participants)
            && start.session
                == session_id(
                    &self.request_id,
                    start.attempt,
                    &start.leader,
                    &start.participants,
                );
        if !valid {
            return vec![];
        }
        self.finished = true;
        if self.ready && start.participants.contains(&self.me) {
            vec![Action::Run(start)]
        } else {
            vec![Action::StandDown]
        }
    }

    fn participants_valid(&self, participants: &[String]) -> bool {
        let in_order: Vec<&String> = self
            .members
            .iter()
            .filter(|m| participants.contains(m))
            .collect();
        let size_ok = match self.need {
            Need::All => participants.len() == self.members.len(),
            Need::Threshold(t) => participants.len() == usize::from(t),
        };
        size_ok
            && in_order.len() == participants.len()
            && in_order.iter().zip(participants).all(|(a, b)| *a == b)
    }

    /// Time passes: if the current leader missed its deadline, move to the next one.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        if self.finished || now < self.deadline {
            return vec![];
        }
        self.attempt += 1;
        self.deadline = now + self.timeout;
        if self.attempt as usize >= self.order.len() {
            self.finished = true;
            return vec![Action::Fail(format!(
                "no leader started the request after {} attempts",
                self.attempt
            ))];
        }
        if self.ready {
            self.send_ready()
        } else {
            vec![]
        }
    }

    /// When the current leader's time runs out.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the handshake is over (started, stood down or failed).
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(2);

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node{i}")).collect()
    }

    /// Runs the handshake among `alive` nodes (others are silent), delivering messages
    /// instantly; returns what each node ends with.
    fn simulate(
        n: usize,
        need: Need,
        alive: &[&str],
        refusing: &[&str],
    ) -> BTreeMap<String, Action> {
        let m = members(n);
        let mut now = Instant::now();
        let mut nodes: BTreeMap<String, Handshake> = alive
            .iter()
            .map(|a| (a.to_string(), Handshake::new("req-7", a, &m, need, now, T)))
            .collect();
        let mut queue: Vec<(String, Action)> = vec![];
        for (name, h) in nodes.iter_mut() {
            if !refusing.contains(&name.as_str()) {
                queue.extend(h.accept().into_iter().map(|a| (name.clone(), a)));
            }
        }
        let mut outcome = BTreeMap::new();
        for _round in 0..50 {
            while let Some((from, action)) = queue.pop() {
                match action {
                    Action::SendReady { to, attempt } => {
                        if let Some(h) = nodes.get_mut(&to) {
                            queue.extend(
                                h.on_ready(&from, attempt)
                                    .into_iter()
                                    .map(|a| (to.clone(), a)),
                            );
                        }
                    }
                    Action::PublishStart(start) => {
                        for (name, h) in nodes.iter_mut().filter(|(name, _)| **name != from) {
                            queue.extend(
                                h.on_start(start.clone())
                                    .into_iter()
                                    .map(|a| (name.clone(), a)),
                            );
                        }
                    }
                    other => {
                        outcome.insert(from, other);
                    }
                }
            }
            if nodes.values().all(Handshake::is_finished) {
                break;
            }
            now += T;
            for (name, h) in nodes.iter_mut() {
                queue.extend(h.on_tick(now).into_iter().map(|a| (name.clone(), a)));
            }
        }
        outcome
    }

    fn run_of(outcome: &BTreeMap<String, Action>) -> Vec<Start> {
        let mut starts: Vec<Start> = outcome
            .values()
            .filter_map(|a| {
                if let Action::Run(s) = a {
                    Some(s.clone())
                } else {
                    None
                }
            })
            .collect();
        starts.dedup();
        starts
    }

    #[test]
    fn signing_picks_t_ready_nodes_in_member_order_and_the_rest_stand_down() {
        let outcome = simulate(3, Need::Threshold(2), &["node0", "node1", "node2"], &[]);
        let starts = run_of(&outcome);
        assert_eq!(
            starts.len(),
            1,
            "everyone runs the same session: {outcome:?}"
        );
        let s = &starts[0];
        assert_eq!(s.participants.len(), 2);
        let mut sorted = s.participants.clone();
        sorted.sort();
        assert_eq!(sorted, s.participants, "member order");
        assert_eq!(
            outcome
                .values()
                .filter(|a| matches!(a, Action::Run(_)))
                .count(),
            2
        );
        assert_eq!(
            outcome
                .values()
                .filter(|a| matches!(a, Action::StandDown))
                .count(),
            1
        );
        assert_eq!(s.attempt, 0);
    }

    #[test]
    fn keygen_needs_every_member() {
        let outcome = simulate(3, Need::All, &["node0", "node1", "node2"], &[]);
        let starts = run_of(&outcome);
        assert_eq!(starts.len(), 1);
        assert_eq!(starts[0].participants, members(3));
        assert_eq!(
            outcome
                .values()
                .filter(|a| matches!(a, Action::Run(_)))
                .count(),
            3
        );
    }

    #[test]
    fn a_silent_leader_is_replaced_by_the_next_ranked_node() {
        let m = members(3);
        let first = leader_order("req-7", &m)[0].to_owned();
        let alive: Vec<&str> = m
            .iter()
            .map(String::as_str)
            .filter(|n| *n != first)
            .collect();
        let outcome = simulate(3, Need::Threshold(2), &alive, &[]);
        let starts = run_of(&outcome);
        assert_eq!(starts.len(), 1, "{outcome:?}");
        assert_eq!(starts[0].attempt, 1);
        assert_eq!(starts[0].leader, leader_order("req-7", &m)[1]);
        assert!(!starts[0].participants.contains(&first));
    }

    #[test]
    fn keygen_with_a_member_down_fails_after_every_leader_was_tried() {
        let outcome = simulate(3, Need::All, &["node0", "node1"], &[]);
        assert!(run_of(&outcome).is_empty());
        assert!(
            outcome.values().all(|a| matches!(a, Action::Fail(_))),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_refusing_node_is_left_out_of_signing() {
        let outcome = simulate(
            3,
            Need::Threshold(2),
            &["node0", "node1", "node2"],
            &["node1"],
        );
        let starts = run_of(&outcome);
        assert_eq!(starts.len(), 1);
        assert_eq!(starts[0].participants, ["node0", "node2"]);
        assert_eq!(outcome.get("node1"), Some(&Action::StandDown));
    }

    #[test]
    fn forged_or_stale_starts_are_ignored() {
        let m = members(3);
        let now = Instant::now();
        let mut h = Handshake::new("req-7", "node0", &m, Need::Threshold(2), now, T);
        h.accept();
        let leader = h.leader(0).unwrap().to_owned();
        let participants = vec!["node0".to_owned(), "node1".to_owned()];
        let good = Start {
            request_id: "req-7".into(),
            attempt: 0,
            leader: leader.clone(),
            session: session_id("req-7", 0, &leader, &participants),
            participants: participants.clone(),
        };
        // Not the leader of that attempt.
        let other = m.iter().find(|n| **n != leader).unwrap().clone();
        assert!(h
            .on_start(Start {
                leader: other,
                ..good.clone()
            })
            .is_empty());
        // Wrong session id, wrong size, out of member order, other request.
        assert!(h
            .on_start(Start {
                session: [0; 32],
                ..good.clone()
            })
            .is_empty());
        let three = m.clone();
        assert!(h
            .on_start(Start {
                session: session_id("req-7", 0, &leader, &three),
                participants: three,
                ..good.clone()
            })
            .is_empty());
        let reversed = vec!["node1".to_owned(), "node0".to_owned()];
        assert!(h
            .on_start(Start {
                session: session_id("req-7", 0, &leader, &reversed),
                participants: reversed,
                ..good.clone()
            })
            .is_empty());
        assert!(h
            .on_start(Start {
                request_id: "req-8".into(),
                ..good.clone()
            })
            .is_empty());
        // The real one runs, once.
        assert_eq!(h.on_start(good.clone()), vec![Action::Run(good.clone())]);
        assert!(h.on_start(good).is_empty());
    }

    #[test]
    fn a_start_from_a_slower_leader_is_accepted_after_moving_on() {
        let m = members(3);
        let t0 = Instant::now();
        let leader = leader_order("req-7", &m)[0].to_owned();
        let other = m.iter().find(|n| **n != leader).unwrap().clone();
        // `other` took the request early; its first leader's deadline has passed already.
        let mut h = Handshake::new("req-7", &other, &m, Need::Threshold(2), t0, T);
        h.accept();
        h.on_tick(t0 + T);
        assert!(!h.is_finished(), "moved on to attempt 1");
        let mut participants = vec![leader.clone(), other.clone()];
        participants.sort_by_key(|p| m.iter().position(|q| q == p));
        let start = Start {
            request_id: "req-7".into(),
            attempt: 0,
            leader: leader.clone(),
            session: session_id("req-7", 0, &leader, &participants),
            participants,
        };
        assert_eq!(h.on_start(start.clone()), vec![Action::Run(start)]);
    }

    #[test]
    fn readies_from_non_members_do_not_count() {
        let m = members(3);
        let now = Instant::now();
        let leader = leader_order("req-7", &m)[0].to_owned();
        let mut h = Handshake::new("req-7", &leader, &m, Need::Threshold(2), now, T);
        h.accept();
        assert!(h.on_ready("mallory", 0).is_empty());
        assert!(
            h.on_ready(&leader, 0).is_empty(),
            "a duplicate of its own ready"
        );
        let other = m.iter().find(|n| **n != leader).unwrap();
        assert!(matches!(
            h.on_ready(other, 0).first(),
            Some(Action::PublishStart(_))
        ));
    }
}
