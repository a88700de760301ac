//! The agent's side of a hardware challenge (ADR 0009): compute the product of the
//! challenge's matrices, commit to it with the Merkle tree of `gpunet_verify::commit`, and
//! open the leaves the chain samples afterwards.
//!
//! [`run`] watches the provider's record for a challenge in flight (every half second while
//! one is, else every heartbeat interval), computes the product on every CPU core in a blocking
//! task, sends `CommitChallenge` with the tree's root before the deadline, and once the ledger
//! has sampled the entries, sends `OpenChallenge` with the leaves holding them, ten to a
//! transaction. A computation still running at the deadline is stopped: the challenge fails
//! on chain, and the log says the machine is slower than its claimed hardware's band.
//!
//! The CPU prover is the one built: a CPU answering a challenge sized for a GPU's band misses
//! its deadline, as it must, and `gpunet bench challenge` times it to give the CPU's band. To
//! come (issue 12): the GPU prover (cuBLAS int8 GEMM through a crate that loads the CUDA driver
//! at run time). Until then an agent listing GPUs that the network's bands challenge refuses
//! to start ([`unprovable_gpu_families`]): every challenge would fail and cost its stake.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gpunet_api::node::ChallengeView;
use gpunet_client::NodeClient;
use gpunet_protocol::{Address, ChallengeOpening, Hash, MAX_OPENINGS_PER_TX, Msg};
use gpunet_verify::{Matrices, Tree};

/// The GPU families of `gpus` that the network's `bands` challenge: this agent answers
/// challenges on the CPU only, which cannot meet a GPU band's deadline, so listing them would
/// cost its stake. Sorted, each once.
pub fn unprovable_gpu_families(
    bands: &[gpunet_api::node::BandView],
    gpus: &[gpunet_protocol::GpuSlot],
) -> Vec<String> {
    let mut families: Vec<String> = gpus
        .iter()
        .filter(|g| bands.iter().any(|b| b.class == g.family))
        .map(|g| g.family.clone())
        .collect();
    families.sort();
    families.dedup();
    families
}

/// How often the record is read while a challenge is in flight.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(500);
/// How long one challenge transaction may take to be included.
const TX_TIMEOUT: Duration = Duration::from_secs(30);

/// What one proof took, and its commitment.
#[derive(Debug)]
pub struct Proof {
    pub tree: Tree,
    /// Generating the matrices and multiplying them.
    pub product: Duration,
    /// Building the tree over the product.
    pub commit: Duration,
}

/// The product of `m`'s matrices on `threads` CPU threads (at least one), each taking a band
/// of rows, then its commitment.
pub fn prove_on_cpu(m: &Matrices, threads: usize) -> Proof {
    let never = AtomicBool::new(false);
    prove_on_cpu_unless(m, threads, &never).expect("never stopped")
}

/// [`prove_on_cpu`], stopped (`None`) as soon as `stop` is set: every thread looks between
/// rows.
pub fn prove_on_cpu_unless(m: &Matrices, threads: usize, stop: &AtomicBool) -> Option<Proof> {
    let started = Instant::now();
    let n = m.n;
    let (a, b) = (m.a(), m.b());
    let mut c = vec![0i32; n * n];
    let rows_per = n.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for (band, c_band) in c.chunks_mut(rows_per * n).enumerate() {
            let a_band = &a[band * rows_per * n..][..c_band.len()];
            let b = &b;
            scope.spawn(move || {
                gpunet_verify::multiply_rows(a_band, b, c_band, n, &|| {
                    !stop.load(Ordering::Relaxed)
                })
            });
        }
    });
    if stop.load(Ordering::Relaxed) {
        return None;
    }
    let product = started.elapsed();
    let started = Instant::now();
    let tree = Tree::build(c);
    Some(Proof {
        tree,
        product,
        commit: started.elapsed(),
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The opening of `leaf` as a transaction carries it.
fn opening(tree: &Tree, leaf: u64) -> Option<ChallengeOpening> {
    let o = tree.open(leaf)?;
    Some(ChallengeOpening {
        leaf: o.leaf,
        entries: o.entries,
        path: o.path.into_iter().map(|h| h.map(Hash)).collect(),
    })
}

/// A computation under way for challenge `id`, and what it came to.
struct Work {
    id: u64,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<Option<Proof>>>,
    tree: Option<Tree>,
    /// The miss was already logged.
    said_missed: bool,
}

impl Work {
    /// The chain is done with this challenge (it passed, failed, or was replaced): stop
    /// computing, and say so if the product never got done — the chain failed it at its
    /// deadline, which the loop may not have seen pass while the challenge was still shown.
    fn drop_it(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.tree.is_none() && !self.said_missed {
            tracing::error!(challenge = self.id, "{MISSED}");
        }
    }
}

/// What the agent says when its machine did not answer a challenge in time.
const MISSED: &str = "missed a hardware challenge's deadline: this machine multiplies more slowly \
                      than the band of the hardware it lists (see /v1/params challenge_bands); \
                      list what it has";

/// Answers `provider`'s hardware challenges as the ledger issues them (see the module doc),
/// on a network with `bands` (fixed at genesis: with none, nothing is ever challenged and this
/// returns at once). Runs until aborted.
pub async fn run(
    client: Arc<NodeClient>,
    provider: Address,
    bands: Vec<gpunet_api::node::BandView>,
    every: Duration,
) {
    if bands.is_empty() {
        return;
    }
    tracing::info!(
        bands = ?bands.iter().map(|b| (&b.class, b.ops_per_ms)).collect::<Vec<_>>(),
        "this network challenges hardware claims; answering on the CPU"
    );
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let mut work: Option<Work> = None;
    loop {
        let challenge = match client.provider(&provider).await {
            Ok(Some(p)) => p.hardware.challenge,
            Ok(None) => None,
            Err(e) => {
                // A hiccup of the node is not the end of a challenge: keep computing.
                tracing::warn!("cannot read this provider's challenges: {e}");
                tokio::time::sleep(IN_FLIGHT_POLL).await;
                continue;
            }
        };
        match challenge {
            None => {
                if let Some(w) = work.take() {
                    w.drop_it();
                }
                tokio::time::sleep(every).await;
                continue;
            }
            Some(c) => {
                if work.as_ref().is_none_or(|w| w.id != c.id) {
                    if let Some(w) = work.take() {
                        w.drop_it();
                    }
                    work = start(&c, threads);
                }
                if let Some(w) = work.as_mut() {
                    step(&client, &c, w).await;
                }
            }
        }
        tokio::time::sleep(IN_FLIGHT_POLL).await;
    }
}

/// Starts computing challenge `c`'s product; `None` if its size is out of range (it fails on
/// chain; nothing here can answer it).
fn start(c: &ChallengeView, threads: usize) -> Option<Work> {
    let m = match Matrices::new(c.seed.0, c.n as usize) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(
                challenge = c.id,
                "cannot answer the hardware challenge: {e}"
            );
            return None;
        }
    };
    tracing::info!(
        challenge = c.id,
        n = c.n,
        threads,
        "answering a hardware challenge on the CPU"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let task = tokio::task::spawn_blocking(move || prove_on_cpu_unless(&m, threads, &flag));
    Some(Work {
        id: c.id,
        stop,
        task: Some(task),
        tree: None,
        said_missed: false,
    })
}

/// One look at challenge `c`: stop a computation past the deadline, commit a finished one,
/// open what the ledger sampled.
async fn step(client: &NodeClient, c: &ChallengeView, w: &mut Work) {
    if let Some(task) = w.task.as_mut() {
        if task.is_finished() {
            let done = w.task.take().expect("a task");
            match done.await {
                Ok(Some(proof)) => {
                    tracing::info!(
                        challenge = c.id,
                        product_ms = proof.product.as_millis() as u64,
                        commit_ms = proof.commit.as_millis() as u64,
                        "hardware challenge computed"
                    );
                    w.tree = Some(proof.tree);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(challenge = c.id, "the challenge's computation failed: {e}")
                }
            }
        } else if c.root.is_none() && now_ms() > c.deadline_ms {
            w.stop.store(true, Ordering::Relaxed);
            w.task = None;
            w.said_missed = true;
            tracing::error!(challenge = c.id, n = c.n, "{MISSED}");
            return;
        }
    }
    let Some(tree) = &w.tree else {
        return;
    };
    if c.root.is_none() {
        let root = Hash(tree.root());
        let sent = client
            .send_and_wait(
                Msg::CommitChallenge {
                    challenge: c.id,
                    root,
                },
                TX_TIMEOUT,
            )
            .await;
        match sent {
            Ok(_) => tracing::info!(challenge = c.id, "hardware challenge committed"),
            Err(e) => tracing::warn!(challenge = c.id, "committing the challenge failed: {e}"),
        }
        return;
    }
    let due: Vec<u64> = c
        .leaves_to_open
        .iter()
        .copied()
        .filter(|l| c.opened.binary_search(l).is_err())
        .collect();
    for leaves in due.chunks(MAX_OPENINGS_PER_TX) {
        let openings: Vec<ChallengeOpening> =
            leaves.iter().filter_map(|l| opening(tree, *l)).collect();
        let sent = client
            .send_and_wait(
                Msg::OpenChallenge {
                    challenge: c.id,
                    openings,
                },
                TX_TIMEOUT,
            )
            .await;
        if let Err(e) = sent {
            tracing::warn!(
                challenge = c.id,
                "opening the challenge's entries failed: {e}"
            );
            return;
        }
    }
    if !due.is_empty() {
        tracing::info!(challenge = c.id, "hardware challenge opened");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpunet_verify::challenge::leaves_to_open;
    use gpunet_verify::{check_openings, multiply, samples};

    #[test]
    fn gpus_a_band_covers_cannot_be_listed_without_a_gpu_prover() {
        let band = |class: &str| gpunet_api::node::BandView {
            class: class.to_owned(),
            ops_per_ms: 1,
        };
        let gpu = |family: &str| gpunet_protocol::GpuSlot {
            model: format!("{family}-80gb"),
            family: family.to_owned(),
            vram_mib: 81_920,
        };
        let gpus = [gpu("h100"), gpu("h100"), gpu("a100")];
        assert_eq!(
            unprovable_gpu_families(&[band("cpu"), band("h100")], &gpus),
            vec!["h100".to_owned()]
        );
        assert!(unprovable_gpu_families(&[band("cpu")], &gpus).is_empty());
        assert!(unprovable_gpu_families(&[band("h100")], &[]).is_empty());
    }

    #[test]
    fn the_cpu_prover_commits_to_the_reference_product_on_any_thread_count() {
        let m = Matrices::new([3; 32], 70).expect("size");
        let reference = Tree::build(multiply(&m.a(), &m.b(), m.n)).root();
        for threads in [1, 2, 3, 7, 200] {
            let proof = prove_on_cpu(&m, threads);
            assert_eq!(proof.tree.root(), reference, "{threads} thread(s)");
        }
        // And its openings pass the chain's check.
        let proof = prove_on_cpu(&m, 2);
        let root = proof.tree.root();
        let picked = samples(&[9; 32], &root, m.n, 64);
        let openings: Vec<_> = leaves_to_open(&picked)
            .into_iter()
            .map(|l| proof.tree.open(l).expect("a leaf"))
            .collect();
        assert_eq!(check_openings(&m, &root, &picked, &openings), Ok(()));
    }
}
