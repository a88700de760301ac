//! A service's health check: `GET <http_path>` on its published `http` port, answered 2xx.
//! Each probe is bounded in time ([`HEALTH_PROBE_TIMEOUT`]) and in the bytes it reads
//! ([`MAX_STATUS_LINE_BYTES`]); the lease side probes every [`HEALTH_PROBE_INTERVAL`] while the
//! workload runs, and only then.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest one probe may take, connecting included.
pub const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait between probes of a running service.
pub const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Most bytes of the answer read: the status line is all a probe needs.
pub const MAX_STATUS_LINE_BYTES: usize = 1024;

/// Whether `GET path` at `addr` answers 2xx within `timeout`.
pub async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, probe_once(addr, path)).await,
        Ok(Ok(true))
    )
}

async fn probe_once(addr: SocketAddr, path: &str) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while head.len() < MAX_STATUS_LINE_BYTES && !head.contains(&b'\n') {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(status_is_success(&head))
}

/// Whether an HTTP answer starts with a `2xx` status line.
pub fn status_is_success(head: &[u8]) -> bool {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_ascii_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return false;
    };
    version.starts_with("HTTP/")
        && code.len() == 3
        && code.starts_with('2')
        && code.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2xx_status_lines_are_healthy() {
        for (head, healthy) in [
            (&b"HTTP/1.1 200 OK\r\n"[..], true),
            (b"HTTP/1.0 204 No Content\r\n", true),
            (b"HTTP/1.1 503 Service Unavailable\r\n", false),
            (b"HTTP/1.1 301 Moved\r\n", false),
            (b"SSH-2.0-OpenSSH\r\n", false),
            (b"HTTP/1.1 2000 x\r\n", false),
            (b"", false),
        ] {
            assert_eq!(
                status_is_success(head),
                healthy,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[tokio::test]
    async fn a_probe_asks_the_path_and_reads_the_answer_and_gives_up_on_silence() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let mut req = vec![0u8; 1024];
                let n = s.read(&mut req).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&req[..n]).into_owned();
                let answer = if req.starts_with("GET /healthz ") {
                    "HTTP/1.1 200 OK\r\n\r\nok"
                } else if req.starts_with("GET /silent ") {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    ""
                } else {
                    "HTTP/1.1 404 Not Found\r\n\r\n"
                };
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        let timeout = Duration::from_millis(300);
        assert!(probe(addr, "/healthz", timeout).await);
        assert!(!probe(addr, "/other", timeout).await);
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
            l.local_addr().expect("addr")
        };
        assert!(!probe(closed, "/healthz", timeout).await, "nothing listens");
        let started = std::time::Instant::now();
        assert!(!probe(addr, "/silent", timeout).await);
        assert!(started.elapsed() < Duration::from_secs(2), "bounded");
    }
}
