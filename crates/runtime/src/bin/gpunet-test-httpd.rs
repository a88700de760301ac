//! A minimal HTTP responder for the Docker driver's service tests: the test image is assembled
//! from host binaries and has no server of its own. Answers every request on the given port with
//! `200 OK` and a fixed body, until killed. Built only with the `test-image` feature.

use std::io::{Read, Write};
use std::net::TcpListener;

/// What every request gets back.
const BODY: &str = "hello from a gpunet service\n";
/// Most request bytes read before answering.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

fn main() -> std::process::ExitCode {
    let port = std::env::args().nth(1).unwrap_or_else(|| "8000".to_owned());
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gpunet-test-httpd: cannot listen on port {port}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("listening on {port}");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut buf = vec![0u8; MAX_REQUEST_BYTES];
        let _ = stream.read(&mut buf);
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        let _ = stream.write_all(answer.as_bytes());
    }
    std::process::ExitCode::SUCCESS
}
