//! Fuzzing on the stable toolchain: proptest over arbitrary bytes and over mutations of seed
//! inputs, with the seeds kept in the repository under `fuzz/corpus/<target>/`.
//!
//! Each fuzz test runs [`cases`] cases — a few thousand by default, so CI stays under a minute —
//! or as many as `GPUNET_FUZZ_CASES` says (`GPUNET_FUZZ_CASES=1000000 cargo test -p
//! gpunet-protocol --test fuzz_job_specs`). An input that once broke something is saved as a new
//! file in its target's corpus directory, so every later run starts from it.
//!
//! Why not cargo-fuzz: it needs a nightly toolchain and a sanitizer runtime; these tests run
//! wherever `cargo test` does, and the properties they check (no panic, a clear error, seeds
//! still accepted) are the ones that matter for untrusted input.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Environment variable that sets the number of cases per fuzz target.
pub const CASES_VAR: &str = "GPUNET_FUZZ_CASES";

/// Cases per target: `GPUNET_FUZZ_CASES` when set to a number, else `default`.
pub fn cases(default: u32) -> u32 {
    match std::env::var(CASES_VAR) {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            panic!("{CASES_VAR}={s:?} is not a number of cases; use e.g. {CASES_VAR}=100000")
        }),
        Err(_) => default,
    }
}

/// A runner for `cases` cases. Failures are not persisted by proptest: a failing input goes into
/// the corpus by hand, where every run (and every reader) sees it.
pub fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// `fuzz/corpus/<target>` at the repository root.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Every seed of `target`, as (file name, bytes), sorted by name. Panics when the directory is
/// missing or empty: a fuzz target without seeds mutates nothing.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()));
    let mut seeds: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("a corpus entry is readable").path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read seed {}: {e}", path.display()));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, bytes)
        })
        .filter(|(name, _)| !name.starts_with('.') && name != "README.md")
        .collect();
    seeds.sort();
    assert!(
        !seeds.is_empty(),
        "the corpus {} holds no seeds; add at least one valid input",
        dir.display()
    );
    seeds
}

/// A fuzz input: bytes that print as an escaped byte string (`b"name: h\xff"`), so a failure
/// report can be read and pasted into a corpus file.
#[derive(Clone, PartialEq, Eq)]
pub struct Input(pub Vec<u8>);

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Input {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// One edit to a byte string.
#[derive(Debug, Clone)]
enum Edit {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Replace a range with bytes that often matter to parsers.
    Splice {
        at: usize,
        len: usize,
        with: &'static [u8],
    },
}

/// Bytes that sit at the edges of what text and binary decoders expect.
const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\xff\xff\xff\xff",
    b"\x80",
    b"\xc3\x28",
    b"\n",
    b":",
    b"\"",
    b"{",
    b"[",
    b"- ",
    b"&a *a",
    b"!!binary",
    b"99999999999999999999999",
    b"-1",
    b"1e400",
    b"\xf0\x9f\x92\xa9",
    b"18446744073709551615",
    b"4294967295",
];

fn arb_edit() -> impl Strategy<Value = Edit> {
    // Positions are any usize, taken modulo the input's length when the edit is applied.
    let at = any::<usize>();
    prop_oneof![
        (at, 0u8..8).prop_map(|(at, bit)| Edit::FlipBit { at, bit }),
        (at, any::<u8>()).prop_map(|(at, byte)| Edit::SetByte { at, byte }),
        (at, prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (at, 1usize..64).prop_map(|(at, len)| Edit::Remove { at, len }),
        (at, 1usize..64).prop_map(|(at, len)| Edit::Duplicate { at, len }),
        at.prop_map(|at| Edit::Truncate { at }),
        (at, 0usize..8, prop::sample::select(INTERESTING))
            .prop_map(|(at, len, with)| Edit::Splice { at, len, with }),
    ]
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % (len + 1) };
    match edit {
        Edit::FlipBit { at, bit } if !bytes.is_empty() => {
            let i = at % bytes.len();
            bytes[i] ^= 1 << bit;
        }
        Edit::SetByte { at, byte } if !bytes.is_empty() => {
            let i = at % bytes.len();
            bytes[i] = *byte;
        }
        Edit::FlipBit { .. } | Edit::SetByte { .. } => {}
        Edit::Insert { at, bytes: new } => {
            let i = pos(*at, bytes.len());
            bytes.splice(i..i, new.iter().copied());
        }
        Edit::Remove { at, len } => {
            let i = pos(*at, bytes.len());
            let end = (i + len).min(bytes.len());
            bytes.drain(i..end);
        }
        Edit::Duplicate { at, len } => {
            let i = pos(*at, bytes.len());
            let end = (i + len).min(bytes.len());
            let copy = bytes[i..end].to_vec();
            bytes.splice(end..end, copy);
        }
        Edit::Truncate { at } => {
            let i = pos(*at, bytes.len());
            bytes.truncate(i);
        }
        Edit::Splice { at, len, with } => {
            let i = pos(*at, bytes.len());
            let end = (i + len).min(bytes.len());
            bytes.splice(i..end, with.iter().copied());
        }
    }
}

/// One of `seeds` with random edits — bit flips, byte changes, insertions, removals,
/// duplications, truncation and splices of bytes parsers trip on. Mostly one edit, so that many
/// inputs stay close enough to valid to reach the checks behind the parser; sometimes up to 8.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Input> {
    assert!(!seeds.is_empty(), "mutating needs at least one seed");
    let edits = prop_oneof![
        3 => prop::collection::vec(arb_edit(), 1..2),
        1 => prop::collection::vec(arb_edit(), 2..8),
    ];
    (prop::sample::select(seeds), edits).prop_map(|(mut bytes, edits)| {
        for edit in &edits {
            apply(&mut bytes, edit);
        }
        Input(bytes)
    })
}

/// Arbitrary bytes up to `max_len` long (a quarter of the cases), or a mutation of one of
/// `seeds`.
pub fn bytes_or_mutated(seeds: Vec<Vec<u8>>, max_len: usize) -> impl Strategy<Value = Input> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..max_len).prop_map(Input),
        3 => mutated(seeds),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;

    #[test]
    fn mutations_change_seeds_yet_stay_near_them() {
        let seed = b"version: 1\nname: hello\n".to_vec();
        let mut runner = runner(200);
        let mut changed = 0;
        for _ in 0..200 {
            let tree = mutated(vec![seed.clone()])
                .new_tree(&mut runner)
                .expect("a value");
            let out = tree.current().0;
            changed += usize::from(out != seed);
            assert!(out.len() <= seed.len() + 8 * 64, "{}", out.len());
        }
        assert!(
            changed > 150,
            "only {changed} of 200 mutations changed the seed"
        );
    }

    #[test]
    fn the_case_count_defaults_unless_the_environment_says_otherwise() {
        if std::env::var(CASES_VAR).is_err() {
            assert_eq!(cases(1234), 1234);
        }
    }
}
