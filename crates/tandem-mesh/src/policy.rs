//! Which origin may announce which destinations. An exit may announce only what its
//! configuration allows, and the servers can narrow an agent's announcements further; the
//! table asks the policy about every route of every advertisement it receives.

use std::collections::BTreeMap;
use std::fmt;

use crate::advert::{AgentId, Destination};

/// Decides whether `origin` may announce `dest`.
pub trait AnnouncePolicy: fmt::Debug + Send + Sync {
    fn may_announce(&self, origin: &AgentId, dest: &Destination) -> bool;
}

/// Every origin may announce anything (a mesh whose agents are all trusted exits).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl AnnouncePolicy for AllowAll {
    fn may_announce(&self, _origin: &AgentId, _dest: &Destination) -> bool {
        true
    }
}

/// Each origin may announce only destinations covered by its list (a CIDR inside an allowed
/// CIDR, a name under an allowed wildcard); an origin without a list may announce nothing.
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    allowed: BTreeMap<AgentId, Vec<Destination>>,
}

impl AllowList {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `origin` announce `dest` and anything it covers.
    pub fn allow(mut self, origin: AgentId, dest: Destination) -> Self {
        self.allowed.entry(origin).or_default().push(dest);
        self
    }
}

impl AnnouncePolicy for AllowList {
    fn may_announce(&self, origin: &AgentId, dest: &Destination) -> bool {
        self.allowed
            .get(origin)
            .is_some_and(|list| list.iter().any(|allowed| allowed.covers(dest)))
    }
}

/// The servers' restrictions: an origin named here may announce only what its list covers
/// (an empty list: nothing); every origin not named may announce anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restrictions {
    limited: BTreeMap<AgentId, Vec<Destination>>,
}

impl Restrictions {
    /// Nobody restricted.
    pub fn none() -> Self {
        Self::default()
    }

    /// From the servers' lists by agent name. An entry that does not parse is left out, so its
    /// origin may announce less, never more; each is answered as a line for the log. A name
    /// that is no agent id is skipped: no agent of that name can peer.
    pub fn from_lists(lists: &BTreeMap<String, Vec<String>>) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        let mut limited = BTreeMap::new();
        for (name, entries) in lists {
            let Ok(origin) = AgentId::new(name.clone()) else {
                problems.push(format!(
                    "restriction for {name:?} skipped: not an agent name"
                ));
                continue;
            };
            let mut dests = Vec::new();
            for entry in entries {
                match entry.parse::<Destination>() {
                    Ok(dest) => dests.push(dest),
                    Err(e) => problems.push(format!(
                        "restriction entry {entry:?} of {name} left out: {e}"
                    )),
                }
            }
            dests.sort();
            dests.dedup();
            limited.insert(origin, dests);
        }
        (Self { limited }, problems)
    }

    /// What `origin` may announce, when it is restricted.
    pub fn list(&self, origin: &AgentId) -> Option<&[Destination]> {
        self.limited.get(origin).map(Vec::as_slice)
    }
}

impl AnnouncePolicy for Restrictions {
    fn may_announce(&self, origin: &AgentId, dest: &Destination) -> bool {
        self.limited
            .get(origin)
            .is_none_or(|list| list.iter().any(|allowed| allowed.covers(dest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrictions_limit_only_the_origins_they_name() {
        let lists = BTreeMap::from([
            (
                "exit-a".to_string(),
                vec!["10.20.0.0/16".to_string(), "*.internal.example".to_string()],
            ),
            ("exit-b".to_string(), vec![]),
            ("exit-c".to_string(), vec!["not a destination".to_string()]),
        ]);
        let (policy, problems) = Restrictions::from_lists(&lists);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("exit-c"), "{problems:?}");
        assert!(policy.may_announce(&id("exit-a"), &dest("10.20.3.0/24")));
        assert!(policy.may_announce(&id("exit-a"), &dest("db.internal.example")));
        assert!(!policy.may_announce(&id("exit-a"), &dest("10.30.0.0/16")));
        assert!(!policy.may_announce(&id("exit-a"), &dest("10.0.0.0/8")));
        assert!(!policy.may_announce(&id("exit-b"), &dest("10.20.0.0/16")));
        // A list whose only entry did not parse allows nothing rather than everything.
        assert!(!policy.may_announce(&id("exit-c"), &dest("10.20.0.0/16")));
        assert!(policy.may_announce(&id("ingress"), &dest("0.0.0.0/0")));
        assert_eq!(
            Restrictions::from_lists(&BTreeMap::new()).0,
            Restrictions::none()
        );
    }

    #[test]
    fn what_the_servers_accept_in_a_restriction_parses_here() {
        for entry in [
            "10.20.0.0/16",
            "10.20.0.1/32",
            "fd00::/8",
            "*.internal.example",
            "db.internal.example",
        ] {
            assert_eq!(tandem_registry::check_announce_entry(entry), Ok(()));
            assert!(entry.parse::<Destination>().is_ok(), "{entry}");
        }
    }

    fn id(name: &str) -> AgentId {
        AgentId::new(name).expect("valid test name")
    }

    fn dest(s: &str) -> Destination {
        s.parse().expect("valid test destination")
    }

    #[test]
    fn an_allow_list_admits_only_what_it_covers_for_that_origin() {
        let policy = AllowList::new()
            .allow(id("exit-a"), dest("10.0.0.0/8"))
            .allow(id("exit-a"), dest("*.internal.example"));
        assert!(policy.may_announce(&id("exit-a"), &dest("10.2.0.0/16")));
        assert!(policy.may_announce(&id("exit-a"), &dest("db.internal.example")));
        assert!(!policy.may_announce(&id("exit-a"), &dest("0.0.0.0/0")));
        assert!(!policy.may_announce(&id("exit-a"), &dest("*.example")));
        assert!(!policy.may_announce(&id("exit-b"), &dest("10.2.0.0/16")));
    }
}
