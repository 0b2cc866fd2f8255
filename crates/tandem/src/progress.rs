//! Progress of long commands (a backup download, a snapshot, a restore) on standard error. The
//! bars draw only when standard error is a terminal, so scripts and logs see the final line
//! alone.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often a spinner moves while nothing else reports progress.
const TICK: Duration = Duration::from_millis(100);

/// A bar counting bytes, with the rate and the time left once the total is known.
pub fn bytes(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// Moves a [`bytes`] bar to `done` of `total`.
pub fn advance(bar: &ProgressBar, done: u64, total: Option<u64>) {
    if let Some(total) = total {
        bar.set_length(total);
    }
    bar.set_position(done);
}

/// A spinner with the time spent, for a step whose size is not known while it runs.
pub fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(TICK);
    bar
}
