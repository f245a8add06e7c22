//! A recording canary on loopback: it records every connection and every request head it
//! receives, and answers each with `401` and a Basic challenge (what a registry that wants
//! credentials says).
//!
//! Tests of hostile input point the process under test at it twice over: as a registry host a
//! pull request names, and as the HTTP(S) proxy for every host that is not loopback
//! ([`Canary::proxy_env`]). A request that should never be sent then lands here, where it is
//! counted, instead of leaving the machine: no bug can send a packet to a cloud's metadata
//! service or an outside name while the suite runs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ferry_model::Host;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// What one connection sent: its request head (the request line and headers), or what could
/// be read of it (a TLS hello is recorded as bytes).
#[derive(Clone, Debug)]
pub struct Seen {
    pub head: String,
}

impl Seen {
    /// The request line: `GET /v2/ HTTP/1.1`, `CONNECT metadata.google.internal:443 HTTP/1.1`.
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct Canary {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Canary {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the canary");
        let address = listener.local_addr().expect("canary address");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 4096];
                    let read = async {
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                            match socket.read(&mut buffer).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => head.extend_from_slice(&buffer[..n]),
                            }
                        }
                    };
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), read).await;
                    record
                        .lock()
                        .expect("canary record")
                        .push(Seen { head: String::from_utf8_lossy(&head).into_owned() });
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"canary\"\r\n\
                              Content-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Self { address, seen, task }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> Host {
        Host::parse(&self.address.to_string()).expect("a loopback host")
    }

    /// Every connection so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("canary record").clone()
    }

    /// Environment that sends every request to a host other than loopback through this canary
    /// (as an HTTP proxy, which reqwest, curl and most tools honour): loopback registries are
    /// reached directly, anything else is recorded here and goes no further.
    pub fn proxy_env(&self) -> Vec<(&'static str, String)> {
        let proxy = format!("http://{}", self.address);
        vec![
            ("HTTP_PROXY", proxy.clone()),
            ("HTTPS_PROXY", proxy.clone()),
            ("ALL_PROXY", proxy.clone()),
            ("http_proxy", proxy.clone()),
            ("https_proxy", proxy.clone()),
            ("all_proxy", proxy),
            ("NO_PROXY", "127.0.0.1,localhost,::1".to_owned()),
            ("no_proxy", "127.0.0.1,localhost,::1".to_owned()),
        ]
    }
}
