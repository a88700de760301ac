//! A real S3-protocol server for tests: moto's server (PyPI `moto[server]`, `moto_server`),
//! started on a free loopback port and killed when dropped. The blob store's S3 tests and the
//! CLI's end-to-end tests of a tenant's bucket share it.
//!
//! Without moto installed, [`start_moto`] says plainly that the test is skipped — and panics
//! instead where `GPUNET_REQUIRE_S3=1` (CI: `.ci/run` installs moto and sets it), so a missing
//! server is a failure there, never a silent pass.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to install the server the tests use.
pub const INSTALL: &str = "python3 -m pip install 'moto[server]==5.2.1'";

/// A moto server on a loopback port; killed when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto's server, or says why not: `None` is a skip (printed), unless S3 is required
/// (`GPUNET_REQUIRE_S3=1`), when a missing server panics.
pub fn start_moto(test: &str) -> Option<Moto> {
    let required = std::env::var("GPUNET_REQUIRE_S3").is_ok_and(|v| v == "1");
    let installed = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        if required {
            panic!(
                "GPUNET_REQUIRE_S3=1 but moto's S3 server (`moto_server`) is not installed or \
                 does not run; install it with `{INSTALL}`"
            );
        }
        // Written to the process's stderr, not through `eprintln!`, which the test harness
        // captures and hides for a passing test: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: moto's S3 server (`moto_server`) is not installed; install it \
             with `{INSTALL}` to run the S3 tests (CI sets GPUNET_REQUIRE_S3=1)"
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on 127.0.0.1:{port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

impl Moto {
    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One HTTP request with a dummy signature (moto reads the access key from it but checks
    /// signatures only when told to), for looking at and spoiling keys behind a store's back;
    /// returns the status code and body.
    pub fn raw(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=test-key/20260101/us-east-1/s3/\
             aws4_request, SignedHeaders=host, Signature=0\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("send");
        stream.write_all(body).expect("send");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).expect("receive");
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers end");
        let mut body = response[split + 4..].to_vec();
        let chunked = text[..split]
            .lines()
            .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
        if chunked {
            body = dechunk(&body);
        }
        (status, body)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.raw("PUT", &format!("/{bucket}"), b"");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// Every key in `bucket` (ListObjectsV2, following continuation tokens).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let query = match &token {
                Some(t) => format!("?list-type=2&continuation-token={}", percent_encode(t)),
                None => "?list-type=2".to_owned(),
            };
            let (status, body) = self.raw("GET", &format!("/{bucket}{query}"), b"");
            let body = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, 200, "listing {bucket}: {body}");
            keys.extend(between_all(&body, "<Key>", "</Key>").map(unescape_xml));
            token = between_all(&body, "<NextContinuationToken>", "</NextContinuationToken>")
                .next()
                .map(unescape_xml);
            if token.is_none() {
                return keys;
            }
        }
    }

    /// The object at `key` in `bucket`.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let (status, body) = self.raw("GET", &format!("/{bucket}/{key}"), b"");
        assert_eq!(status, 200, "GET {bucket}/{key}");
        body
    }
}

fn between_all<'a>(text: &'a str, open: &'a str, close: &'a str) -> impl Iterator<Item = &'a str> {
    text.split(open)
        .skip(1)
        .filter_map(move |rest| rest.split_once(close).map(|(inside, _)| inside))
}

fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&body[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || body.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[(eol + 2 + size + 2).min(body.len())..];
    }
}
