//! Compiles the wire schemas in `proto/` with prost (protox parses them in Rust, so no system
//! `protoc` is needed), and gives a release link of the `weft` executable the order of its
//! functions in `link/symbol-order.txt.gz`: the code a node runs packed together, so that a
//! node maps about 40 % less of its executable (`scripts/symbol-order.sh`, BENCHMARKS.md).

use std::error::Error;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The function order, made by `scripts/symbol-order.sh`.
const SYMBOL_ORDER: &str = "link/symbol-order.txt.gz";

/// The target the order was made for.
const ORDERED_TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() -> Result<(), Box<dyn Error>> {
    let schemas = ["proto/weft/token.proto", "proto/weft/p2p.proto"];
    for schema in schemas {
        println!("cargo:rerun-if-changed={schema}");
    }
    let descriptors = protox::compile(schemas, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    symbol_order()
}

/// Hands the linker the function order, in release builds for [`ORDERED_TARGET`] whose linker
/// takes lld's `--symbol-ordering-file` (rustc's own lld, its default there from Rust 1.90): a
/// one-line program is linked with the option first, and a linker that refuses it (GNU ld, or
/// a rustc built to link with the system's) links weft without it. So does a build with a
/// linker set by hand (in `.cargo/config.toml` or the flags) or with `WEFT_SYMBOL_ORDER=off`.
/// Names the executable no longer has are skipped by lld, so an order older than the code costs
/// memory, never correctness.
fn symbol_order() -> Result<(), Box<dyn Error>> {
    for var in [
        "WEFT_SYMBOL_ORDER",
        "RUSTC_LINKER",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let var = |name| std::env::var(name).unwrap_or_default();
    let own_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || var("CARGO_ENCODED_RUSTFLAGS").contains("link");
    if var("PROFILE") != "release"
        || var("TARGET") != ORDERED_TARGET
        || var("WEFT_SYMBOL_ORDER") == "off"
        || own_linker
    {
        return Ok(());
    }
    if !Path::new(SYMBOL_ORDER).exists() {
        println!("cargo:warning={SYMBOL_ORDER} is missing: functions are linked in no order");
        return Ok(());
    }
    println!("cargo:rerun-if-changed={SYMBOL_ORDER}");
    let out = PathBuf::from(var("OUT_DIR"));
    let mut order = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(SYMBOL_ORDER)?)
        .read_to_string(&mut order)
        .map_err(|e| format!("{SYMBOL_ORDER}: {e}"))?;
    let path = out.join("symbol-order.txt");
    std::fs::write(&path, order)?;
    // Two arguments, not -Wl,...: that splits the path at any comma in it.
    let option = format!("--symbol-ordering-file={}", path.display());
    if !links_with(&var("RUSTC"), &out, &option) {
        println!("cargo:warning=the linker refuses --symbol-ordering-file: no function order");
        return Ok(());
    }
    for arg in ["-Xlinker", &option, "-Xlinker", "--no-warn-symbol-ordering"] {
        println!("cargo:rustc-link-arg-bin=weft={arg}");
    }
    Ok(())
}

/// Whether `rustc` links a one-line program for [`ORDERED_TARGET`] with `option` given to the
/// linker.
fn links_with(rustc: &str, out: &Path, option: &str) -> bool {
    let program = out.join("probe.rs");
    if std::fs::write(&program, "fn main() {}\n").is_err() {
        return false;
    }
    Command::new(rustc)
        .args(["--edition", "2021", "--target", ORDERED_TARGET, "-o"])
        .arg(out.join("probe"))
        .args(["-C", "link-arg=-Xlinker", "-C"])
        .arg(format!("link-arg={option}"))
        .arg(&program)
        .output()
        .is_ok_and(|o| o.status.success())
}
