use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;

/// Longest instance id accepted; key ids are file names and JWT header fields.
const MAX_INSTANCE_ID_LEN: usize = 64;

/// A new key id, `{instance_id}-{unique}`. The unique part is the creation time in milliseconds
/// followed by 80 random bits: ids sort by age, and two ids never collide, also when a server
/// whose data folder was wiped (and whose clock may have gone back) makes its next key.
pub fn new_key_id(instance_id: &str) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let random: u128 = rand::rng().random::<u128>() >> 48;
    format!("{instance_id}-{millis:011x}{random:020x}")
}

/// Instance ids become part of key ids and file names: letters, digits, `.`, `_` and `-`.
pub fn check_instance_id(instance_id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if instance_id.is_empty() || instance_id.len() > MAX_INSTANCE_ID_LEN {
        return Err(format!(
            "instance_id {instance_id:?} must be 1 to {MAX_INSTANCE_ID_LEN} characters long"
        ));
    }
    if !instance_id.chars().all(allowed) || instance_id.starts_with('.') {
        return Err(format!(
            "instance_id {instance_id:?} may hold only letters, digits, '.', '_' and '-' (and not start with '.')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_carry_the_instance_and_never_repeat() {
        let ids: std::collections::BTreeSet<String> =
            (0..10_000).map(|_| new_key_id("tandem-1")).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids
            .iter()
            .all(|id| id.starts_with("tandem-1-") && id.len() == 40));
    }

    #[test]
    fn instance_ids_must_be_file_safe() {
        assert!(check_instance_id("tandem-1").is_ok());
        assert!(check_instance_id("eu.west_2").is_ok());
        for bad in ["", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(check_instance_id(bad).is_err(), "{bad:?}");
        }
    }
}
