//! Fuzzes reading a job's inputs archive (`gpunet_protocol::inputs::unpack`), what a provider
//! does with the bytes a tenant sends, with arbitrary bytes and mutations of the seeds in
//! `fuzz/corpus/inputs/` and of freshly packed archives. Properties: nothing panics, every
//! refusal says what was wrong, and whatever is accepted holds only safe relative paths.
//! `GPUNET_FUZZ_CASES` sets the cases (see `gpunet_testkit::fuzz`).

use gpunet_protocol::inputs::{InputEntry, InputKind, check_path, pack, unpack};
use gpunet_testkit::fuzz;

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = fuzz::corpus("inputs").into_iter().map(|(_, b)| b).collect();
    seeds.push(
        pack(&[
            InputEntry {
                path: "data".into(),
                kind: InputKind::Dir,
            },
            InputEntry {
                path: "data/a.csv".into(),
                kind: InputKind::File {
                    bytes: b"1,2\n".to_vec(),
                    executable: false,
                },
            },
        ])
        .expect("packs"),
    );
    seeds
}

#[test]
fn arbitrary_and_mutated_archives_never_panic_and_accepted_ones_are_safe() {
    let strategy = fuzz::bytes_or_mutated(seeds(), 4096);
    let mut runner = fuzz::runner(fuzz::cases(2_000));
    if let Err(e) = runner.run(&strategy, |bytes| {
        match unpack(&bytes) {
            Ok(entries) => {
                for entry in entries {
                    assert!(check_path(&entry.path).is_ok(), "{:?} accepted", entry.path);
                }
            }
            Err(e) => assert!(e.to_string().len() >= 10, "says too little: {e:?}"),
        }
        Ok(())
    }) {
        panic!("{e}\nadd the minimal input above to fuzz/corpus/inputs/ so every run tries it");
    }
}
