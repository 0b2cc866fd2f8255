//! The agent's load, one number where lower is less loaded: pushed by the local service
//! (`POST /load`), else what `--load-command` prints, else the 1-minute load average per core.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::checks::run_command;

/// The first field of /proc/loadavg: the 1-minute load average.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
        .filter(|load| load.is_finite() && *load >= 0.0)
}

/// A load average spread over the cores (a busy 4-core machine at 4.0 is at 1.0).
pub fn per_core(load: f64, cores: usize) -> f64 {
    load / cores.max(1) as f64
}

/// What a load command printed, as a load: one finite number of at least 0.
pub fn parse_load_output(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|load| load.is_finite() && *load >= 0.0)
}

/// Where the load comes from.
pub struct LoadSource {
    pushed: Mutex<Option<f64>>,
    command: Option<String>,
    timeout: Duration,
    /// An unreadable command output is logged once, not at every report.
    complained: AtomicBool,
}

impl LoadSource {
    pub fn new(command: Option<String>, timeout: Duration) -> LoadSource {
        LoadSource {
            pushed: Mutex::new(None),
            command,
            timeout,
            complained: AtomicBool::new(false),
        }
    }

    /// A value the local service pushed; it wins over the others until the agent restarts.
    pub fn push(&self, load: f64) -> Result<(), String> {
        if !load.is_finite() || load < 0.0 {
            return Err(format!("load {load} is not a finite number of at least 0"));
        }
        *self.pushed.lock().unwrap_or_else(|e| e.into_inner()) = Some(load);
        Ok(())
    }

    pub fn pushed(&self) -> Option<f64> {
        *self.pushed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The load now, or none when it cannot be read.
    pub async fn current(&self) -> Option<f64> {
        if let Some(load) = self.pushed() {
            return Some(load);
        }
        match &self.command {
            Some(command) => {
                let (_, output) = run_command(command, self.timeout, 256).await;
                let load = parse_load_output(&output);
                if load.is_none() && !self.complained.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        command = %command,
                        output = %output.trim(),
                        "the load command did not print one number of at least 0; no load is reported while it does not"
                    );
                }
                load
            }
            None => {
                let text = tokio::fs::read_to_string("/proc/loadavg").await.ok()?;
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                parse_loadavg(&text).map(|load| per_core(load, cores))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_texts_are_read_strictly() {
        assert_eq!(parse_loadavg("0.52 0.58 0.59 2/1234 5678\n"), Some(0.52));
        assert_eq!(parse_loadavg(""), None);
        assert_eq!(per_core(2.0, 4), 0.5);
        assert_eq!(per_core(2.0, 0), 2.0);
        assert_eq!(parse_load_output(" 0.4\n"), Some(0.4));
        for bad in ["", "high", "-1", "NaN", "inf", "1 2"] {
            assert_eq!(parse_load_output(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_pushed_load_wins_over_the_command() {
        let source = LoadSource::new(Some("echo 0.25".into()), Duration::from_secs(5));
        assert_eq!(source.current().await, Some(0.25));
        assert!(source.push(-1.0).is_err());
        source.push(0.75).unwrap();
        assert_eq!(source.current().await, Some(0.75));

        let silly = LoadSource::new(Some("echo lots".into()), Duration::from_secs(5));
        assert_eq!(silly.current().await, None);
        assert_eq!(silly.current().await, None);

        let average = LoadSource::new(None, Duration::from_secs(1));
        if std::path::Path::new("/proc/loadavg").exists() {
            assert!(average.current().await.is_some_and(|l| l >= 0.0));
        }
    }
}
