//! Replays each fuzz target's committed corpus (`fuzz/corpus/<target>/`) and every input that
//! once broke it (`fuzz/regressions/<target>/`) through the target, on stable: what libFuzzer
//! found and kept stays checked in CI without a nightly toolchain. A panic names the target
//! and the file. The targets are `weft::fuzz`; `fuzz/run.sh` grows the corpus.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` on every committed input of `name`.
fn replay(name: &str, target: weft::fuzz::Target) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = inputs(&root.join("corpus").join(name));
    assert!(
        !corpus.is_empty(),
        "fuzz target {name} has no committed corpus under fuzz/corpus/{name}"
    );
    let regressions = inputs(&root.join("regressions").join(name));
    for file in corpus.iter().chain(&regressions) {
        let data = std::fs::read(file).expect("a readable corpus file");
        if std::panic::catch_unwind(|| target(&data)).is_err() {
            panic!("fuzz target {name} fails on {}", file.display());
        }
    }
    eprintln!(
        "{name}: {} corpus inputs and {} regressions pass",
        corpus.len(),
        regressions.len()
    );
}

/// One test per target, so that they run in parallel and a failure names its target.
macro_rules! replayed {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name), weft::fuzz::$name);
            }
        )*
        const REPLAYED: &[&str] = &[$(stringify!($name)),*];
    };
}

replayed!(
    frame,
    handshake,
    admission,
    peer_exchange,
    gossip,
    ledger_rpc,
    feed,
    catchup,
    token,
    config,
    api,
);

#[test]
fn every_target_is_replayed_here_and_has_a_cargo_fuzz_binary() {
    let mut named: Vec<&str> = weft::fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    named.sort_unstable();
    let mut replayed = REPLAYED.to_vec();
    replayed.sort_unstable();
    assert_eq!(
        named, replayed,
        "every target in weft::fuzz is replayed here"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut binaries: Vec<String> = inputs(&root.join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    binaries.sort();
    assert_eq!(
        named, binaries,
        "every target in weft::fuzz has a cargo-fuzz binary in fuzz/fuzz_targets, and no other"
    );
}
