//! A minimal HTTP responder and client for the Docker driver's service tests: the test image is
//! assembled from host binaries and has neither a server nor a client of its own. Built only
//! with the `test-image` feature.
//!
//! - `gpunet-test-httpd PORT...` answers every request on each port with `200 OK` and a fixed
//!   body naming the port, until killed (one thread per port; HTTP/1.1 keep-alive).
//! - `gpunet-test-httpd get HOST:PORT [HOST-HEADER [PATH]]` sends one `GET PATH` (default `/`)
//!   and prints the answer;
//!   exit 0 on an answer, 1 with `unreachable: …` when no connection could be made within
//!   3 seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// Longest a request's head may be.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long `get` waits to connect and for the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("get") {
        return get(
            args.get(1).map_or("", String::as_str),
            args.get(2),
            args.get(3).map_or("/", String::as_str),
        );
    }
    let ports = if args.is_empty() {
        vec!["8000".to_owned()]
    } else {
        args
    };
    let mut servers = Vec::new();
    for port in ports {
        let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("gpunet-test-httpd: cannot listen on port {port}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("listening on {port}");
        servers.push(std::thread::spawn(move || serve(&listener, &port)));
    }
    for server in servers {
        let _ = server.join();
    }
    ExitCode::SUCCESS
}

fn serve(listener: &TcpListener, port: &str) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let port = port.to_owned();
        std::thread::spawn(move || answer(stream, &port));
    }
}

/// Answers the requests of one connection until the client closes it or asks to.
fn answer(stream: TcpStream, port: &str) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = 0usize;
        let mut close = false;
        let mut content_length = 0usize;
        let mut first = true;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(n) => head += n,
            }
            if head > MAX_HEAD_BYTES {
                return;
            }
            let lower = line.trim().to_ascii_lowercase();
            if lower.is_empty() {
                if first {
                    continue;
                }
                break;
            }
            first = false;
            if lower == "connection: close" {
                close = true;
            }
            if let Some(n) = lower.strip_prefix("content-length:") {
                content_length = n.trim().parse().unwrap_or(0);
            }
        }
        // A body is read and dropped.
        let mut body = vec![0u8; content_length.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let text = format!("hello from a gpunet service on port {port}\n");
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{text}",
            text.len(),
            if close { "connection: close\r\n" } else { "" },
        );
        if writer.write_all(answer.as_bytes()).is_err() || close {
            return;
        }
    }
}

fn get(addr: &str, host: Option<&String>, path: &str) -> ExitCode {
    let target = match addr.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(target)) => target,
        _ => {
            eprintln!("unreachable: {addr:?} is not HOST:PORT");
            return ExitCode::FAILURE;
        }
    };
    let mut conn = match TcpStream::connect_timeout(&target, CLIENT_TIMEOUT) {
        Ok(conn) => conn,
        Err(e) => {
            println!("unreachable: {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = conn.set_read_timeout(Some(CLIENT_TIMEOUT));
    let host = host.map_or(addr, String::as_str);
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    let mut out = String::new();
    match conn
        .write_all(request.as_bytes())
        .and_then(|()| conn.read_to_string(&mut out))
    {
        Ok(_) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("unreachable: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}
