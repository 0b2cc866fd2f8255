//! A UDP relay that can go silent: the QUIC stand-in for an agent killed with -9, whose peers
//! never see a close. Shared by the transport and runtime test binaries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;

/// A UDP relay in front of `target` that can go silent, as if the agent behind it had been
/// killed with -9 (no close is ever seen).
pub struct UdpRelay {
    pub addr: SocketAddr,
    silent: Arc<AtomicBool>,
}

impl UdpRelay {
    pub async fn start(target: SocketAddr) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind front"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind back"));
        back.connect(target).await.expect("connect back");
        let addr = front.local_addr().expect("front addr");
        let silent = Arc::new(AtomicBool::new(false));
        let client: Arc<tokio::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        {
            let (front, back, silent, client) =
                (front.clone(), back.clone(), silent.clone(), client.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().await = Some(from);
                    if !silent.load(Ordering::SeqCst) {
                        let _ = back.send(&buf[..n]).await;
                    }
                }
            });
        }
        {
            let silent = silent.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = back.recv(&mut buf).await {
                    let to = *client.lock().await;
                    if let (false, Some(to)) = (silent.load(Ordering::SeqCst), to) {
                        let _ = front.send_to(&buf[..n], to).await;
                    }
                }
            });
        }
        Self { addr, silent }
    }

    pub fn silence(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }
}
