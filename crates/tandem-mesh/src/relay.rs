//! What to tell the peers when the advertisement this agent relays for one origin changes.
//!
//! An agent relays, for each origin, its best path to it, with its own id appended and the
//! origin's sequence number untouched. A peer already on the path never hears it (split
//! horizon: the peer it came from is on the path, and any other would refuse it as a loop).
//! A peer that heard the old advertisement and may not hear the new one gets a withdrawal at
//! once; every other change goes out as the new advertisement, whole, with the origin's proof
//! (a relay cannot cut an origin's signed set down to a part of it).

use std::collections::BTreeSet;

use crate::advert::{Advertisement, AgentId, Message, Withdrawal};
use crate::output::Outgoing;

/// What this agent last told its peers about one origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relayed {
    /// As sent: the path ends with this agent.
    pub advert: Advertisement,
    pub sent_to: BTreeSet<AgentId>,
}

/// The connected peers that should hear `advert`: those not already on its path.
pub fn recipients(advert: &Advertisement, peers: &BTreeSet<AgentId>) -> BTreeSet<AgentId> {
    peers
        .iter()
        .filter(|peer| !advert.path.contains(peer))
        .cloned()
        .collect()
}

/// The messages that move the peers from `old` to `new`, and what has then been told.
pub fn update(
    old: Option<&Relayed>,
    new: Option<Advertisement>,
    peers: &BTreeSet<AgentId>,
) -> (Vec<Outgoing>, Option<Relayed>) {
    let desired = new
        .as_ref()
        .map(|advert| recipients(advert, peers))
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Some(old) = old {
        for peer in old.sent_to.intersection(peers) {
            if !desired.contains(peer) {
                out.push(outgoing(peer, withdraw_all(&old.advert)));
            }
        }
    }
    let Some(new) = new else {
        return (out, None);
    };
    for peer in &desired {
        let heard = old.filter(|o| o.sent_to.contains(peer)).map(|o| &o.advert);
        if let Some(message) = message_for(heard, &new) {
            out.push(outgoing(peer, message));
        }
    }
    let relayed = Relayed {
        advert: new,
        sent_to: desired,
    };
    (out, Some(relayed))
}

/// What a peer that last heard `heard` must be told so that it knows `new`.
fn message_for(heard: Option<&Advertisement>, new: &Advertisement) -> Option<Message> {
    (heard != Some(new)).then(|| Message::Advertise(new.clone()))
}

fn withdraw_all(advert: &Advertisement) -> Message {
    Message::Withdraw(Withdrawal {
        origin: advert.origin.clone(),
        seq: advert.seq,
        path: advert.path.clone(),
    })
}

fn outgoing(peer: &AgentId, message: Message) -> Outgoing {
    Outgoing {
        to: peer.clone(),
        message,
    }
}
