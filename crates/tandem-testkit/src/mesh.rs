//! What mesh tests drive and look at: a target behind the exits, curl through a SOCKS5
//! ingress, and an agent's `/healthz`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTP server on `addr` that answers every request with `body`; answers its address and
/// the number of connections it took so far.
pub async fn http_target(addr: &str, body: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(addr).await.expect("bind the target");
    let bound = listener.local_addr().expect("its address").to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (bound, connections)
}

/// `curl --socks5-hostname` through an ingress, for at most `max_time` (curl's spelling,
/// e.g. "3"): the body on success, curl's exit code otherwise.
pub async fn curl_socks5(socks: &str, url: &str, max_time: &str) -> Result<String, i32> {
    let out = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--max-time",
            max_time,
            "--socks5-hostname",
            socks,
            url,
        ])
        .output()
        .await
        .expect("curl runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(out.status.code().unwrap_or(-1))
    }
}

/// An agent's `/healthz` as JSON; `Null` while it does not answer.
pub async fn healthz(url: &str) -> Value {
    match reqwest::get(url).await {
        Ok(reply) => reply.json().await.unwrap_or_default(),
        Err(_) => Value::Null,
    }
}
