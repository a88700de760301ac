//! `gpunet job shell`: this terminal joined to a command inside a running job, through the
//! provider's sealed shell stream (`gpunet_client::provider::ProviderClient::shell`).
//!
//! With a terminal on stdin, it is put in raw mode (every key goes to the command; the
//! command's terminal echoes and edits) and restored on the way out, even on an error; its
//! size goes with the opening and again whenever it changes (SIGWINCH). Without one, input is
//! sent as it comes, and its end is sent as end-of-file.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use gpunet_client::ProviderClient;
use gpunet_protocol::stream::Frame;
use gpunet_protocol::{EncryptionKey, LeaseId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A terminal in raw mode until dropped, when its settings come back.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enable() -> Result<RawMode> {
        let stdin = std::io::stdin();
        let saved =
            rustix::termios::tcgetattr(&stdin).context("cannot read the terminal's settings")?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw)
            .context("cannot put the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// This terminal's size as `(cols, rows)`, if stdout is one.
fn window_size() -> Option<(u16, u16)> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

/// Runs `argv` in `lease`'s workload (or its `service`) joined to this terminal; returns the
/// command's exit code (`None` when the provider could not tell it).
pub async fn run(
    provider: &ProviderClient,
    lease: LeaseId,
    provider_key: &EncryptionKey,
    argv: Vec<String>,
    service: Option<String>,
) -> Result<Option<i64>> {
    let terminal = std::io::stdin().is_terminal();
    let tty = if terminal {
        Some(window_size().unwrap_or((80, 24)))
    } else {
        None
    };
    let (mut tx, mut rx) = provider
        .shell(lease, provider_key, argv, service, tty)
        .await?;
    let raw = if terminal {
        Some(RawMode::enable()?)
    } else {
        None
    };
    let mut winch = if terminal {
        Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
                .context("cannot watch the terminal's size")?,
        )
    } else {
        None
    };
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; 16 * 1024];
    let mut input_open = true;
    let result = loop {
        tokio::select! {
            read = stdin.read(&mut buf), if input_open => match read {
                Ok(0) | Err(_) => {
                    input_open = false;
                    if let Err(why) = tx.send(&Frame::Eof).await {
                        break Err(anyhow::anyhow!("the shell's connection failed: {why}"));
                    }
                }
                Ok(n) => {
                    if let Err(why) = tx.send(&Frame::Data(buf[..n].to_vec())).await {
                        break Err(anyhow::anyhow!("the shell's connection failed: {why}"));
                    }
                }
            },
            Some(()) = async { winch.as_mut()?.recv().await } => {
                if let Some((cols, rows)) = window_size() {
                    let _ = tx.send(&Frame::Resize { cols, rows }).await;
                }
            }
            frame = rx.recv() => match frame {
                Some(Ok(Frame::Data(bytes))) => {
                    stdout.write_all(&bytes).await?;
                    stdout.flush().await?;
                }
                Some(Ok(Frame::Exit(code))) => break Ok(code),
                Some(Ok(Frame::Error(why))) => break Err(anyhow::anyhow!("the provider says: {why}")),
                Some(Ok(_)) => {}
                Some(Err(why)) => break Err(anyhow::anyhow!("{why}")),
                None => break Err(anyhow::anyhow!("the connection ended before the command did")),
            },
        }
    };
    tx.close().await;
    drop(raw);
    match result {
        Ok(code) => Ok(code),
        Err(e) => bail!("{e}"),
    }
}
