//! Fuzzes job spec parsing — the YAML a tenant writes (`JobSpec::parse_yaml_bytes`) and the
//! manifest JSON a provider receives (`JobSpec::from_manifest_bytes`) — with arbitrary bytes and
//! mutations of the seeds in `fuzz/corpus/job_spec*/`, `fuzz/corpus/manifest*/` and
//! `examples/jobs/`.
//!
//! Properties: nothing panics; every refusal names a field and says something about it; every
//! accepted spec validates and its manifest parses back to the same spec; every seed still
//! parses. `GPUNET_FUZZ_CASES` sets the cases per target (see `gpunet_testkit::fuzz`).

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use gpunet_protocol::jobspec::{JobSpec, SpecError};
use gpunet_testkit::fuzz;

/// Valid spec seeds: the corpus and the bundled examples.
fn spec_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = fuzz::corpus("job_spec");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jobs");
    for entry in std::fs::read_dir(&examples).expect("examples/jobs is readable") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let bytes = std::fs::read(&path).expect("an example is readable");
            seeds.push((path.display().to_string(), bytes));
        }
    }
    seeds
}

/// Manifest seeds: the corpus, and the manifest of every valid spec seed.
fn manifest_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = fuzz::corpus("manifest");
    for (name, bytes) in spec_seeds() {
        let spec = JobSpec::parse_yaml_bytes(&bytes).expect("spec seeds parse");
        seeds.push((format!("manifest of {name}"), spec.manifest_bytes()));
    }
    seeds
}

/// An error is clear when it names a field and says more than the field's name.
fn assert_clear(err: &SpecError) {
    let message = err.to_string();
    assert!(!err.path().is_empty(), "no field in {message:?}");
    let why = message
        .strip_prefix(err.path())
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or_else(|| panic!("{message:?} does not start with its field"));
    assert!(why.trim().len() >= 5, "says too little: {message:?}");
}

/// Inputs accepted and refused, per target: the reach guard below checks the fuzzing exercised
/// both sides, so a strategy that only ever makes garbage (or never leaves the seeds) fails.
static SPECS: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];
static MANIFESTS: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];

fn count(counters: &[AtomicU32; 2], accepted: bool) {
    counters[usize::from(!accepted)].fetch_add(1, Ordering::Relaxed);
}

/// At least 1% of the cases accepted and 10% refused.
fn assert_reach(what: &str, counters: &[AtomicU32; 2], cases: u32) {
    let accepted = counters[0].load(Ordering::Relaxed);
    let refused = counters[1].load(Ordering::Relaxed);
    assert!(
        accepted * 100 >= cases && refused * 10 >= cases,
        "{what}: {accepted} accepted and {refused} refused of {cases} cases; the strategy does \
         not reach both sides"
    );
}

fn check_spec(bytes: &[u8]) {
    let parsed = JobSpec::parse_yaml_bytes(bytes);
    count(&SPECS, parsed.is_ok());
    match parsed {
        Ok(spec) => {
            assert_eq!(spec.validate(), Ok(()));
            let back = JobSpec::from_manifest_bytes(&spec.manifest_bytes())
                .expect("an accepted spec's manifest parses");
            assert_eq!(back, spec);
        }
        Err(e) => assert_clear(&e),
    }
}

fn check_manifest(bytes: &[u8]) {
    let parsed = JobSpec::from_manifest_bytes(bytes);
    count(&MANIFESTS, parsed.is_ok());
    match parsed {
        Ok(spec) => {
            // A manifest that parses may not be canonical; either way its spec is valid and its
            // own canonical bytes parse to it again.
            assert_eq!(spec.validate(), Ok(()));
            let again = JobSpec::from_manifest_bytes(&spec.manifest_bytes())
                .expect("a canonical manifest parses");
            assert_eq!(again, spec);
        }
        Err(e) => assert_clear(&e),
    }
}

/// Runs `check` on `cases` inputs from `strategy`; a failure names the input to add to the
/// corpus.
fn fuzz_with(
    cases: u32,
    strategy: impl proptest::strategy::Strategy<Value = fuzz::Input>,
    check: fn(&[u8]),
) {
    let mut runner = fuzz::runner(cases);
    if let Err(e) = runner.run(&strategy, |bytes| {
        check(&bytes);
        Ok(())
    }) {
        panic!("{e}\nadd the minimal input above to fuzz/corpus/ so every run tries it");
    }
}

#[test]
fn every_seed_spec_parses_and_its_manifest_round_trips() {
    for (name, bytes) in spec_seeds() {
        let spec = JobSpec::parse_yaml_bytes(&bytes)
            .unwrap_or_else(|e| panic!("seed {name} no longer parses: {e}"));
        let back = JobSpec::from_manifest_bytes(&spec.manifest_bytes())
            .unwrap_or_else(|e| panic!("the manifest of {name} does not parse: {e}"));
        assert_eq!(back, spec, "{name}");
    }
    for (name, bytes) in fuzz::corpus("manifest") {
        JobSpec::from_manifest_bytes(&bytes)
            .unwrap_or_else(|e| panic!("manifest seed {name} no longer parses: {e}"));
    }
}

#[test]
fn rejected_seeds_are_refused_with_a_clear_error() {
    for (name, bytes) in fuzz::corpus("job_spec_rejected") {
        let err = JobSpec::parse_yaml_bytes(&bytes).expect_err(&name);
        assert_clear(&err);
    }
    for (name, bytes) in fuzz::corpus("manifest_rejected") {
        let err = JobSpec::from_manifest_bytes(&bytes).expect_err(&name);
        assert_clear(&err);
    }
}

#[test]
fn arbitrary_and_mutated_specs_never_panic_and_errors_name_a_field() {
    let seeds: Vec<Vec<u8>> = spec_seeds()
        .into_iter()
        .chain(fuzz::corpus("job_spec_rejected"))
        .map(|(_, b)| b)
        .collect();
    let cases = fuzz::cases(3_000);
    fuzz_with(cases, fuzz::bytes_or_mutated(seeds, 256), check_spec);
    assert_reach("specs", &SPECS, cases);
}

#[test]
fn arbitrary_and_mutated_manifests_never_panic_and_errors_name_a_field() {
    let seeds = manifest_seeds()
        .into_iter()
        .chain(fuzz::corpus("manifest_rejected"))
        .map(|(_, b)| b)
        .collect();
    let cases = fuzz::cases(3_000);
    fuzz_with(cases, fuzz::bytes_or_mutated(seeds, 256), check_manifest);
    assert_reach("manifests", &MANIFESTS, cases);
}
