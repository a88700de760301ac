//! How a followed job ended, told truthfully: a process exit code a script can test, a line for
//! people (with a hint and the last lines of the log), and the same facts under `--json`. `job
//! submit --wait`, `job wait`, `job follow` and `demo` end through here. Ctrl-C while one of
//! them waits leaves the order as it is and says what that means and how to re-attach or
//! cancel.
//!
//! Exit codes (documented in `gpunet --help` and the README; never renumbered):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | the job completed and its command exited 0 |
//! | 1 | gpunet itself failed: bad arguments or spec, no network, a refused transaction |
//! | 2 | the job's command failed: it exited nonzero (`workload_failed`) |
//! | 3 | a limit or the provider ended the job: `timed_out`, `out_of_memory`, `disk_exceeded`, `escrow_exhausted`, `insufficient_funds`, `max_duration_reached`, `start_failed`, `image_unavailable`, `manifest_rejected`, `start_timeout`, and `provider_lost` or `provider_left` once no attempt is left |
//! | 4 | the job was cancelled |
//! | 5 | the job never ran: no provider took the order before it expired |
//! | 130 | interrupted (Ctrl-C); the order is left as it is |

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gpunet_api::node::{LeaseState, LeaseView, OrderState, OrderView};
use gpunet_api::provider::WorkloadState;
use gpunet_client::{KeyFile, NodeClient, ProviderClient};
use gpunet_protocol::{LeaseEndReason, OrderId};
use serde::Serialize;

use crate::Conn;
use crate::jobs::{self, Followed};
use crate::progress::Progress;

/// gpunet itself failed (arguments, spec, network, a refused transaction).
pub const EXIT_ERROR: u8 = 1;
/// Ctrl-C: 128 + SIGINT, as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Lines of the log kept for the report of a job that did not succeed.
pub const LOG_TAIL_LINES: usize = 10;
/// Longest log line kept in the tail, in characters; longer ones are cut.
const LOG_LINE_CHARS: usize = 500;
/// A log "line" without a newline is cut into lines of at most this many bytes.
const LOG_PARTIAL_BYTES: usize = 64 * 1024;
/// Plaintext bytes of log asked for per request.
const LOG_CHUNK_BYTES: usize = 64 * 1024;
/// How long the log may take to reach its end once the chain says the job ended.
const LOG_GRACE: Duration = Duration::from_secs(3);
/// How often the log is polled while nothing new comes.
const LOG_POLL: Duration = Duration::from_millis(250);

/// How a job ended, as far as its exit code goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobExit {
    /// Completed, exit code 0.
    Completed,
    /// The job's command exited nonzero.
    Failed,
    /// A limit or the provider ended it.
    Stopped,
    /// The tenant cancelled it.
    Cancelled,
    /// No provider ever ran it.
    NeverRan,
}

impl JobExit {
    /// The process exit code; see the module doc.
    pub const fn code(self) -> u8 {
        match self {
            JobExit::Completed => 0,
            JobExit::Failed => 2,
            JobExit::Stopped => 3,
            JobExit::Cancelled => 4,
            JobExit::NeverRan => 5,
        }
    }

    /// The exit for a lease that ended for `reason`, its command having exited `exit_code`.
    pub fn of_lease(reason: LeaseEndReason, exit_code: Option<i32>) -> JobExit {
        // No wildcard: a new end reason must be placed here on purpose.
        match reason {
            LeaseEndReason::Completed if exit_code.unwrap_or(0) == 0 => JobExit::Completed,
            LeaseEndReason::Completed | LeaseEndReason::WorkloadFailed => JobExit::Failed,
            LeaseEndReason::CancelledByTenant => JobExit::Cancelled,
            LeaseEndReason::OutOfMemory
            | LeaseEndReason::TimedOut
            | LeaseEndReason::ManifestRejected
            | LeaseEndReason::ImageUnavailable
            | LeaseEndReason::StartFailed
            | LeaseEndReason::StartTimeout
            | LeaseEndReason::EscrowExhausted
            | LeaseEndReason::MaxDurationReached
            | LeaseEndReason::DiskExceeded
            | LeaseEndReason::ProviderLost
            | LeaseEndReason::ProviderLeft
            | LeaseEndReason::InsufficientFunds => JobExit::Stopped,
        }
    }
}

/// What the tenant can do about an end reason, in its own words.
pub fn hint(reason: LeaseEndReason) -> &'static str {
    match reason {
        LeaseEndReason::Completed => "the job completed",
        LeaseEndReason::WorkloadFailed => {
            "the job's command failed; the last lines of its log are below, all of it with `gpunet job logs`"
        }
        LeaseEndReason::OutOfMemory => {
            "the job needed more than its resources.memory; ask for more, e.g. memory: 4Gi"
        }
        LeaseEndReason::TimedOut | LeaseEndReason::MaxDurationReached => {
            "the job ran past its limits.max_duration; raise it, e.g. max_duration: 2h"
        }
        LeaseEndReason::DiskExceeded => {
            "the job wrote more than its resources.disk; ask for more, e.g. disk: 10Gi"
        }
        LeaseEndReason::EscrowExhausted => {
            "the deposit ran out at the lease's price; raise pricing.deposit"
        }
        LeaseEndReason::ImageUnavailable => {
            "the provider could not get run.image; check its name and that it can be pulled (the deposit was refunded)"
        }
        LeaseEndReason::StartFailed => {
            "the provider could not start run.command; check that the program exists where the job runs"
        }
        LeaseEndReason::ManifestRejected => {
            "the provider refused the job's manifest; the detail says why"
        }
        LeaseEndReason::StartTimeout => {
            "the provider did not start the job in time, usually because no manifest reached it (the submitting command stopped before sending it)"
        }
        LeaseEndReason::ProviderLost => {
            "its provider stopped proving the job runs and every attempt the recovery policy allows was used; you paid only up to the provider's last proof of life. Raise recovery.max_attempts to retry more"
        }
        LeaseEndReason::ProviderLeft => {
            "its provider left the network and every attempt the recovery policy allows was used; raise recovery.max_attempts"
        }
        LeaseEndReason::InsufficientFunds => {
            "the escrow ran out and nobody topped it up during the pause; next time raise pricing.deposit or run `gpunet job top-up` when warned (logs and outputs are kept)"
        }
        LeaseEndReason::CancelledByTenant => {
            "the job was cancelled; it paid for the time it ran and the rest was refunded"
        }
    }
}

/// How a job ended: what `--json` prints and the text is made from.
#[derive(Debug, Clone, Serialize)]
pub struct Ending {
    pub job: OrderId,
    /// `completed`, `failed`, `stopped`, `cancelled` or `never_ran`.
    pub outcome: JobExit,
    /// The lease's end reason (`workload_failed`, `out_of_memory`, …), or `expired` or
    /// `cancelled` for an order that never got a lease.
    pub end_reason: String,
    /// The exit code of the job's command, when it ran and exited.
    pub exit_code: Option<i32>,
    /// What gpunet exits with.
    pub exit_status: u8,
    /// The provider's explanation, or why the order ended.
    pub detail: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
    /// The last lines of the job's log.
    pub log_tail: Vec<String>,
    /// Why the log could not be read, when it could not.
    pub log_error: Option<String>,
}

impl Ending {
    pub fn of_lease(job: OrderId, lease: &LeaseView, tail: LogTail) -> Ending {
        let reason = lease.end_reason.unwrap_or(LeaseEndReason::Completed);
        let exit_code = lease.result.as_ref().and_then(|r| r.exit_code);
        let outcome = JobExit::of_lease(reason, exit_code);
        let detail = lease
            .result
            .as_ref()
            .map(|r| r.detail.trim().to_owned())
            .filter(|d| !d.is_empty());
        Ending {
            job,
            outcome,
            end_reason: reason.as_str().to_owned(),
            exit_code,
            exit_status: outcome.code(),
            detail,
            hint: (outcome != JobExit::Completed).then(|| hint(reason).to_owned()),
            // A job that never started has no log to miss.
            log_error: lease.started_ms.and(tail.error.clone()),
            log_tail: tail.into_lines(),
        }
    }

    /// An order that ended without running: expired or cancelled. `why` is what following it
    /// found.
    pub fn of_order(order: &OrderView, why: String) -> Ending {
        let (outcome, end_reason) = match order.state {
            OrderState::Cancelled => (JobExit::Cancelled, "cancelled"),
            _ => (JobExit::NeverRan, "expired"),
        };
        Ending {
            job: order.id,
            outcome,
            end_reason: end_reason.to_owned(),
            exit_code: None,
            exit_status: outcome.code(),
            detail: Some(why),
            hint: None,
            log_tail: Vec::new(),
            log_error: None,
        }
    }

    /// Prints the verdict; with `tail`, the last lines of the log too (unless it succeeded).
    pub fn print_text(&self, tail: bool) {
        match (self.outcome, self.exit_code) {
            (JobExit::Completed, _) => println!("✓ completed: exit code 0"),
            (JobExit::Failed, Some(code)) => println!("✗ failed: exit code {code}"),
            (JobExit::Failed, None) => println!("✗ failed: {}", self.end_reason),
            _ => println!(
                "✗ {}: {}",
                self.end_reason,
                self.hint
                    .as_deref()
                    .or(self.detail.as_deref())
                    .unwrap_or("")
            ),
        }
        if self.outcome == JobExit::Completed {
            return;
        }
        if self.outcome == JobExit::Failed
            && let Some(h) = &self.hint
        {
            println!("  {h}");
        }
        // A failed command's detail only repeats its exit code.
        let repeats = self.outcome == JobExit::Failed && self.exit_code.is_some();
        if let Some(d) = &self.detail
            && self.hint.is_some()
            && !repeats
        {
            println!("  detail: {d}");
        }
        if tail && !self.log_tail.is_empty() {
            println!("last {} line(s) of its log:", self.log_tail.len());
            for line in &self.log_tail {
                println!("  | {line}");
            }
        }
        if let Some(e) = &self.log_error {
            println!("  (its log could not be read: {e})");
        }
    }

    /// `Ok` for a job that completed, else the error that makes gpunet exit with this
    /// ending's code (and print nothing more).
    pub fn exit(&self) -> Result<()> {
        match self.exit_status {
            0 => Ok(()),
            code => Err(ExitWith(code).into()),
        }
    }
}

/// Makes `main` exit with this code and print nothing: the command has said it all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitWith(pub u8);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

/// The last lines of a log as it streams past, each line handed on once complete.
#[derive(Debug, Default)]
pub struct LogTail {
    lines: VecDeque<String>,
    partial: String,
    error: Option<String>,
}

impl LogTail {
    /// Takes the next slice of log text; hands each completed line to `each`.
    pub fn push(&mut self, text: &str, mut each: impl FnMut(&str)) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.keep(line.trim_end_matches(['\n', '\r']), &mut each);
        }
        if self.partial.len() > LOG_PARTIAL_BYTES {
            let line = std::mem::take(&mut self.partial);
            self.keep(&line, &mut each);
        }
    }

    /// The log has ended: a last line without a newline is a line too.
    pub fn flush(&mut self, mut each: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.keep(&line, &mut each);
        }
    }

    fn keep(&mut self, line: &str, each: &mut impl FnMut(&str)) {
        each(line);
        let kept: String = match line.char_indices().nth(LOG_LINE_CHARS) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line.to_owned(),
        };
        if self.lines.len() == LOG_TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(kept);
    }

    pub fn into_lines(self) -> Vec<String> {
        self.lines.into()
    }
}

/// Reads the job's log from its provider as it grows (once the order has a lease), into
/// `tail`, echoing each line to stdout when `echo` is given; returns when the provider says the
/// log is finished or the order ended without a lease. Errors (the provider not serving the log
/// yet, unreachable) are retried; the last one is kept in `tail`.
async fn read_log(
    client: &NodeClient,
    key: &KeyFile,
    order: OrderId,
    tail: &mut LogTail,
    echo: Option<&Progress>,
) {
    let print = |line: &str| {
        if let Some(p) = echo {
            p.print_out(line);
        }
    };
    let secret = key.output_secret();
    // The attempt whose log was read to its end (or whose provider is gone): a retry on a new
    // provider has a log of its own, which follows.
    let mut done: Option<gpunet_protocol::LeaseId> = None;
    loop {
        let lease = loop {
            if let Ok(o) = client.order(order).await {
                if let Some(l) = o.lease.filter(|l| Some(l.id) != done) {
                    break l;
                }
                if matches!(o.state, OrderState::Expired | OrderState::Cancelled)
                    || (o.state == OrderState::Closed && done.is_some())
                {
                    return;
                }
            }
            tokio::time::sleep(LOG_POLL).await;
        };
        let pc = ProviderClient::new(&lease.provider_endpoint, key.clone());
        let mut offset = 0;
        loop {
            match pc.logs(lease.id, offset, LOG_CHUNK_BYTES, &secret).await {
                Ok(chunk) => {
                    tail.error = None;
                    tail.push(&chunk.text, print);
                    offset = chunk.next_offset;
                    if chunk.finished {
                        tail.flush(print);
                        break;
                    }
                    if chunk.text.is_empty() {
                        tokio::time::sleep(LOG_POLL).await;
                    }
                }
                Err(e) => {
                    tail.error = Some(e.to_string());
                    // A lost provider never answers again: once the chain has moved past its
                    // lease, go on to the next attempt's log.
                    let moved_on = client.order(order).await.is_ok_and(|o| {
                        o.lease.as_ref().is_none_or(|l| l.id != lease.id)
                            || o.lease.is_some_and(|l| l.state == LeaseState::Ended)
                    });
                    if moved_on {
                        tail.flush(print);
                        break;
                    }
                    tokio::time::sleep(LOG_POLL * 2).await;
                }
            }
        }
        done = Some(lease.id);
    }
}

/// Follows order `order` to its end (delivering `spec`'s manifest when given, as `job submit`
/// does), reading its log meanwhile — printed as it comes with `stream_log` — and says how it
/// ended. An order that expired or was cancelled is an ending too; anything else that stops
/// the following is an error.
pub async fn follow_to_end(
    client: &NodeClient,
    key: &KeyFile,
    order: OrderId,
    spec: Option<&crate::jobs::Submission>,
    started: Instant,
    progress: &Progress,
    stream_log: bool,
) -> Result<(Option<Followed>, Ending)> {
    let mut tail = LogTail::default();
    let followed = {
        let log = read_log(
            client,
            key,
            order,
            &mut tail,
            stream_log.then_some(progress),
        );
        let follow = jobs::follow(client, key, order, spec, true, started, progress);
        // The escrow's warnings (running low, paused, resumed) as they happen.
        let escrow = jobs::watch_escrow(client, order, None, |_, notice| progress.warn(notice));
        tokio::pin!(log, follow, escrow);
        let mut log_done = false;
        let followed = loop {
            tokio::select! {
                r = &mut follow => break r,
                () = &mut log, if !log_done => log_done = true,
                () = &mut escrow => {}
            }
        };
        if !log_done {
            let _ = tokio::time::timeout(LOG_GRACE, &mut log).await;
        }
        followed
    };
    tail.flush(|line| {
        if stream_log {
            progress.print_out(line);
        }
    });
    match followed {
        Ok(f) => {
            let lease = f.lease.as_ref().context("the job ended without a lease")?;
            let ending = Ending::of_lease(order, lease, tail);
            Ok((Some(f), ending))
        }
        Err(e) => match client.order(order).await {
            Ok(o) if matches!(o.state, OrderState::Expired | OrderState::Cancelled) => {
                Ok((None, Ending::of_order(&o, format!("{e:#}"))))
            }
            _ => Err(e),
        },
    }
}

/// Runs `work` until it finishes or Ctrl-C; `None` means interrupted.
pub async fn or_interrupt<T>(work: impl Future<Output = T>) -> Option<T> {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No handler could be installed: never "interrupted".
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = work => Some(r),
        () = interrupt => None,
    }
}

/// The flags that name `conn`'s network and key again, for the commands we suggest.
fn flags(conn: &Conn) -> String {
    let mut s = String::new();
    if let Some(api) = &conn.api {
        s.push_str(&format!(" --api {api}"));
    }
    if let Some(home) = &conn.home {
        s.push_str(&format!(" --home {}", home.display()));
    }
    if let Some(key) = &conn.key {
        s.push_str(&format!(" --key {}", key.display()));
    }
    s
}

/// Says what an interrupted wait left behind — order `order` (if it was created) as the chain
/// has it now, and the exact commands to re-attach or cancel — and returns the error that
/// exits 130.
pub async fn interrupted(
    client: &NodeClient,
    key: &KeyFile,
    order: Option<OrderId>,
    conn: &Conn,
    progress: &Progress,
) -> anyhow::Error {
    progress.finish();
    let f = flags(conn);
    let Some(id) = order else {
        eprintln!(
            "interrupted while submitting: the order may have gone in; see `gpunet job list{f}`"
        );
        return ExitWith(EXIT_INTERRUPTED).into();
    };
    let now = tokio::time::timeout(Duration::from_secs(3), client.order(id))
        .await
        .ok()
        .and_then(Result::ok);
    // The chain records a start a block after the provider's; between the two, ask the
    // provider whether it has the job.
    let handed_over = match now.as_ref().and_then(|o| o.lease.as_ref()) {
        Some(l) if l.state == LeaseState::Pending => {
            let pc = ProviderClient::new(&l.provider_endpoint, key.clone());
            matches!(
                tokio::time::timeout(Duration::from_secs(3), pc.status(l.id)).await,
                Ok(Ok(w)) if w.state != WorkloadState::AwaitingManifest
            )
        }
        _ => true,
    };
    let cancel = format!("gpunet job cancel {id}{f}");
    let wait = format!("gpunet job wait {id}{f}");
    let follow = format!("gpunet job follow {id}{f}");
    match now {
        Some(o) if o.state == OrderState::Open => eprintln!(
            "interrupted: order {id} is still open, with its deposit of {} usd in escrow.\n\
             Only the command you stopped could hand a provider the job, so once one takes the \
             order the job will not start; cancel it (an open order is refunded in full):\n  \
             {cancel}",
            o.escrow
        ),
        Some(o) if o.lease.as_ref().is_some_and(|l| l.end_reason.is_some()) => {
            eprintln!("interrupted: job {id} has already ended; see how with:\n  {wait}")
        }
        Some(_) if !handed_over => {
            eprintln!(
                "interrupted: job {id} is leased but not started, and only the command you \
                 stopped could hand the provider the job; it will end start_timeout. Cancel it \
                 now:\n  {cancel}"
            )
        }
        Some(o) if o.state == OrderState::Leased => {
            let lease = o.lease.as_ref();
            eprintln!(
                "interrupted: job {id} is still running{}, paid from its escrow.\n  \
                 re-attach:        {wait}\n  \
                 with its log:     {follow}\n  \
                 stop and refund:  {cancel}",
                lease
                    .map(|l| format!(
                        " on {} at {} usd/hour",
                        l.provider.short(),
                        l.price_per_hour
                    ))
                    .unwrap_or_default()
            )
        }
        Some(o) => eprintln!(
            "interrupted: order {id} is {}; see it with:\n  gpunet job status {id}{f}",
            format!("{:?}", o.state).to_lowercase()
        ),
        None => eprintln!(
            "interrupted: order {id} is left as it is (the node did not answer just now).\n  \
             re-attach:        {wait}\n  \
             stop and refund:  {cancel}"
        ),
    }
    ExitWith(EXIT_INTERRUPTED).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_completed_job_with_exit_code_zero_exits_zero() {
        use LeaseEndReason as R;
        let cases = [
            (R::Completed, Some(0), 0),
            (R::Completed, None, 0),
            (R::Completed, Some(1), 2),
            (R::WorkloadFailed, Some(3), 2),
            (R::WorkloadFailed, None, 2),
            (R::OutOfMemory, Some(137), 3),
            (R::TimedOut, None, 3),
            (R::DiskExceeded, None, 3),
            (R::EscrowExhausted, None, 3),
            (R::MaxDurationReached, None, 3),
            (R::ImageUnavailable, None, 3),
            (R::StartFailed, None, 3),
            (R::ManifestRejected, None, 3),
            (R::StartTimeout, None, 3),
            (R::CancelledByTenant, None, 4),
        ];
        for (reason, code, want) in cases {
            assert_eq!(
                JobExit::of_lease(reason, code).code(),
                want,
                "{reason} exit code {code:?}"
            );
        }
        assert_eq!(JobExit::NeverRan.code(), 5);
    }

    #[test]
    fn the_log_tail_keeps_the_last_lines_whole_and_hands_each_on_once() {
        let mut tail = LogTail::default();
        let mut seen = Vec::new();
        for piece in ["li", "ne 1\nline 2\n", "line", " 3"] {
            tail.push(piece, |l| seen.push(l.to_owned()));
        }
        tail.flush(|l| seen.push(l.to_owned()));
        assert_eq!(seen, ["line 1", "line 2", "line 3"]);
        let mut tail = LogTail::default();
        let text: String = (0..25).map(|i| format!("{i}\r\n")).collect();
        tail.push(&text, |_| {});
        let lines = tail.into_lines();
        assert_eq!(lines.len(), LOG_TAIL_LINES);
        assert_eq!(lines.first().map(String::as_str), Some("15"));
        assert_eq!(lines.last().map(String::as_str), Some("24"));
    }
}
