//! This server's events feed: what changed in the cluster as this server saw it — the active
//! node, elections, members, agents' states, signing keys, snapshots — each with an id, a time,
//! this node's id and a detail, kept in memory (the last [`RETAINED`]) and written as a log line
//! when it happens. `GET /v1/events?since=N&wait=30s` reads it, waiting for the next event when
//! there is none after `N`.
//!
//! Ids grow across restarts (the first is the start time in microseconds), so a reader that
//! keeps its last id misses nothing but what a restart or the retention dropped.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use tandem_ha::{now_ms, ActiveView};
use tokio::sync::watch;

/// How many events each server keeps.
pub const RETAINED: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The active role moved (or no node holds it).
    ActiveChanged,
    /// A Raft term began with a leader.
    LeaderElected,
    MemberAdded,
    MemberRemoved,
    AgentStateChanged,
    /// An agent's chosen mesh path to a destination changed (as its heartbeats show).
    RouteChanged,
    KeyPublished,
    KeyRetired,
    /// This server's state machine took a snapshot (built or installed).
    SnapshotTaken,
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::ActiveChanged => "active_changed",
            EventKind::LeaderElected => "leader_elected",
            EventKind::MemberAdded => "member_added",
            EventKind::MemberRemoved => "member_removed",
            EventKind::AgentStateChanged => "agent_state_changed",
            EventKind::RouteChanged => "route_changed",
            EventKind::KeyPublished => "key_published",
            EventKind::KeyRetired => "key_retired",
            EventKind::SnapshotTaken => "snapshot_taken",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub id: u64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The server that saw it.
    pub node_id: u64,
    pub kind: EventKind,
    pub detail: Value,
}

struct Feed {
    events: VecDeque<Event>,
    next_id: u64,
}

/// The feed; cheap to clone.
#[derive(Clone)]
pub struct Events {
    node_id: u64,
    feed: Arc<Mutex<Feed>>,
    /// The last id recorded, for readers waiting for the next event.
    last: watch::Sender<u64>,
}

impl Events {
    pub fn new(node_id: u64) -> Events {
        let first_id = u64::try_from(now_ms()).unwrap_or(0).saturating_mul(1000);
        Events {
            node_id,
            feed: Arc::new(Mutex::new(Feed {
                events: VecDeque::with_capacity(RETAINED),
                next_id: first_id,
            })),
            last: watch::Sender::new(first_id.saturating_sub(1)),
        }
    }

    fn feed(&self) -> std::sync::MutexGuard<'_, Feed> {
        self.feed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an event and writes it as a log line.
    pub fn record(&self, kind: EventKind, detail: Value) {
        let mut feed = self.feed();
        let id = feed.next_id;
        feed.next_id += 1;
        tracing::info!(event = kind.as_str(), id, %detail, "cluster event");
        metrics::counter!("tandem_events_total", "kind" => kind.as_str()).increment(1);
        if feed.events.len() == RETAINED {
            feed.events.pop_front();
        }
        feed.events.push_back(Event {
            id,
            at_ms: now_ms(),
            node_id: self.node_id,
            kind,
            detail,
        });
        drop(feed);
        self.last.send_replace(id);
    }

    /// The events after `since`, oldest first, and the last id recorded.
    pub fn after(&self, since: u64) -> (Vec<Event>, u64) {
        let feed = self.feed();
        let events = feed
            .events
            .iter()
            .filter(|e| e.id > since)
            .cloned()
            .collect();
        (events, feed.next_id.saturating_sub(1))
    }

    /// As [`Events::after`], but when there is none yet, waits up to `wait` for one.
    pub async fn wait_after(&self, since: u64, wait: Duration) -> (Vec<Event>, u64) {
        let mut last = self.last.subscribe();
        let _ = tokio::time::timeout(wait, last.wait_for(|last| *last > since)).await;
        self.after(since)
    }
}

/// The events a change of the active view makes: one when the holder changes (to another node
/// or to none), or when the same node holds the role again under a new fencing token. Tokens
/// that pass while no node holds it (elections without a winner) are no event.
pub fn active_events(before: &ActiveView, now: &ActiveView) -> Vec<(EventKind, Value)> {
    let holder = |view: &ActiveView| view.active.as_ref().map(|a| a.id);
    let same_holder = holder(before) == holder(now);
    if same_holder && (holder(now).is_none() || before.fencing_token == now.fencing_token) {
        return Vec::new();
    }
    vec![(
        EventKind::ActiveChanged,
        json!({
            "active": holder(now),
            "previous": holder(before),
            "fencing_token": now.fencing_token,
            "api_addr": now.active.as_ref().map(|a| a.api_addr.clone()),
        }),
    )]
}

/// What of Raft's state makes events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftFacts {
    pub term: u64,
    pub leader: Option<u64>,
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
    pub snapshot_index: Option<u64>,
}

/// The events between two observations of Raft's state.
pub fn raft_events(before: &RaftFacts, now: &RaftFacts) -> Vec<(EventKind, Value)> {
    let mut events = Vec::new();
    if let Some(leader) = now.leader {
        if before.leader != Some(leader) || before.term != now.term {
            events.push((
                EventKind::LeaderElected,
                json!({ "leader": leader, "term": now.term, "previous": before.leader }),
            ));
        }
    }
    let members =
        |f: &RaftFacts| -> BTreeSet<u64> { f.voters.union(&f.learners).copied().collect() };
    let (was, is) = (members(before), members(now));
    // The first observation (nothing known yet) is the starting point, not a change.
    if !was.is_empty() {
        for id in is.difference(&was) {
            let voter = now.voters.contains(id);
            events.push((
                EventKind::MemberAdded,
                json!({ "member": id, "voter": voter }),
            ));
        }
        for id in was.difference(&is) {
            events.push((EventKind::MemberRemoved, json!({ "member": id })));
        }
    }
    if now.snapshot_index.is_some() && now.snapshot_index != before.snapshot_index {
        events.push((
            EventKind::SnapshotTaken,
            json!({ "index": now.snapshot_index }),
        ));
    }
    events
}

/// Records the events between successive values of `source` (as `facts` sees them, compared by
/// `changes`) until its sender is gone.
pub async fn follow<S, T: Default>(
    events: Events,
    mut source: watch::Receiver<S>,
    facts: impl Fn(&S) -> T,
    changes: fn(&T, &T) -> Vec<(EventKind, Value)>,
) {
    let mut before = T::default();
    loop {
        let now = facts(&source.borrow_and_update());
        for (kind, detail) in changes(&before, &now) {
            events.record(kind, detail);
        }
        before = now;
        if source.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_views::active_view;

    fn view(active: Option<u64>, token: u64) -> ActiveView {
        active_view(active, token, false)
    }

    fn facts(term: u64, leader: Option<u64>, voters: &[u64], snapshot: Option<u64>) -> RaftFacts {
        RaftFacts {
            term,
            leader,
            voters: voters.iter().copied().collect(),
            learners: BTreeSet::new(),
            snapshot_index: snapshot,
        }
    }

    #[test]
    fn the_active_node_changing_hands_is_one_event_and_nothing_else_is() {
        assert!(active_events(&view(Some(1), 3), &view(Some(1), 3)).is_empty());
        let moved = active_events(&view(Some(1), 3), &view(Some(2), 4));
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].0, EventKind::ActiveChanged);
        assert_eq!(moved[0].1["active"], 2);
        assert_eq!(moved[0].1["previous"], 1);
        assert_eq!(moved[0].1["api_addr"], "127.0.0.1:8202");
        let lost = active_events(&view(Some(2), 4), &view(None, 4));
        assert_eq!(lost[0].1["active"], Value::Null);
        assert!(
            active_events(&view(None, 4), &view(None, 5)).is_empty(),
            "an election without a winner"
        );
        assert_eq!(active_events(&view(Some(2), 4), &view(Some(2), 6)).len(), 1);
    }

    #[test]
    fn elections_members_and_snapshots_are_events() {
        let start = facts(1, Some(1), &[1, 2, 3], None);
        let first = raft_events(&RaftFacts::default(), &start);
        assert_eq!(
            first.iter().map(|e| e.0).collect::<Vec<_>>(),
            [EventKind::LeaderElected],
            "the members known at start are no change"
        );
        assert!(raft_events(&start, &start).is_empty());
        let next = facts(2, Some(3), &[1, 3, 4], Some(90));
        let kinds: Vec<EventKind> = raft_events(&start, &next).iter().map(|e| e.0).collect();
        assert_eq!(
            kinds,
            [
                EventKind::LeaderElected,
                EventKind::MemberAdded,
                EventKind::MemberRemoved,
                EventKind::SnapshotTaken
            ]
        );
        let no_leader = facts(3, None, &[1, 3, 4], Some(90));
        assert!(
            raft_events(&next, &no_leader).is_empty(),
            "a candidate term is no event"
        );
    }

    #[tokio::test]
    async fn readers_get_what_came_after_their_id_and_wait_for_the_next() {
        let events = Events::new(7);
        let (none, start) = events.after(0);
        assert!(none.is_empty());
        events.record(EventKind::KeyPublished, json!({"kid": "a"}));
        events.record(EventKind::KeyRetired, json!({"kid": "a"}));
        let (all, last) = events.after(start);
        assert_eq!(all.len(), 2);
        assert!(all[0].id < all[1].id && all[1].id == last);
        assert_eq!(all[0].node_id, 7);
        let (later, _) = events.after(all[0].id);
        assert_eq!(later.len(), 1);

        let waiting = {
            let events = events.clone();
            tokio::spawn(async move { events.wait_after(last, Duration::from_secs(10)).await })
        };
        events.record(EventKind::AgentStateChanged, json!({"agent": "gw-1"}));
        let (woken, _) = waiting.await.expect("the reader");
        assert_eq!(woken.len(), 1);
        assert_eq!(woken[0].kind, EventKind::AgentStateChanged);
        let (timed_out, _) = events
            .wait_after(u64::MAX - 1, Duration::from_millis(10))
            .await;
        assert!(timed_out.is_empty());
    }

    #[test]
    fn only_the_last_events_are_kept() {
        let events = Events::new(1);
        for i in 0..RETAINED + 5 {
            events.record(EventKind::KeyPublished, json!({ "i": i }));
        }
        let (kept, _) = events.after(0);
        assert_eq!(kept.len(), RETAINED);
        assert_eq!(kept[0].detail["i"], 5);
    }
}
