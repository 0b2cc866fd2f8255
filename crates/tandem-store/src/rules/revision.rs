//! Compare-and-set on a key's revision.

use crate::command::Rejection;

/// Whether a write to `key` that expects revision `expected` may go ahead, given the revision
/// of the key's live entry (`None`: absent or expired). Expecting 0 asks for the key to be
/// absent.
pub fn check_matches(key: &str, expected: u64, stored: Option<u64>) -> Result<(), Rejection> {
    let actual = stored.unwrap_or(0);
    if actual != expected {
        return Err(Rejection::conflict(format!(
            "key {key:?} is at revision {actual}, not {expected}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RejectionKind;

    #[test]
    fn the_stored_revision_matches() {
        assert_eq!(check_matches("k", 7, Some(7)), Ok(()));
    }

    #[test]
    fn another_revision_is_a_conflict() {
        let refused = check_matches("k", 6, Some(7)).unwrap_err();
        assert_eq!(refused.kind, RejectionKind::Conflict);
        assert_eq!(refused.message, "key \"k\" is at revision 7, not 6");
    }

    #[test]
    fn revision_zero_means_absent() {
        assert_eq!(check_matches("k", 0, None), Ok(()));
        let refused = check_matches("k", 0, Some(3)).unwrap_err();
        assert_eq!(refused.message, "key \"k\" is at revision 3, not 0");
    }

    #[test]
    fn an_absent_key_has_no_revision_to_match() {
        let refused = check_matches("k", 4, None).unwrap_err();
        assert_eq!(refused.kind, RejectionKind::Conflict);
        assert_eq!(refused.message, "key \"k\" is at revision 0, not 4");
    }
}
