//! The lease lifecycle on this machine as one pure state machine: [`step`] takes where a lease
//! is ([`Phase`]) and what happened ([`Input`]) and returns where it is now and what the agent
//! must do about it ([`Effect`]s, in order). [`crate::leases`] is the runner: it feeds inputs
//! from the chain, the tenant, the driver and its timers, stores the new phase in the lease's
//! record, and carries the effects out.
//!
//! ```text
//! AwaitingManifest ─ManifestAccepted▶ Starting ─Started▶ Started ─StartRecorded▶ Running ⇄ Paused
//!   │ ManifestRejected, ManifestTimeout, StartFailed ▶ Reporting
//!   │ ExitRequested ▶ Releasing
//! Started, Running, Paused ─LeaseEnded, ExitRequested, PauseUnsupported, StartNotRecorded▶ Stopping{why}
//! Running, Paused, Stopping ─WorkloadExited▶ Concluding{then} ─OutputsKept▶ Reporting ─Reported▶ Ended
//!                                                                         Releasing ─Released▶ Ended
//! ```
//!
//! The rules that matter most:
//! - A lease the chain ended while its workload runs (cancelled, out of time, or ended while
//!   this agent was away or cut off: an *orphan*) is stopped at once, and nothing is claimed
//!   for it: no result is reported, no lease released, no checkpoint written over the next
//!   attempt's.
//! - A provider that leaves (`ExitRequested`, seen on chain) gives each workload SIGTERM and
//!   [`Ctx::exit_grace`] to end, keeps its last checkpoint, then releases the lease
//!   (`ReleaseLease`: not a failure, the job is retried elsewhere); a lease still waiting for its
//!   manifest is released at once. A workload that ends by itself meanwhile is reported as it
//!   ended — leaving never hides a result.
//! - A paused lease (its escrow ran out) keeps its workload frozen; a driver that cannot
//!   freeze it stops it instead, and the lease then ends with the workload's exit.
//! - An input a phase does not expect changes nothing and asks for nothing: duplicates (an
//!   event seen twice, a timer that fires late) are harmless, and nothing here panics.
//!
//! Architecture Invariant: [`step`] is pure — no I/O, no clock, no randomness, no locks. Time
//! arrives only as inputs (`ManifestTimeout`, `CheckpointDue`); the same phase and input always
//! give the same answer.

use std::time::Duration;

use gpunet_protocol::WorkloadOutcome;
use gpunet_runtime::ExitReason;
use serde::{Deserialize, Serialize};

/// Where a lease is in its life on this machine. Stored in the lease's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Tracked; the tenant's manifest has not arrived.
    AwaitingManifest,
    /// A manifest was accepted; the driver is starting the workload.
    Starting,
    /// The workload runs; `StartLease` is on its way to the chain.
    Started,
    /// The workload runs, the chain recorded its start, and it is supervised.
    Running,
    /// The chain paused the lease (its escrow ran out): the workload is frozen.
    Paused {
        /// Whether a supervisor already waits for the workload's exit (the pause may be seen
        /// before `StartLease`'s inclusion is).
        supervised: bool,
    },
    /// The workload was asked to stop; its exit is awaited.
    Stopping {
        why: StopCause,
        /// Whether a supervisor already waits for the workload's exit.
        supervised: bool,
    },
    /// The workload ended: its last checkpoint and its outputs are being kept.
    Concluding { then: Settle },
    /// The result is being reported (`CompleteLease`).
    Reporting {
        outcome: WorkloadOutcome,
        /// What the report says beyond the exit, when the outcome is not the exit's.
        #[serde(default)]
        detail: Option<String>,
    },
    /// The lease is being given back (`ReleaseLease`): this provider is leaving.
    Releasing,
    /// Nothing more to do for it on chain; its logs and outputs are kept until swept.
    Ended,
}

/// Why a workload is being stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopCause {
    /// The chain ended the lease (cancelled, out of time or escrow, lost while this agent was
    /// away): nothing is claimed for it.
    LeaseEnded,
    /// The chain paused the lease and the driver cannot freeze the workload.
    PauseUnsupported,
    /// `StartLease` was refused or never included.
    StartNotRecorded { why: String },
    /// This provider is leaving: the lease is released once the workload has ended.
    Leaving,
}

/// What is done once a workload's exit has been dealt with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settle {
    /// Report the result with `CompleteLease`.
    Report {
        outcome: WorkloadOutcome,
        #[serde(default)]
        detail: Option<String>,
    },
    /// Give the lease back with `ReleaseLease`.
    Release,
    /// Nothing: the chain already ended the lease.
    Nothing,
}

/// What the driver says of a lease's workload after an agent restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The record names no workload (none was started, or the phase needs none).
    NoWorkload,
    /// It still runs (or is frozen).
    Running,
    /// It ended while the agent was away (`Lost` when nothing is known).
    Exited(ExitReason),
}

/// Something that happened to a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The tenant's manifest opened, matched the order and can run here.
    ManifestAccepted,
    /// The manifest matches the order but cannot run here.
    ManifestRejected { why: String },
    /// No valid manifest arrived within the agent's manifest timeout.
    ManifestTimeout { after_secs: u64 },
    /// The driver started the workload.
    Started,
    /// The workload could not be started (`image_unavailable`: its image cannot be had).
    StartFailed {
        why: String,
        image_unavailable: bool,
    },
    /// `StartLease` was included.
    StartRecorded,
    /// `StartLease` was refused or could not be sent.
    StartNotRecorded { why: String },
    /// The workload ended.
    WorkloadExited { reason: ExitReason },
    /// The ended workload's outputs were collected and its directory cleaned up (`kept`:
    /// the outputs could be kept).
    OutputsKept { kept: bool },
    /// The chain ended the lease, whatever the reason (our own result included).
    LeaseEndedOnChain,
    /// The chain paused the lease: its escrow ran out.
    LeasePausedOnChain,
    /// A top-up resumed the lease.
    LeaseResumedOnChain,
    /// The driver cannot freeze the workload.
    PauseUnsupported,
    /// This provider is leaving the network (`AnnounceExit` on chain).
    ExitRequested,
    /// Time to look at the workload's checkpoint directory.
    CheckpointDue,
    /// The result was reported (or no longer needs to be).
    Reported,
    /// The lease was released (or no longer needs to be).
    Released,
    /// The agent restarted and found this record; `workload` is what the driver says.
    Restarted { workload: Recovery },
}

/// What the runner must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write the record durably — its new phase, and what [`Effect::Note`] and
    /// [`Effect::Report`] put in it — before anything is done to the world.
    Persist,
    /// Reject the lease if no valid manifest arrives in time.
    ArmManifestTimer,
    /// Start the workload (the manifest's request does, and answers the tenant).
    StartWorkload,
    /// Submit `StartLease`.
    SubmitStart,
    /// Read the published ports, record the endpoints, probe the health check.
    PublishEndpoints,
    /// Look at the checkpoint directory every checkpoint interval.
    StartCheckpointer,
    /// Wait for the workload to end.
    Supervise,
    /// SIGTERM the workload; SIGKILL after `grace`.
    StopWorkload { grace: Duration },
    /// Freeze the workload.
    Pause,
    /// Thaw the workload.
    Resume,
    /// Upload the checkpoint directory if it changed.
    UploadCheckpoint,
    /// Collect the outputs and clean up the workload.
    KeepOutputs,
    /// Record the result and submit `CompleteLease` (`detail`: what to say, when not the exit).
    Report {
        outcome: WorkloadOutcome,
        detail: Option<String>,
    },
    /// Submit `ReleaseLease`.
    ReleaseLease,
    /// Record `detail` for the tenant's view: why the lease ended without a report.
    Note { detail: String },
}

/// What [`step`] is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    /// How long a leaving provider's workloads get between SIGTERM and SIGKILL.
    pub exit_grace: Duration,
    /// How long any other stopped workload gets.
    pub stop_grace: Duration,
}

impl Phase {
    /// The phase of a lease first seen on chain, with what to do, or `None` for a lease that
    /// has ended there. `running_on_chain`: the chain says it runs (or is paused), so its
    /// workload should run here, yet this agent has no record of it.
    pub fn tracked(running_on_chain: bool, leaving: bool) -> (Phase, Vec<Effect>) {
        let (phase, mut effects) = if running_on_chain {
            report(
                WorkloadOutcome::Lost,
                Some("the provider agent lost this workload (no record of it survived)".into()),
            )
        } else if leaving {
            release_unstarted()
        } else {
            (Phase::AwaitingManifest, vec![Effect::ArmManifestTimer])
        };
        effects.insert(0, Effect::Persist);
        (phase, effects)
    }

    /// Whether the lease holds its resources on this machine and is proven alive by
    /// heartbeats: from its creation until its workload's result is known, or until it is
    /// released — but not once the chain has ended it.
    pub fn is_live(&self) -> bool {
        match self {
            Phase::AwaitingManifest
            | Phase::Starting
            | Phase::Started
            | Phase::Running
            | Phase::Paused { .. }
            | Phase::Releasing => true,
            Phase::Stopping { why, .. } => *why != StopCause::LeaseEnded,
            Phase::Concluding { then } => *then != Settle::Nothing,
            Phase::Reporting { .. } | Phase::Ended => false,
        }
    }

    /// Whether a workload may exist for the lease (the driver is asked about it after a
    /// restart).
    pub fn has_workload(&self) -> bool {
        matches!(
            self,
            Phase::Starting
                | Phase::Started
                | Phase::Running
                | Phase::Paused { .. }
                | Phase::Stopping { .. }
                | Phase::Concluding { .. }
        )
    }

    /// Whether a supervisor waits for the workload's exit.
    fn is_supervised(&self) -> bool {
        match self {
            Phase::Running => true,
            Phase::Paused { supervised } | Phase::Stopping { supervised, .. } => *supervised,
            _ => false,
        }
    }

    /// Whether this agent has nothing left to do for the lease but report a result the chain
    /// may already hold: no workload, nothing to release. A leaving agent exits only when
    /// every lease is here.
    pub fn is_settled(&self) -> bool {
        matches!(self, Phase::Reporting { .. } | Phase::Ended)
    }
}

/// Where `phase` goes on `input`, and what to do. Pure and total: an input the phase does not
/// expect returns the phase unchanged and no effects. When the phase changes, the first effect
/// is [`Effect::Persist`].
pub fn step(phase: &Phase, input: &Input, ctx: &Ctx) -> (Phase, Vec<Effect>) {
    let (next, mut effects) = transition(phase, input, ctx);
    if next != *phase && effects.first() != Some(&Effect::Persist) {
        effects.insert(0, Effect::Persist);
    }
    (next, effects)
}

fn transition(phase: &Phase, input: &Input, ctx: &Ctx) -> (Phase, Vec<Effect>) {
    use Input as I;
    use Phase as P;
    let unchanged = || (phase.clone(), Vec::new());
    match (phase, input) {
        // Waiting for the manifest.
        (P::AwaitingManifest, I::ManifestAccepted) => (P::Starting, vec![Effect::StartWorkload]),
        (P::AwaitingManifest, I::ManifestRejected { why }) => report(
            WorkloadOutcome::ManifestRejected,
            Some(format!("manifest rejected: {why}")),
        ),
        (P::AwaitingManifest, I::ManifestTimeout { after_secs }) => report(
            WorkloadOutcome::ManifestRejected,
            Some(format!("no valid manifest arrived within {after_secs} s")),
        ),
        (
            P::AwaitingManifest | P::Starting,
            I::StartFailed {
                why,
                image_unavailable,
            },
        ) => start_failed(why, *image_unavailable),
        (P::AwaitingManifest, I::LeaseEndedOnChain) => (
            P::Ended,
            vec![Effect::Note {
                detail: "the lease ended before a manifest arrived".into(),
            }],
        ),
        (P::AwaitingManifest, I::ExitRequested) => release_unstarted(),
        (P::AwaitingManifest, I::Restarted { .. }) => {
            (P::AwaitingManifest, vec![Effect::ArmManifestTimer])
        }

        // The driver is starting the workload.
        (P::Starting, I::Started) => (
            P::Started,
            vec![Effect::SubmitStart, Effect::PublishEndpoints],
        ),
        (P::Starting, I::LeaseEndedOnChain) => stopping(StopCause::LeaseEnded, false, vec![]),
        (P::Starting, I::ExitRequested) => stopping(StopCause::Leaving, false, vec![]),
        (P::Starting, I::Restarted { workload }) => match workload {
            Recovery::NoWorkload => start_failed(
                "the provider agent restarted while starting the workload",
                false,
            ),
            // A record from before `Started` existed: the workload had started.
            Recovery::Running => (
                P::Running,
                vec![
                    Effect::PublishEndpoints,
                    Effect::StartCheckpointer,
                    Effect::Supervise,
                ],
            ),
            Recovery::Exited(reason) => exited(phase, *reason),
        },

        // The workload runs; its start is on its way to the chain.
        (P::Started, I::StartRecorded) => (
            P::Running,
            vec![Effect::StartCheckpointer, Effect::Supervise],
        ),
        (P::Started, I::StartNotRecorded { why }) => stopping(
            StopCause::StartNotRecorded { why: why.clone() },
            true,
            vec![
                Effect::StopWorkload {
                    grace: ctx.stop_grace,
                },
                Effect::Supervise,
            ],
        ),
        // The chain pauses only a running lease: the start was recorded, its answer is on
        // its way.
        (P::Started, I::LeasePausedOnChain) => {
            (P::Paused { supervised: false }, vec![Effect::Pause])
        }
        (P::Started, I::LeaseEndedOnChain) => stopping(
            StopCause::LeaseEnded,
            false,
            vec![Effect::StopWorkload {
                grace: ctx.stop_grace,
            }],
        ),
        (P::Started, I::ExitRequested) => stopping(
            StopCause::Leaving,
            false,
            vec![Effect::StopWorkload {
                grace: ctx.exit_grace,
            }],
        ),
        (P::Started, I::Restarted { workload }) => restarted_running(phase, *workload),

        // Running (and supervised), or paused by the chain.
        (P::Running, I::CheckpointDue) => unchanged_with(phase, vec![Effect::UploadCheckpoint]),
        (P::Running, I::LeasePausedOnChain) => {
            (P::Paused { supervised: true }, vec![Effect::Pause])
        }
        (P::Paused { supervised }, I::LeaseResumedOnChain) => {
            let next = if *supervised { P::Running } else { P::Started };
            (next, vec![Effect::Resume])
        }
        (P::Paused { supervised: false }, I::StartRecorded) => (
            P::Paused { supervised: true },
            vec![Effect::StartCheckpointer, Effect::Supervise],
        ),
        (P::Paused { supervised: false }, I::StartNotRecorded { why }) => stopping(
            StopCause::StartNotRecorded { why: why.clone() },
            true,
            vec![
                Effect::StopWorkload {
                    grace: ctx.stop_grace,
                },
                Effect::Supervise,
            ],
        ),
        (P::Paused { supervised }, I::PauseUnsupported) => stopping(
            StopCause::PauseUnsupported,
            *supervised,
            vec![Effect::StopWorkload {
                grace: ctx.stop_grace,
            }],
        ),
        (P::Running | P::Paused { .. }, I::WorkloadExited { reason }) => exited(phase, *reason),
        (P::Running | P::Paused { .. }, I::LeaseEndedOnChain) => stopping(
            StopCause::LeaseEnded,
            phase.is_supervised(),
            vec![Effect::StopWorkload {
                grace: ctx.stop_grace,
            }],
        ),
        (P::Running | P::Paused { .. }, I::ExitRequested) => stopping(
            StopCause::Leaving,
            phase.is_supervised(),
            vec![Effect::StopWorkload {
                grace: ctx.exit_grace,
            }],
        ),
        (P::Running | P::Paused { .. }, I::Restarted { workload }) => {
            restarted_running(phase, *workload)
        }

        // Asked to stop.
        (
            P::Stopping {
                why,
                supervised: false,
            },
            I::Started,
        ) => stopping(
            why.clone(),
            true,
            vec![
                Effect::StopWorkload {
                    grace: grace_for(why, ctx),
                },
                Effect::Supervise,
            ],
        ),
        (
            P::Stopping {
                why,
                supervised: false,
            },
            I::StartRecorded | I::StartNotRecorded { .. },
        ) => stopping(why.clone(), true, vec![Effect::Supervise]),
        (
            P::Stopping {
                why,
                supervised: false,
            },
            I::StartFailed {
                why: failure,
                image_unavailable,
            },
        ) => match why {
            StopCause::LeaseEnded => (P::Ended, vec![]),
            _ => start_failed(failure, *image_unavailable),
        },
        (P::Stopping { .. }, I::WorkloadExited { reason }) => exited(phase, *reason),
        (P::Stopping { why, supervised }, I::LeaseEndedOnChain)
            if *why != StopCause::LeaseEnded =>
        {
            stopping(StopCause::LeaseEnded, *supervised, vec![])
        }
        (
            P::Stopping {
                why: StopCause::PauseUnsupported | StopCause::StartNotRecorded { .. },
                supervised,
            },
            I::ExitRequested,
        ) => stopping(StopCause::Leaving, *supervised, vec![]),
        (P::Stopping { why, .. }, I::Restarted { workload }) => match workload {
            Recovery::Running => stopping(
                why.clone(),
                true,
                vec![
                    Effect::StopWorkload {
                        grace: grace_for(why, ctx),
                    },
                    Effect::Supervise,
                ],
            ),
            Recovery::Exited(reason) => exited(phase, *reason),
            Recovery::NoWorkload => match why {
                // Asked to stop while starting, and the agent restarted before the start
                // returned: nothing runs, and nothing is left to claim.
                StopCause::LeaseEnded => (P::Ended, vec![]),
                StopCause::Leaving => release_unstarted(),
                _ => exited(phase, ExitReason::Lost),
            },
        },

        // The workload ended: its checkpoint and outputs are kept, then the lease settled.
        (P::Concluding { then }, I::OutputsKept { kept }) => match then {
            Settle::Report { outcome, detail } => {
                let outcome = if *kept {
                    *outcome
                } else {
                    WorkloadOutcome::Failed
                };
                report(outcome, detail.clone())
            }
            Settle::Release => (P::Releasing, vec![Effect::ReleaseLease]),
            Settle::Nothing => (P::Ended, vec![]),
        },
        (P::Concluding { then }, I::LeaseEndedOnChain) if *then != Settle::Nothing => (
            P::Concluding {
                then: Settle::Nothing,
            },
            vec![],
        ),
        // Interrupted while keeping the outputs: keep them now (the exit is in the record).
        (P::Concluding { .. }, I::Restarted { .. }) => {
            unchanged_with(phase, vec![Effect::KeepOutputs])
        }

        // Settling on chain.
        (P::Reporting { .. }, I::Reported | I::LeaseEndedOnChain) => (P::Ended, vec![]),
        (P::Reporting { outcome, detail }, I::Restarted { .. }) => unchanged_with(
            phase,
            vec![Effect::Report {
                outcome: *outcome,
                detail: detail.clone(),
            }],
        ),
        (P::Releasing, I::Released | I::LeaseEndedOnChain) => (P::Ended, vec![]),
        (P::Releasing, I::Restarted { .. }) => unchanged_with(phase, vec![Effect::ReleaseLease]),

        _ => unchanged(),
    }
}

fn unchanged_with(phase: &Phase, effects: Vec<Effect>) -> (Phase, Vec<Effect>) {
    (phase.clone(), effects)
}

fn report(outcome: WorkloadOutcome, detail: Option<String>) -> (Phase, Vec<Effect>) {
    (
        Phase::Reporting {
            outcome,
            detail: detail.clone(),
        },
        vec![Effect::Report { outcome, detail }],
    )
}

fn start_failed(why: &str, image_unavailable: bool) -> (Phase, Vec<Effect>) {
    if image_unavailable {
        report(WorkloadOutcome::ImageUnavailable, Some(why.to_owned()))
    } else {
        report(
            WorkloadOutcome::StartFailed,
            Some(format!("start failed: {why}")),
        )
    }
}

/// A lease with no workload given back at once (this provider is leaving).
fn release_unstarted() -> (Phase, Vec<Effect>) {
    (
        Phase::Releasing,
        vec![
            Effect::Note {
                detail: "this provider is leaving: the lease was released before its workload \
                         started"
                    .into(),
            },
            Effect::ReleaseLease,
        ],
    )
}

fn stopping(why: StopCause, supervised: bool, effects: Vec<Effect>) -> (Phase, Vec<Effect>) {
    (Phase::Stopping { why, supervised }, effects)
}

fn grace_for(why: &StopCause, ctx: &Ctx) -> Duration {
    match why {
        StopCause::Leaving => ctx.exit_grace,
        _ => ctx.stop_grace,
    }
}

/// After a restart, a workload that was started: supervised again if it runs, concluded if
/// it ended.
fn restarted_running(phase: &Phase, workload: Recovery) -> (Phase, Vec<Effect>) {
    match workload {
        Recovery::Running => {
            // A paused lease stays frozen; a started one is supervised from now on (whether
            // the chain recorded its start is learnt from the chain: it ends the lease if not).
            let next = match phase {
                Phase::Paused { .. } => Phase::Paused { supervised: true },
                _ => Phase::Running,
            };
            // Checkpointing goes on where it was kept (a job without checkpoints has none).
            (
                next,
                vec![
                    Effect::PublishEndpoints,
                    Effect::StartCheckpointer,
                    Effect::Supervise,
                ],
            )
        }
        Recovery::Exited(reason) => exited(phase, reason),
        Recovery::NoWorkload => exited(phase, ExitReason::Lost),
    }
}

/// The workload ended with `reason` while the lease was in `phase`: keep its checkpoint
/// (unless the chain ended the lease: the next attempt may already write its own) and its
/// outputs, then settle as the phase says.
fn exited(phase: &Phase, reason: ExitReason) -> (Phase, Vec<Effect>) {
    let as_ended = Settle::Report {
        outcome: outcome_of(reason),
        detail: None,
    };
    let then = match phase {
        Phase::Stopping { why, .. } => match why {
            StopCause::LeaseEnded => Settle::Nothing,
            StopCause::Leaving if reason == ExitReason::Stopped => Settle::Release,
            StopCause::StartNotRecorded { why } => Settle::Report {
                outcome: WorkloadOutcome::StartFailed,
                detail: Some(format!("the chain did not record the start: {why}")),
            },
            StopCause::Leaving | StopCause::PauseUnsupported => as_ended,
        },
        _ => as_ended,
    };
    let mut effects = Vec::new();
    if then != Settle::Nothing {
        effects.push(Effect::UploadCheckpoint);
    }
    effects.push(Effect::KeepOutputs);
    (Phase::Concluding { then }, effects)
}

/// How a workload's end is reported on chain.
pub fn outcome_of(reason: ExitReason) -> WorkloadOutcome {
    match reason {
        ExitReason::Completed => WorkloadOutcome::Succeeded,
        ExitReason::Failed | ExitReason::Stopped => WorkloadOutcome::Failed,
        // Not the tenant's failure: the chain ends it provider_lost and retries it.
        ExitReason::Lost => WorkloadOutcome::Lost,
        ExitReason::OutOfMemory => WorkloadOutcome::OutOfMemory,
        ExitReason::WallClockLimit | ExitReason::CpuTimeLimit => WorkloadOutcome::TimedOut,
        ExitReason::DiskExceeded => WorkloadOutcome::DiskExceeded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Ctx = Ctx {
        exit_grace: Duration::from_secs(30),
        stop_grace: Duration::from_secs(5),
    };
    const EXIT: Effect = Effect::StopWorkload {
        grace: CTX.exit_grace,
    };
    const STOP: Effect = Effect::StopWorkload {
        grace: CTX.stop_grace,
    };

    fn stopping(why: StopCause, supervised: bool) -> Phase {
        Phase::Stopping { why, supervised }
    }

    fn paused() -> Phase {
        Phase::Paused { supervised: true }
    }

    fn leaving(supervised: bool) -> Phase {
        stopping(StopCause::Leaving, supervised)
    }

    fn orphaned(supervised: bool) -> Phase {
        stopping(StopCause::LeaseEnded, supervised)
    }

    fn exited(reason: ExitReason) -> Input {
        Input::WorkloadExited { reason }
    }

    fn concluding(outcome: WorkloadOutcome) -> Phase {
        Phase::Concluding {
            then: Settle::Report {
                outcome,
                detail: None,
            },
        }
    }

    fn reporting(outcome: WorkloadOutcome, detail: Option<&str>) -> Phase {
        Phase::Reporting {
            outcome,
            detail: detail.map(str::to_owned),
        }
    }

    fn report(outcome: WorkloadOutcome, detail: Option<&str>) -> Effect {
        Effect::Report {
            outcome,
            detail: detail.map(str::to_owned),
        }
    }

    fn restarted(workload: Recovery) -> Input {
        Input::Restarted { workload }
    }

    /// One row: in `phase`, `input` leads to `next` with `effects`.
    #[track_caller]
    fn check(phase: Phase, input: Input, next: Phase, effects: &[Effect]) {
        let got = step(&phase, &input, &CTX);
        assert_eq!(got, (next, effects.to_vec()), "{phase:?} on {input:?}");
    }

    /// In `phase`, `input` changes nothing and asks for nothing.
    #[track_caller]
    fn ignored(phase: Phase, input: Input) {
        check(phase.clone(), input, phase, &[]);
    }

    /// Feeds `inputs` in order from `phase`; the last phase and every effect asked for.
    fn run(phase: Phase, inputs: &[Input]) -> (Phase, Vec<Effect>) {
        let mut effects = Vec::new();
        let mut phase = phase;
        for input in inputs {
            let (next, more) = step(&phase, input, &CTX);
            phase = next;
            effects.extend(more);
        }
        (phase, effects)
    }

    fn all_phases() -> Vec<Phase> {
        let causes = [
            StopCause::LeaseEnded,
            StopCause::PauseUnsupported,
            StopCause::StartNotRecorded { why: "x".into() },
            StopCause::Leaving,
        ];
        let mut phases = vec![
            Phase::AwaitingManifest,
            Phase::Starting,
            Phase::Started,
            Phase::Running,
            paused(),
            Phase::Paused { supervised: false },
            concluding(WorkloadOutcome::Succeeded),
            Phase::Concluding {
                then: Settle::Release,
            },
            Phase::Concluding {
                then: Settle::Nothing,
            },
            reporting(WorkloadOutcome::Failed, None),
            Phase::Releasing,
            Phase::Ended,
        ];
        for why in causes {
            phases.push(stopping(why.clone(), false));
            phases.push(stopping(why, true));
        }
        phases
    }

    fn all_inputs() -> Vec<Input> {
        let mut inputs = vec![
            Input::ManifestAccepted,
            Input::ManifestRejected { why: "x".into() },
            Input::ManifestTimeout { after_secs: 60 },
            Input::Started,
            Input::StartFailed {
                why: "x".into(),
                image_unavailable: false,
            },
            Input::StartFailed {
                why: "x".into(),
                image_unavailable: true,
            },
            Input::StartRecorded,
            Input::StartNotRecorded { why: "x".into() },
            Input::OutputsKept { kept: true },
            Input::OutputsKept { kept: false },
            Input::LeaseEndedOnChain,
            Input::LeasePausedOnChain,
            Input::LeaseResumedOnChain,
            Input::PauseUnsupported,
            Input::ExitRequested,
            Input::CheckpointDue,
            Input::Reported,
            Input::Released,
            restarted(Recovery::NoWorkload),
            restarted(Recovery::Running),
        ];
        for reason in [
            ExitReason::Completed,
            ExitReason::Failed,
            ExitReason::OutOfMemory,
            ExitReason::CpuTimeLimit,
            ExitReason::WallClockLimit,
            ExitReason::Stopped,
            ExitReason::Lost,
            ExitReason::DiskExceeded,
        ] {
            inputs.push(exited(reason));
            inputs.push(restarted(Recovery::Exited(reason)));
        }
        inputs
    }

    #[test]
    fn a_lease_first_seen_waits_for_its_manifest_or_is_released_or_reported_lost() {
        assert_eq!(
            Phase::tracked(false, false),
            (
                Phase::AwaitingManifest,
                vec![Effect::Persist, Effect::ArmManifestTimer]
            )
        );
        let (phase, effects) = Phase::tracked(false, true);
        assert_eq!(phase, Phase::Releasing);
        assert_eq!(effects.first(), Some(&Effect::Persist));
        assert_eq!(effects.last(), Some(&Effect::ReleaseLease));
        let lost = "the provider agent lost this workload (no record of it survived)";
        for leaving in [false, true] {
            assert_eq!(
                Phase::tracked(true, leaving),
                (
                    reporting(WorkloadOutcome::Lost, Some(lost)),
                    vec![Effect::Persist, report(WorkloadOutcome::Lost, Some(lost))]
                ),
                "a workload the chain runs but this agent lost is reported lost, leaving or not"
            );
        }
    }

    #[test]
    fn a_lease_waiting_for_its_manifest() {
        use WorkloadOutcome::{ManifestRejected, StartFailed};
        let p = || Phase::AwaitingManifest;
        check(
            p(),
            Input::ManifestAccepted,
            Phase::Starting,
            &[Effect::Persist, Effect::StartWorkload],
        );
        let why = "manifest rejected: bad";
        check(
            p(),
            Input::ManifestRejected { why: "bad".into() },
            reporting(ManifestRejected, Some(why)),
            &[Effect::Persist, report(ManifestRejected, Some(why))],
        );
        let why = "no valid manifest arrived within 60 s";
        check(
            p(),
            Input::ManifestTimeout { after_secs: 60 },
            reporting(ManifestRejected, Some(why)),
            &[Effect::Persist, report(ManifestRejected, Some(why))],
        );
        let why = "start failed: no GPU slot 3";
        check(
            p(),
            Input::StartFailed {
                why: "no GPU slot 3".into(),
                image_unavailable: false,
            },
            reporting(StartFailed, Some(why)),
            &[Effect::Persist, report(StartFailed, Some(why))],
        );
        check(
            p(),
            Input::LeaseEndedOnChain,
            Phase::Ended,
            &[
                Effect::Persist,
                Effect::Note {
                    detail: "the lease ended before a manifest arrived".into(),
                },
            ],
        );
        check(
            p(),
            restarted(Recovery::NoWorkload),
            p(),
            &[Effect::ArmManifestTimer],
        );
        for input in [
            Input::Started,
            Input::StartRecorded,
            exited(ExitReason::Completed),
            Input::LeasePausedOnChain,
            Input::CheckpointDue,
            Input::Reported,
            Input::Released,
        ] {
            ignored(p(), input);
        }
    }

    #[test]
    fn a_lease_whose_workload_is_starting() {
        let p = || Phase::Starting;
        check(
            p(),
            Input::Started,
            Phase::Started,
            &[
                Effect::Persist,
                Effect::SubmitStart,
                Effect::PublishEndpoints,
            ],
        );
        let why = "no such image";
        check(
            p(),
            Input::StartFailed {
                why: why.into(),
                image_unavailable: true,
            },
            reporting(WorkloadOutcome::ImageUnavailable, Some(why)),
            &[
                Effect::Persist,
                report(WorkloadOutcome::ImageUnavailable, Some(why)),
            ],
        );
        // Nothing to stop yet: the stop comes with the handle.
        check(
            p(),
            Input::LeaseEndedOnChain,
            orphaned(false),
            &[Effect::Persist],
        );
        check(
            p(),
            Input::ExitRequested,
            leaving(false),
            &[Effect::Persist],
        );
        let why = "start failed: the provider agent restarted while starting the workload";
        check(
            p(),
            restarted(Recovery::NoWorkload),
            reporting(WorkloadOutcome::StartFailed, Some(why)),
            &[
                Effect::Persist,
                report(WorkloadOutcome::StartFailed, Some(why)),
            ],
        );
        // A concurrent manifest, a late timer.
        ignored(p(), Input::ManifestAccepted);
        ignored(p(), Input::ManifestTimeout { after_secs: 60 });
    }

    #[test]
    fn a_started_workload_is_supervised_only_once_the_chain_recorded_its_start() {
        let p = || Phase::Started;
        check(
            p(),
            Input::StartRecorded,
            Phase::Running,
            &[
                Effect::Persist,
                Effect::StartCheckpointer,
                Effect::Supervise,
            ],
        );
        check(
            p(),
            Input::StartNotRecorded {
                why: "refused".into(),
            },
            stopping(
                StopCause::StartNotRecorded {
                    why: "refused".into(),
                },
                true,
            ),
            &[Effect::Persist, STOP, Effect::Supervise],
        );
        check(
            p(),
            Input::LeaseEndedOnChain,
            orphaned(false),
            &[Effect::Persist, STOP],
        );
        check(
            p(),
            Input::ExitRequested,
            leaving(false),
            &[Effect::Persist, EXIT],
        );
        check(
            p(),
            restarted(Recovery::Running),
            Phase::Running,
            &[
                Effect::Persist,
                Effect::PublishEndpoints,
                Effect::StartCheckpointer,
                Effect::Supervise,
            ],
        );
        ignored(p(), Input::Started);
        ignored(p(), Input::CheckpointDue);
    }

    #[test]
    fn a_pause_seen_before_the_start_is_recorded_freezes_the_workload_all_the_same() {
        let early = Phase::Paused { supervised: false };
        check(
            Phase::Started,
            Input::LeasePausedOnChain,
            early.clone(),
            &[Effect::Persist, Effect::Pause],
        );
        check(
            early.clone(),
            Input::StartRecorded,
            paused(),
            &[
                Effect::Persist,
                Effect::StartCheckpointer,
                Effect::Supervise,
            ],
        );
        check(
            early.clone(),
            Input::LeaseResumedOnChain,
            Phase::Started,
            &[Effect::Persist, Effect::Resume],
        );
        check(
            early.clone(),
            Input::PauseUnsupported,
            stopping(StopCause::PauseUnsupported, false),
            &[Effect::Persist, STOP],
        );
        // Stopped for another reason before its start is recorded: supervised once it is.
        let (phase, effects) = run(early, &[Input::ExitRequested, Input::StartRecorded]);
        assert_eq!(phase, leaving(true));
        assert_eq!(
            effects,
            vec![Effect::Persist, EXIT, Effect::Persist, Effect::Supervise]
        );
    }

    #[test]
    fn a_running_lease() {
        use WorkloadOutcome::{OutOfMemory, Succeeded};
        let p = || Phase::Running;
        check(p(), Input::CheckpointDue, p(), &[Effect::UploadCheckpoint]);
        check(
            p(),
            Input::LeasePausedOnChain,
            paused(),
            &[Effect::Persist, Effect::Pause],
        );
        check(
            p(),
            exited(ExitReason::Completed),
            concluding(Succeeded),
            &[
                Effect::Persist,
                Effect::UploadCheckpoint,
                Effect::KeepOutputs,
            ],
        );
        check(
            p(),
            exited(ExitReason::OutOfMemory),
            concluding(OutOfMemory),
            &[
                Effect::Persist,
                Effect::UploadCheckpoint,
                Effect::KeepOutputs,
            ],
        );
        check(
            p(),
            Input::LeaseEndedOnChain,
            orphaned(true),
            &[Effect::Persist, STOP],
        );
        check(
            p(),
            Input::ExitRequested,
            leaving(true),
            &[Effect::Persist, EXIT],
        );
        check(
            p(),
            restarted(Recovery::Running),
            p(),
            &[
                Effect::PublishEndpoints,
                Effect::StartCheckpointer,
                Effect::Supervise,
            ],
        );
        check(
            p(),
            restarted(Recovery::Exited(ExitReason::Completed)),
            concluding(Succeeded),
            &[
                Effect::Persist,
                Effect::UploadCheckpoint,
                Effect::KeepOutputs,
            ],
        );
        check(
            p(),
            restarted(Recovery::NoWorkload),
            concluding(WorkloadOutcome::Lost),
            &[
                Effect::Persist,
                Effect::UploadCheckpoint,
                Effect::KeepOutputs,
            ],
        );
        ignored(p(), Input::StartRecorded);
        ignored(p(), Input::LeaseResumedOnChain);
        // The pause failed after a top-up resumed the lease: the workload runs, as it should.
        ignored(p(), Input::PauseUnsupported);
    }

    #[test]
    fn a_paused_lease_is_resumed_or_stopped_where_it_cannot_be_frozen() {
        let p = paused;
        check(
            p(),
            Input::LeaseResumedOnChain,
            Phase::Running,
            &[Effect::Persist, Effect::Resume],
        );
        check(
            p(),
            Input::PauseUnsupported,
            stopping(StopCause::PauseUnsupported, true),
            &[Effect::Persist, STOP],
        );
        // The stopped workload's end is reported as it ended (no release: the provider stays).
        check(
            stopping(StopCause::PauseUnsupported, true),
            exited(ExitReason::Stopped),
            concluding(WorkloadOutcome::Failed),
            &[
                Effect::Persist,
                Effect::UploadCheckpoint,
                Effect::KeepOutputs,
            ],
        );
        // A workload may end while frozen (its wall-clock limit keeps counting).
        check(
            p(),
            exited(ExitReason::WallClockLimit),
            concluding(WorkloadOutcome::TimedOut),
            &[
                Effect::Persist,
                Effect::UploadCheckpoint,
                Effect::KeepOutputs,
            ],
        );
        check(
            p(),
            Input::ExitRequested,
            leaving(true),
            &[Effect::Persist, EXIT],
        );
        check(
            p(),
            Input::LeaseEndedOnChain,
            orphaned(true),
            &[Effect::Persist, STOP],
        );
        check(
            p(),
            restarted(Recovery::Running),
            p(),
            &[
                Effect::PublishEndpoints,
                Effect::StartCheckpointer,
                Effect::Supervise,
            ],
        );
        // Frozen, nothing changes: no checkpoint to look at.
        ignored(p(), Input::CheckpointDue);
        ignored(p(), Input::LeasePausedOnChain);
    }

    #[test]
    fn a_leaving_providers_workload_is_released_once_stopped_but_a_result_of_its_own_is_reported() {
        check(
            leaving(true),
            exited(ExitReason::Stopped),
            Phase::Concluding {
                then: Settle::Release,
            },
            &[
                Effect::Persist,
                Effect::UploadCheckpoint,
                Effect::KeepOutputs,
            ],
        );
        // It finished, or failed, on its own before the SIGTERM: leaving hides no result.
        for (reason, outcome) in [
            (ExitReason::Completed, WorkloadOutcome::Succeeded),
            (ExitReason::Failed, WorkloadOutcome::Failed),
            (ExitReason::OutOfMemory, WorkloadOutcome::OutOfMemory),
            (ExitReason::Lost, WorkloadOutcome::Lost),
        ] {
            check(
                leaving(true),
                exited(reason),
                concluding(outcome),
                &[
                    Effect::Persist,
                    Effect::UploadCheckpoint,
                    Effect::KeepOutputs,
                ],
            );
        }
        check(
            Phase::Concluding {
                then: Settle::Release,
            },
            Input::OutputsKept { kept: true },
            Phase::Releasing,
            &[Effect::Persist, Effect::ReleaseLease],
        );
        check(
            Phase::Releasing,
            Input::Released,
            Phase::Ended,
            &[Effect::Persist],
        );
        // Asked to leave while the workload was still starting: stopped once it has started.
        check(
            leaving(false),
            Input::Started,
            leaving(true),
            &[Effect::Persist, EXIT, Effect::Supervise],
        );
        check(
            leaving(false),
            Input::StartRecorded,
            leaving(true),
            &[Effect::Persist, Effect::Supervise],
        );
        // A start that failed is reported as such: leaving hides no failure either.
        check(
            leaving(false),
            Input::StartFailed {
                why: "x".into(),
                image_unavailable: false,
            },
            reporting(WorkloadOutcome::StartFailed, Some("start failed: x")),
            &[
                Effect::Persist,
                report(WorkloadOutcome::StartFailed, Some("start failed: x")),
            ],
        );
        // The chain ends the lease first: nothing to release.
        check(
            leaving(true),
            Input::LeaseEndedOnChain,
            orphaned(true),
            &[Effect::Persist],
        );
        check(
            Phase::Releasing,
            Input::LeaseEndedOnChain,
            Phase::Ended,
            &[Effect::Persist],
        );
        // A stop already under way for another reason becomes a release.
        check(
            stopping(StopCause::PauseUnsupported, true),
            Input::ExitRequested,
            leaving(true),
            &[Effect::Persist],
        );
        // The agent restarted mid-leave: the stop, or the release, goes on.
        check(
            leaving(true),
            restarted(Recovery::Running),
            leaving(true),
            &[EXIT, Effect::Supervise],
        );
        check(
            leaving(false),
            restarted(Recovery::NoWorkload),
            Phase::Releasing,
            &[
                Effect::Persist,
                Effect::Note {
                    detail: "this provider is leaving: the lease was released before its \
                             workload started"
                        .into(),
                },
                Effect::ReleaseLease,
            ],
        );
        check(
            Phase::Releasing,
            restarted(Recovery::NoWorkload),
            Phase::Releasing,
            &[Effect::ReleaseLease],
        );
        // Its result is being reported, or it is over: leaving changes nothing.
        ignored(
            reporting(WorkloadOutcome::Succeeded, None),
            Input::ExitRequested,
        );
        ignored(concluding(WorkloadOutcome::Succeeded), Input::ExitRequested);
        ignored(Phase::Ended, Input::ExitRequested);
        ignored(orphaned(true), Input::ExitRequested);
    }

    #[test]
    fn exit_requested_while_waiting_for_a_manifest_releases_the_lease_at_once() {
        let (phase, effects) = run(
            Phase::AwaitingManifest,
            &[Input::ExitRequested, Input::Released],
        );
        assert_eq!(phase, Phase::Ended);
        assert!(effects.contains(&Effect::ReleaseLease), "{effects:?}");
        assert!(!effects.iter().any(|e| matches!(
            e,
            Effect::Report { .. } | Effect::StartWorkload | Effect::ArmManifestTimer
        )));
        // A manifest that arrives after that is refused: nothing starts.
        ignored(Phase::Releasing, Input::ManifestAccepted);
        ignored(Phase::Releasing, Input::ManifestTimeout { after_secs: 60 });
    }

    #[test]
    fn a_leaving_providers_running_lease_stops_in_its_grace_keeps_its_checkpoint_then_is_released()
    {
        for start in [Phase::Running, paused()] {
            let inputs = [
                Input::ExitRequested,
                // Seen again by the next poll.
                Input::ExitRequested,
                exited(ExitReason::Stopped),
                Input::OutputsKept { kept: true },
                Input::Released,
            ];
            let mut phase = start.clone();
            let mut effects = Vec::new();
            for input in &inputs {
                // Proven alive (and holding its resources) until it is released.
                assert!(phase.is_live(), "{phase:?}");
                let (next, more) = step(&phase, input, &CTX);
                phase = next;
                effects.extend(more);
            }
            assert_eq!(phase, Phase::Ended);
            assert!(!phase.is_live());
            let world: Vec<&Effect> = effects.iter().filter(|e| **e != Effect::Persist).collect();
            assert_eq!(
                world,
                vec![
                    &EXIT,
                    &Effect::UploadCheckpoint,
                    &Effect::KeepOutputs,
                    &Effect::ReleaseLease
                ],
                "from {start:?}: SIGTERM with the exit grace, the last checkpoint, the outputs, \
                 then the release — and no result reported"
            );
        }
    }

    #[test]
    fn an_orphan_is_stopped_at_once_and_nothing_is_claimed_for_it() {
        // The chain ended the lease while this agent was away (or cut off from the chain):
        // the agent comes back, finds its workload still running, then learns the lease ended.
        let inputs = [
            restarted(Recovery::Running),
            Input::LeaseEndedOnChain,
            Input::LeaseEndedOnChain,
            // Even a workload that completes after all earns no report.
            exited(ExitReason::Completed),
            Input::OutputsKept { kept: true },
            Input::ExitRequested,
        ];
        for start in [Phase::Started, Phase::Running, paused(), leaving(true)] {
            let (phase, effects) = run(start.clone(), &inputs);
            assert_eq!(phase, Phase::Ended, "from {start:?}");
            assert!(
                effects
                    .iter()
                    .any(|e| matches!(e, Effect::StopWorkload { .. })),
                "from {start:?}: {effects:?}"
            );
            for claim in &effects {
                assert!(
                    !matches!(
                        claim,
                        Effect::Report { .. } | Effect::ReleaseLease | Effect::UploadCheckpoint
                    ),
                    "from {start:?}, the orphan claimed {claim:?}: {effects:?}"
                );
            }
        }
        // The stop is asked for at once, with the short grace, and the lease is no longer
        // proven alive.
        let (phase, effects) = step(&Phase::Running, &Input::LeaseEndedOnChain, &CTX);
        assert_eq!(effects, vec![Effect::Persist, STOP]);
        assert!(!phase.is_live());
        check(
            orphaned(true),
            exited(ExitReason::Completed),
            Phase::Concluding {
                then: Settle::Nothing,
            },
            &[Effect::Persist, Effect::KeepOutputs],
        );
        check(
            Phase::Concluding {
                then: Settle::Nothing,
            },
            Input::OutputsKept { kept: true },
            Phase::Ended,
            &[Effect::Persist],
        );
        // Ended before its start returned: stopped once it has started; nothing if it never did.
        check(
            orphaned(false),
            Input::Started,
            orphaned(true),
            &[Effect::Persist, STOP, Effect::Supervise],
        );
        check(
            orphaned(false),
            Input::StartFailed {
                why: "x".into(),
                image_unavailable: false,
            },
            Phase::Ended,
            &[Effect::Persist],
        );
    }

    #[test]
    fn a_start_the_chain_did_not_record_is_reported_as_a_failed_start() {
        let why = "refused";
        let (phase, effects) = run(
            Phase::Started,
            &[
                Input::StartNotRecorded { why: why.into() },
                exited(ExitReason::Stopped),
                Input::OutputsKept { kept: true },
            ],
        );
        let detail = "the chain did not record the start: refused";
        assert_eq!(phase, reporting(WorkloadOutcome::StartFailed, Some(detail)));
        assert_eq!(
            effects.last(),
            Some(&report(WorkloadOutcome::StartFailed, Some(detail)))
        );
    }

    #[test]
    fn an_ended_workloads_result_is_reported_once_its_outputs_are_kept() {
        use WorkloadOutcome::{Failed, Succeeded};
        check(
            concluding(Succeeded),
            Input::OutputsKept { kept: true },
            reporting(Succeeded, None),
            &[Effect::Persist, report(Succeeded, None)],
        );
        // Outputs that could not be kept fail the job.
        check(
            concluding(Succeeded),
            Input::OutputsKept { kept: false },
            reporting(Failed, None),
            &[Effect::Persist, report(Failed, None)],
        );
        // The chain ended the lease meanwhile: nothing to report.
        check(
            concluding(Succeeded),
            Input::LeaseEndedOnChain,
            Phase::Concluding {
                then: Settle::Nothing,
            },
            &[Effect::Persist],
        );
        check(
            concluding(Succeeded),
            restarted(Recovery::NoWorkload),
            concluding(Succeeded),
            &[Effect::KeepOutputs],
        );
        check(
            reporting(Succeeded, None),
            Input::Reported,
            Phase::Ended,
            &[Effect::Persist],
        );
        check(
            reporting(Succeeded, None),
            Input::LeaseEndedOnChain,
            Phase::Ended,
            &[Effect::Persist],
        );
        check(
            reporting(Succeeded, Some("x")),
            restarted(Recovery::NoWorkload),
            reporting(Succeeded, Some("x")),
            &[report(Succeeded, Some("x"))],
        );
        ignored(concluding(Succeeded), exited(ExitReason::Completed));
    }

    #[test]
    fn an_ended_lease_takes_no_input() {
        for input in all_inputs() {
            ignored(Phase::Ended, input);
        }
    }

    #[test]
    fn every_input_in_every_phase_is_answered_deterministically_and_persisted_before_acting() {
        for phase in all_phases() {
            for input in all_inputs() {
                let (next, effects) = step(&phase, &input, &CTX);
                assert_eq!(
                    step(&phase, &input, &CTX),
                    (next.clone(), effects.clone()),
                    "the same answer twice"
                );
                let persisted = effects.iter().filter(|e| **e == Effect::Persist).count();
                if next == phase {
                    assert_eq!(persisted, 0, "{phase:?} on {input:?}: {effects:?}");
                } else {
                    assert_eq!(
                        effects.first(),
                        Some(&Effect::Persist),
                        "{phase:?} on {input:?} → {next:?}: the new phase is written first"
                    );
                    assert_eq!(persisted, 1, "{phase:?} on {input:?}");
                }
                // Only the tenant's manifest starts a workload, and only a leaving provider
                // gives a lease back.
                if effects.contains(&Effect::StartWorkload) {
                    assert_eq!(
                        (&phase, &input),
                        (&Phase::AwaitingManifest, &Input::ManifestAccepted)
                    );
                }
                if effects.contains(&Effect::ReleaseLease) {
                    assert!(
                        matches!(
                            (&phase, &input),
                            (
                                Phase::Concluding {
                                    then: Settle::Release
                                },
                                Input::OutputsKept { .. }
                            ) | (Phase::Releasing, Input::Restarted { .. })
                                | (_, Input::ExitRequested)
                                | (
                                    Phase::Stopping {
                                        why: StopCause::Leaving,
                                        ..
                                    },
                                    Input::Restarted { .. }
                                )
                        ),
                        "{phase:?} on {input:?} released the lease"
                    );
                }
            }
        }
    }

    #[test]
    fn a_repeated_event_changes_nothing_the_second_time() {
        // Events come twice: the stream reconnects, the poll sees what the stream did.
        let repeatable =
            |input: &Input| !matches!(input, Input::Restarted { .. } | Input::CheckpointDue);
        for phase in all_phases() {
            for input in all_inputs().into_iter().filter(repeatable) {
                let (once, _) = step(&phase, &input, &CTX);
                let twice = step(&once, &input, &CTX);
                assert_eq!(
                    twice,
                    (once.clone(), vec![]),
                    "{phase:?} on {input:?} twice"
                );
            }
        }
    }

    #[test]
    fn exit_reasons_map_to_outcomes() {
        for (reason, outcome) in [
            (ExitReason::Completed, WorkloadOutcome::Succeeded),
            (ExitReason::Failed, WorkloadOutcome::Failed),
            (ExitReason::OutOfMemory, WorkloadOutcome::OutOfMemory),
            (ExitReason::WallClockLimit, WorkloadOutcome::TimedOut),
            (ExitReason::CpuTimeLimit, WorkloadOutcome::TimedOut),
            (ExitReason::Stopped, WorkloadOutcome::Failed),
            (ExitReason::Lost, WorkloadOutcome::Lost),
            (ExitReason::DiskExceeded, WorkloadOutcome::DiskExceeded),
        ] {
            assert_eq!(outcome_of(reason), outcome, "{reason:?}");
        }
    }
}
