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

#[cfg(test)]
mod tests {
    use super::*;

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
