//! The open-files limit. An ingress holds up to 10 000 client connections and as many streams
//! to the targets, while a service manager often starts processes with a soft limit of 1 024:
//! the agent raises its soft limit to the hard one, as the operator allowed, so the connection
//! cap and not the file table decides when clients are turned away.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft limit on open files to the hard limit; says what happened in the log.
pub fn raise_to_hard_limit() {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "the open-files limit cannot be read; keeping it");
            return;
        }
    };
    if soft >= hard {
        tracing::debug!(limit = soft, "open-files limit already at its hard limit");
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => tracing::info!(from = soft, to = hard, "open-files limit raised"),
        Err(error) => tracing::warn!(
            %error, soft, hard,
            "the open-files limit cannot be raised; clients may be refused before the connection cap"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        raise_to_hard_limit();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("read the limit");
        assert_eq!(soft, hard);
    }
}
