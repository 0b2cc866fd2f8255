//! A steady client load for fault tests: one writer sending distinct keys through a retrying
//! client, remembering which were acknowledged and which requests failed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;

/// What a [`SteadyWrites`] run saw.
pub struct WriteLog {
    /// Keys whose write was acknowledged (2xx), in order.
    pub acknowledged: Vec<String>,
    /// Requests that ended in an error or a non-2xx answer, with what happened.
    pub failed: Vec<String>,
}

pub struct SteadyWrites {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    task: JoinHandle<WriteLog>,
}

impl SteadyWrites {
    /// Writes `<prefix><n>` for n = 0, 1, … one after another until [`SteadyWrites::finish`].
    pub fn start(client: tandem_client::Client, prefix: &str) -> SteadyWrites {
        let stop = Arc::new(AtomicBool::new(false));
        let prefix = prefix.to_string();
        let stopping = stop.clone();
        let acknowledged = Arc::new(AtomicU64::new(0));
        let counter = acknowledged.clone();
        let task = tokio::spawn(async move {
            let mut log = WriteLog {
                acknowledged: Vec::new(),
                failed: Vec::new(),
            };
            let mut n = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let key = format!("{prefix}{n}");
                n += 1;
                match client
                    .put_bytes(&format!("/v1/kv/{key}"), key.clone().into_bytes())
                    .await
                {
                    Ok(reply) if reply.status.is_success() => {
                        log.acknowledged.push(key);
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(reply) => log.failed.push(format!(
                        "{key}: HTTP {} {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    )),
                    Err(e) => log.failed.push(format!("{key}: {e}")),
                }
            }
            log
        });
        SteadyWrites {
            stop,
            acknowledged,
            task,
        }
    }

    /// Writes acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Waits until `more` further writes have been acknowledged: the load is flowing.
    pub async fn wait_for_progress(&self, more: u64) {
        let target = self.acknowledged() + more;
        crate::wait_until(
            crate::DEADLINE,
            &format!("{more} more acknowledged writes"),
            async || self.acknowledged() >= target,
        )
        .await;
    }

    /// Stops after the write in flight and answers what happened.
    pub async fn finish(self) -> WriteLog {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the writer task does not panic")
    }
}
