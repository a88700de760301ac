//! Commands run inside a running, sandboxed process workload: the process driver's `exec`
//! (`gpunet job exec`) and `shell` (`gpunet job shell`).
//!
//! The command joins the workload's sandbox rather than getting one of its own (see
//! `sys::sandbox::apply_enter`): the lease's cgroup, so its memory, processes and CPU count
//! against the lease's limits and `pause` freezes it too; every namespace of the sandbox's
//! init, so it sees the workload's files (`/work`, `/outputs`, `/inputs`, `/tmp`), processes
//! and loopback, and nothing of the host's; the workload's uid, no capabilities, its rlimits,
//! Landlock rules and seccomp filter. It has the workload's environment, starts in `/work`,
//! and ends with the workload at the latest (the kernel kills every process of a PID
//! namespace once its init has ended). What a hostile tenant can do inside is what its own
//! workload could already do.
//!
//! Unlike `docker exec`, a command still running at `exec`'s timeout is killed, and a shell's
//! command is killed once its session is dropped (the tenant's connection closed): a lease
//! cannot collect stray commands. The command has a Landlock domain of its own, so it cannot
//! signal the workload's processes (nor they it), nor reach their abstract sockets.
//!
//! Only the agent that started a workload can enter it (it holds the init's pidfd); after an
//! agent restart, and where the machine has no sandbox, both say why they cannot.

use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::error::DriverError;
use crate::sandbox::EnterTarget;
use crate::workload::{ExecOutput, MAX_EXEC_OUTPUT_BYTES, WorkloadSpec};

/// Bytes of one read from a command's output.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// Exit code reported for a program that is not in the sandbox, as a shell would.
const NOT_FOUND_EXIT_CODE: i64 = 127;

/// The way into one running sandboxed workload.
#[derive(Debug)]
pub(crate) struct Inside {
    /// The workload's spec, for its environment and hostname.
    spec: WorkloadSpec,
    target: Arc<EnterTarget>,
}

impl Inside {
    pub(crate) fn new(spec: WorkloadSpec, target: Arc<EnterTarget>) -> Inside {
        Inside { spec, target }
    }

    /// The name the workload answers to, if its spec gave one.
    pub(crate) fn hostname(&self) -> Option<&str> {
        self.spec.hostname.as_deref()
    }

    fn workload_id(&self) -> &str {
        &self.spec.workload_id
    }

    /// `argv` with the workload's environment, set to run inside its sandbox.
    fn command(&self, argv: &[String], tty: bool) -> Result<std::process::Command, DriverError> {
        if argv.is_empty() {
            return Err(DriverError::Spawn {
                workload_id: self.workload_id().to_owned(),
                program: String::new(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command given"),
            });
        }
        let mut command = crate::process::command_in(&self.spec, true, argv);
        if tty {
            command.env("TERM", "xterm-256color");
        }
        self.target.apply(&mut command, tty)?;
        Ok(command)
    }

    /// Spawns `command`; `Ok(None)` when its program is not in the sandbox.
    fn spawn(
        &self,
        command: std::process::Command,
        argv: &[String],
    ) -> Result<Option<tokio::process::Child>, DriverError> {
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        match command.spawn() {
            Ok(child) => Ok(Some(child)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            // The init is gone: the workload has ended (or is ending).
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(DriverError::NotRunning {
                workload_id: self.workload_id().to_owned(),
            }),
            Err(source) => Err(DriverError::Spawn {
                workload_id: self.workload_id().to_owned(),
                program: argv[0].clone(),
                source,
            }),
        }
    }

    /// Runs `argv` without input and returns its exit code and output (each stream at most
    /// [`MAX_EXEC_OUTPUT_BYTES`]); at `timeout` it is killed, and the output is what it wrote.
    pub(crate) async fn exec(
        &self,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DriverError> {
        let mut command = self.command(argv, false)?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let Some(mut child) = self.spawn(command, argv)? else {
            return Ok(not_found(argv));
        };
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let mut stdout_read = Captured::default();
        let mut stderr_read = Captured::default();
        let ran = tokio::time::timeout(timeout, async {
            tokio::join!(stdout_read.read(stdout), stderr_read.read(stderr));
            child.wait().await
        })
        .await;
        let mut out = ExecOutput {
            truncated: stdout_read.truncated || stderr_read.truncated,
            stdout: stdout_read.bytes,
            stderr: stderr_read.bytes,
            ..ExecOutput::default()
        };
        match ran {
            Ok(Ok(status)) => out.exit_code = status.code().map(i64::from),
            Ok(Err(source)) => {
                return Err(DriverError::Os {
                    workload_id: self.workload_id().to_owned(),
                    action: "wait for a command inside the workload",
                    source,
                });
            }
            Err(_) => {
                out.timed_out = true;
                let _ = child.kill().await;
            }
        }
        Ok(out)
    }

    /// Starts `argv` with its input attached and, with `tty`, a pseudo-terminal of
    /// `cols` × `rows`. Dropping the session kills the command.
    pub(crate) fn shell(
        &self,
        argv: &[String],
        tty: Option<(u16, u16)>,
    ) -> Result<crate::ShellSession, DriverError> {
        let mut command = self.command(argv, tty.is_some())?;
        let os = |action: &'static str| {
            let workload_id = self.workload_id().to_owned();
            move |source| DriverError::Os {
                workload_id,
                action,
                source,
            }
        };
        let terminal = match tty {
            Some((cols, rows)) => {
                let (master, terminal) =
                    crate::sys::open_pty().map_err(os("open a pseudo-terminal"))?;
                crate::sys::set_terminal_size(&master, cols, rows)
                    .map_err(os("size a pseudo-terminal"))?;
                let dup = |fd: &OwnedFd| fd.try_clone().map_err(os("open a pseudo-terminal"));
                command
                    .stdin(dup(&terminal)?)
                    .stdout(dup(&terminal)?)
                    .stderr(terminal);
                Some(master)
            }
            None => {
                command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                None
            }
        };
        // The command (and with it this side's copies of the terminal) goes once spawned, so
        // reading the terminal ends when the command's side has closed.
        let Some(mut child) = self.spawn(command, argv)? else {
            return Err(DriverError::Spawn {
                workload_id: self.workload_id().to_owned(),
                program: argv[0].clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such program in the job's sandbox",
                ),
            });
        };
        let (output, input): (_, Pin<Box<dyn AsyncWrite + Send>>) = match &terminal {
            Some(master) => {
                let dup = |fd: &OwnedFd| {
                    fd.try_clone()
                        .map(|fd| tokio::fs::File::from_std(std::fs::File::from(fd)))
                        .map_err(os("open a pseudo-terminal"))
                };
                (chunks(dup(master)?).boxed(), Box::pin(dup(master)?))
            }
            None => {
                let stdout = child.stdout.take().map(|o| chunks(o).boxed());
                let stderr = child.stderr.take().map(|e| chunks(e).boxed());
                let output = futures::stream::select(
                    stdout.unwrap_or_else(|| futures::stream::empty().boxed()),
                    stderr.unwrap_or_else(|| futures::stream::empty().boxed()),
                );
                let stdin = child.stdin.take().map(|i| Box::pin(i) as Pin<Box<_>>);
                (output.boxed(), Box::pin(Input(stdin)) as Pin<Box<_>>)
            }
        };
        Ok(crate::ShellSession {
            output,
            input,
            control: Box::new(ProcessShell {
                child: std::sync::Mutex::new(child),
                terminal,
            }),
        })
    }
}

/// What `exec` gives for a program the sandbox does not have, as `docker exec` would.
fn not_found(argv: &[String]) -> ExecOutput {
    ExecOutput {
        exit_code: Some(NOT_FOUND_EXIT_CODE),
        stderr: format!("{}: no such program in the job's sandbox\n", argv[0]).into_bytes(),
        ..ExecOutput::default()
    }
}

/// One output stream of `exec`, kept up to [`MAX_EXEC_OUTPUT_BYTES`] and read to its end.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Captured {
    async fn read(&mut self, stream: Option<impl AsyncRead + Unpin>) {
        let Some(mut stream) = stream else { return };
        let mut buffer = vec![0u8; READ_BUFFER_BYTES];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let room = MAX_EXEC_OUTPUT_BYTES.saturating_sub(self.bytes.len());
                    if n > room {
                        self.truncated = true;
                    }
                    self.bytes.extend_from_slice(&buffer[..n.min(room)]);
                }
            }
        }
    }
}

/// What `reader` gives, chunk by chunk, until its end or an error (a pseudo-terminal whose
/// other side has closed reads as `EIO`).
fn chunks(reader: impl AsyncRead + Unpin + Send + 'static) -> impl futures::Stream<Item = Vec<u8>> {
    futures::stream::unfold(reader, |mut reader| async move {
        let mut buffer = vec![0u8; READ_BUFFER_BYTES];
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((buffer, reader))
            }
        }
    })
}

/// A command's standard input whose shutdown closes it, so the command reads end-of-file.
struct Input(Option<Pin<Box<dyn AsyncWrite + Send>>>);

impl AsyncWrite for Input {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.0 {
            Some(inner) => inner.as_mut().poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.0 {
            Some(inner) => inner.as_mut().poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(inner) = &mut self.0 {
            std::task::ready!(inner.as_mut().poll_flush(cx))?;
        }
        self.0 = None;
        Poll::Ready(Ok(()))
    }
}

/// A shell's command: resized through its pseudo-terminal, killed when dropped.
struct ProcessShell {
    child: std::sync::Mutex<tokio::process::Child>,
    terminal: Option<OwnedFd>,
}

#[async_trait::async_trait]
impl crate::ShellControl for ProcessShell {
    async fn resize(&self, cols: u16, rows: u16) {
        if let Some(master) = &self.terminal
            && let Err(error) = crate::sys::set_terminal_size(master, cols, rows)
        {
            tracing::debug!(%error, "could not resize a shell's terminal");
        }
    }

    async fn exit_code(&self) -> Option<i64> {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let status = child.try_wait().ok()??;
        // The process the agent spawned ends as the command did: a signal as 128 + its number.
        status.code().map(i64::from)
    }
}
