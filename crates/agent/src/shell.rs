//! `gpunet job shell`: an interactive command in a lease's running workload, for its tenant,
//! over a WebSocket (`GET /v1/leases/{id}/shell`, signed like every tenant request).
//!
//! The first message is a [`ShellOpen`] sealed to this provider (purpose `Shell`, this lease):
//! the command, the service, the terminal size and a fresh stream key. Every message after it,
//! either way, is one frame of `gpunet_protocol::stream` sealed under that key, so what is
//! typed and shown is read by nobody between the tenant and the provider, and a frame replayed,
//! reordered or turned around is refused (the stream then ends). The command runs as
//! `Driver::shell` starts it (Docker: `docker exec` with its input attached, in the
//! container's isolation); the lease's log notes it opening and ending.
//!
//! What a hostile tenant could try, and what stops it: another tenant's lease (the signature
//! must be the lease's tenant's, checked before the upgrade); many shells (at most
//! [`MAX_SHELLS`] open on the provider, then 429); large messages (each at most
//! [`MAX_MESSAGE_BYTES`]); a stalled opening (dropped after [`OPEN_TIMEOUT`]). A command left
//! running when the stream drops gets end-of-file and otherwise runs on, in the container,
//! until it ends or the job does.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use gpunet_api::provider::ShellOpen;
use gpunet_protocol::stream::{Direction, Frame, MAX_FRAME_BYTES, Opener, Sealer};
use gpunet_protocol::{LeaseId, Purpose, SealContext};
use tokio::io::AsyncWriteExt;

use crate::leases::Leases;

/// Most shells open on one provider at once.
pub const MAX_SHELLS: usize = 32;
/// Largest WebSocket message taken: a sealed frame or the opening.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// How long the opening may take to arrive after the upgrade.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the exit code may take to show after the output ended.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(5);

/// Serves one shell on an upgraded connection until the command or the connection ends.
pub async fn serve(leases: &Leases, lease: LeaseId, mut socket: WebSocket) {
    let first = match tokio::time::timeout(OPEN_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Binary(bytes)))) => bytes,
        _ => return close(socket, "expected the sealed opening first").await,
    };
    let ctx = SealContext {
        purpose: Purpose::Shell,
        lease,
    };
    let plain = match leases.open_sealed(ctx, &first) {
        Ok(plain) => plain,
        Err(e) => {
            let why = format!(
                "the opening does not open with this provider's key for lease {lease}: {e}"
            );
            return close(socket, &why).await;
        }
    };
    let (open, key) = match serde_json::from_slice::<ShellOpen>(&plain)
        .map_err(|e| e.to_string())
        .and_then(|open| open.validate().map(|key| (open, key)))
    {
        Ok(parts) => parts,
        Err(why) => return close(socket, &format!("the opening is not valid: {why}")).await,
    };
    let mut sealer = Sealer::new(&key, Direction::ToTenant);
    let mut opener = Opener::new(&key, Direction::ToProvider);
    let session = match leases
        .shell(lease, open.service.as_deref(), &open.argv, open.tty)
        .await
    {
        Ok(session) => session,
        Err(e) => {
            if let Ok(sealed) = sealer.seal(&Frame::Error(e.to_string())) {
                let _ = socket.send(Message::Binary(sealed.into())).await;
            }
            return close(socket, "the shell did not start").await;
        }
    };
    let gpunet_runtime::ShellSession {
        mut output,
        mut input,
        control,
    } = session;
    let (mut tx, mut rx) = socket.split();
    let mut input_open = true;
    let ended = loop {
        tokio::select! {
            chunk = output.next() => {
                let Some(bytes) = chunk else { break None };
                let mut gone = false;
                for piece in bytes.chunks(MAX_FRAME_BYTES) {
                    let Ok(sealed) = sealer.seal(&Frame::Data(piece.to_vec())) else {
                        gone = true;
                        break;
                    };
                    if tx.send(Message::Binary(sealed.into())).await.is_err() {
                        gone = true;
                        break;
                    }
                }
                if gone {
                    break Some("the tenant's connection dropped");
                }
            }
            message = rx.next(), if input_open => match message {
                Some(Ok(Message::Binary(bytes))) => match opener.open(&bytes) {
                    Ok(Frame::Data(data)) => {
                        if input.write_all(&data).await.is_err() {
                            input_open = false;
                        }
                    }
                    Ok(Frame::Resize { cols, rows }) => control.resize(cols, rows).await,
                    Ok(Frame::Eof) => {
                        let _ = input.shutdown().await;
                        input_open = false;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if let Ok(sealed) = sealer.seal(&Frame::Error(e.to_string())) {
                            let _ = tx.send(Message::Binary(sealed.into())).await;
                        }
                        let _ = input.shutdown().await;
                        break Some("a frame from the tenant was refused");
                    }
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    // Gone: the command gets end-of-file, which ends a shell.
                    let _ = input.shutdown().await;
                    break Some("the tenant's connection closed");
                }
                Some(Ok(_)) => {}
            },
        }
    };
    let code = match ended {
        Some(_) => None,
        None => {
            let deadline = tokio::time::Instant::now() + EXIT_CODE_WAIT;
            loop {
                if let Some(code) = control.exit_code().await {
                    break Some(code);
                }
                if tokio::time::Instant::now() >= deadline {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let said = match (ended, code) {
        (Some(why), _) => why.to_owned(),
        (None, Some(code)) => format!("exit {code}"),
        (None, None) => "ended, exit code unknown".to_owned(),
    };
    leases.note_in_log(lease, &format!("[gpunet] shell ended: {said}"));
    if ended.is_none()
        && let Ok(sealed) = sealer.seal(&Frame::Exit(code))
    {
        let _ = tx.send(Message::Binary(sealed.into())).await;
    }
    let _ = tx.send(Message::Close(None)).await;
}

/// Ends the connection saying why (in the close frame, unsealed: it carries no secret).
async fn close(mut socket: WebSocket, why: &str) {
    // A close frame's reason holds at most 123 bytes.
    let mut end = why.len().min(120);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    let reason = why[..end].to_owned();
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: axum::extract::ws::close_code::POLICY,
            reason: reason.into(),
        })))
        .await;
}
