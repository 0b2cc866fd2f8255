//! What the mesh tests drive and look at. On loopback: an HTTP target that counts its
//! connections (so a test can tell that nothing was dialed) and curl through a SOCKS5 ingress.
//! In network namespaces: the whole topology of ingress, transits, exits and a target only the
//! exits reach ([`MeshTopology`]). Both read the agents' `/healthz` with the same helpers.

mod topology;

pub use topology::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTP server that answers every request with one body and counts its connections.
pub struct HttpTarget {
    /// The address it listens on, `ip:port`.
    pub addr: String,
    connections: Arc<AtomicUsize>,
}

impl HttpTarget {
    /// Listens on `addr` (port 0 for a free one) until the test ends.
    pub async fn start(addr: &str, body: &'static str) -> HttpTarget {
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
        HttpTarget {
            addr: bound,
            connections,
        }
    }

    /// `http://addr/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The connections it has taken so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// `curl --socks5-hostname socks url` (`socks` may be a `socks5h://user:password@host:port`
/// URL), with `--proxy-user` when given and at most `max_time` seconds: the body on success,
/// curl's exit code otherwise.
pub async fn curl_socks5(
    socks: &str,
    proxy_user: Option<&str>,
    url: &str,
    max_time: &str,
) -> Result<String, i32> {
    let mut args = vec!["--max-time", max_time, "--socks5-hostname", socks];
    if let Some(user) = proxy_user {
        args.extend(["--proxy-user", user]);
    }
    args.push(url);
    curl(&args)
        .await
        .map(|body| String::from_utf8_lossy(&body).into_owned())
}

/// The mesh flags of an agent on 127.0.0.1: it listens on UDP port `listen` and dials the
/// agents listening on `peers`; callers add their roles' flags.
pub fn loopback_mesh_args(listen: u16, peers: &[u16]) -> Vec<String> {
    let mut args = vec!["--mesh-listen".to_string(), format!("127.0.0.1:{listen}")];
    for peer in peers {
        args.extend(["--mesh-peer".to_string(), format!("127.0.0.1:{peer}")]);
    }
    args
}
