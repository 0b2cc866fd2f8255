//! When a server makes, starts signing with, and retires its keys: plain decisions from what
//! the replicated state says about the server's keys and which private keys it holds.

use std::collections::BTreeSet;

/// One of this server's keys as the replicated state shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnKey {
    pub kid: String,
    pub published_at_ms: i64,
    pub retired: bool,
}

/// Which key to publish next, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publish {
    Nothing,
    /// A key this server made earlier whose publication never completed.
    Pending(String),
    /// Make a new key and publish it.
    New,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationPlan {
    /// The key to sign with now: published, not retired, held, and the newest such.
    pub signing: Option<String>,
    pub publish: Publish,
    /// Published keys that must stop signing: older than the signing key, or lost.
    pub retire: Vec<String>,
    /// Private keys to delete: retired, or made but superseded before they were published.
    pub forget: Vec<String>,
}

/// Decides from this server's published keys (`own`), the private keys it holds (`held`), the
/// time and the key lifetime. A key only signs once published, so every verifier can already
/// find it; the previous key keeps signing until then.
pub fn plan_rotation(
    now_ms: i64,
    own: &[OwnKey],
    held: &BTreeSet<String>,
    key_duration_ms: i64,
    rotate_now: bool,
) -> RotationPlan {
    let mut live: Vec<&OwnKey> = own
        .iter()
        .filter(|k| !k.retired && held.contains(&k.kid))
        .collect();
    live.sort_by(|a, b| (a.published_at_ms, &a.kid).cmp(&(b.published_at_ms, &b.kid)));
    let signing = live.last().map(|k| (*k).clone());

    let retire = own
        .iter()
        .filter(|k| !k.retired)
        .filter(|k| signing.as_ref().is_none_or(|s| s.kid != k.kid))
        .map(|k| k.kid.clone())
        .collect();

    let published: BTreeSet<&str> = own.iter().map(|k| k.kid.as_str()).collect();
    // Key ids sort by creation time, so the last pending one is the newest.
    let mut pending: Vec<&String> = held
        .iter()
        .filter(|kid| !published.contains(kid.as_str()))
        .collect();
    let newest_pending = pending.pop().cloned();

    let due = match &signing {
        None => true,
        Some(key) => rotate_now || now_ms.saturating_sub(key.published_at_ms) >= key_duration_ms,
    };
    let publish = match (due, &newest_pending) {
        (false, _) => Publish::Nothing,
        (true, Some(kid)) => Publish::Pending(kid.clone()),
        (true, None) => Publish::New,
    };

    let mut forget: Vec<String> = own
        .iter()
        .filter(|k| k.retired && held.contains(&k.kid))
        .map(|k| k.kid.clone())
        .collect();
    forget.extend(pending.into_iter().cloned());

    RotationPlan {
        signing: signing.map(|k| k.kid),
        publish,
        retire,
        forget,
    }
}

/// Keys still in use by servers that are no longer members: the active node retires them, the
/// same way a server retires its own.
pub fn departed_keys(
    keys: impl IntoIterator<Item = (String, u64, bool)>,
    members: &BTreeSet<u64>,
) -> Vec<String> {
    keys.into_iter()
        .filter(|(_, node, retired)| !retired && !members.contains(node))
        .map(|(kid, _, _)| kid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn key(kid: &str, at: i64, retired: bool) -> OwnKey {
        OwnKey {
            kid: kid.into(),
            published_at_ms: at,
            retired,
        }
    }

    fn held(kids: &[&str]) -> BTreeSet<String> {
        kids.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_new_server_makes_its_first_key() {
        let plan = plan_rotation(0, &[], &held(&[]), DAY, false);
        assert_eq!(plan.signing, None);
        assert_eq!(plan.publish, Publish::New);
    }

    #[test]
    fn a_young_key_keeps_signing_and_an_old_one_is_replaced_after_publication() {
        let own = [key("a", 0, false)];
        let young = plan_rotation(DAY - 1, &own, &held(&["a"]), DAY, false);
        assert_eq!(young.signing.as_deref(), Some("a"));
        assert_eq!(young.publish, Publish::Nothing);
        assert!(young.retire.is_empty());

        let old = plan_rotation(DAY, &own, &held(&["a"]), DAY, false);
        assert_eq!(
            old.signing.as_deref(),
            Some("a"),
            "signs until the next is published"
        );
        assert_eq!(old.publish, Publish::New);

        let forced = plan_rotation(5, &own, &held(&["a"]), DAY, true);
        assert_eq!(forced.publish, Publish::New);

        let after = plan_rotation(
            DAY,
            &[key("a", 0, false), key("b", DAY, false)],
            &held(&["a", "b"]),
            DAY,
            false,
        );
        assert_eq!(after.signing.as_deref(), Some("b"));
        assert_eq!(after.retire, vec!["a".to_string()]);
        assert_eq!(after.publish, Publish::Nothing);
    }

    #[test]
    fn an_unpublished_key_is_published_before_another_is_made() {
        let plan = plan_rotation(0, &[], &held(&["p1", "p2"]), DAY, false);
        assert_eq!(plan.publish, Publish::Pending("p2".into()));
        assert_eq!(plan.forget, vec!["p1".to_string()]);
    }

    #[test]
    fn a_wiped_server_retires_the_keys_it_lost_and_makes_a_new_one() {
        let own = [key("lost", 0, false)];
        let plan = plan_rotation(10, &own, &held(&[]), DAY, false);
        assert_eq!(plan.signing, None);
        assert_eq!(plan.retire, vec!["lost".to_string()]);
        assert_eq!(plan.publish, Publish::New);
    }

    #[test]
    fn retired_keys_are_forgotten() {
        let own = [key("a", 0, true), key("b", 1, false)];
        let plan = plan_rotation(2, &own, &held(&["a", "b"]), DAY, false);
        assert_eq!(plan.forget, vec!["a".to_string()]);
        assert!(plan.retire.is_empty());
    }

    #[test]
    fn keys_of_departed_servers_are_retired() {
        let members = [1, 2].into_iter().collect();
        let keys = vec![
            ("k1".to_string(), 1, false),
            ("k3".to_string(), 3, false),
            ("k3-old".to_string(), 3, true),
        ];
        assert_eq!(departed_keys(keys, &members), vec!["k3".to_string()]);
    }
}
