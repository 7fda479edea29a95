//! Compiles the wire schemas in `proto/` with prost (protox parses them in Rust, so no system
//! `protoc` is needed), and shapes the release link of the `weft` executable for memory: the
//! order of its functions in `link/symbol-order.txt.gz` packs the code a node runs together, so
//! that a node maps about 40 % less of its executable (`scripts/symbol-order.sh`), and its
//! relative relocations are packed, so that the loader reads kilobytes of them, not a megabyte
//! that then stays resident (BENCHMARKS.md, "Code packed by what a node runs" and "Relocations
//! packed").

use std::error::Error;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The function order, made by `scripts/symbol-order.sh`.
const SYMBOL_ORDER: &str = "link/symbol-order.txt.gz";

/// The target whose release link is shaped: the order was made for it.
const LINK_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Compiles the schemas, then shapes the link: only a release build for [`LINK_TARGET`] whose
/// linker was not set by hand (`RUSTC_LINKER`, or a link flag in the rustflags), and each part
/// can be turned off: `WEFT_SYMBOL_ORDER=off`, `WEFT_PACK_RELOCS=off`.
fn main() -> Result<(), Box<dyn Error>> {
    let schemas = ["proto/weft/token.proto", "proto/weft/p2p.proto"];
    for schema in schemas {
        println!("cargo:rerun-if-changed={schema}");
    }
    let descriptors = protox::compile(schemas, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    for var in [
        "WEFT_SYMBOL_ORDER",
        "WEFT_PACK_RELOCS",
        "RUSTC_LINKER",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let var = |name| std::env::var(name).unwrap_or_default();
    let own_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || var("CARGO_ENCODED_RUSTFLAGS").contains("link");
    if var("PROFILE") != "release" || var("TARGET") != LINK_TARGET || own_linker {
        return Ok(());
    }
    let out = PathBuf::from(var("OUT_DIR"));
    let rustc = var("RUSTC");
    if var("WEFT_PACK_RELOCS") != "off" {
        pack_relocations(&rustc, &out);
    }
    if var("WEFT_SYMBOL_ORDER") != "off" {
        symbol_order(&rustc, &out)?;
    }
    Ok(())
}

/// Has the linker pack the executable's relative relocations (`-z pack-relative-relocs`,
/// `DT_RELR`): a position-independent executable holds one for each pointer in its data, about
/// 39,600 in weft, 24 bytes each in the usual table; the loader reads the whole table at start,
/// and those pages stay resident (0.9 MiB). Packed, they take a few kilobytes. glibc's loader
/// knows the packed form from 2.36 and refuses to start such a binary before, so a probe linked
/// with the option must run on the building machine, or weft is linked without it (a GNU ld
/// older than 2.38 only warns of the option, and links the probe and weft unpacked).
fn pack_relocations(rustc: &str, out: &Path) {
    let options = ["-z", "pack-relative-relocs"];
    if !probe(rustc, out, &options, true) {
        println!(
            "cargo:warning=relative relocations are not packed: the probe did not link or run"
        );
        return;
    }
    for option in options {
        println!("cargo:rustc-link-arg-bin=weft=-Xlinker");
        println!("cargo:rustc-link-arg-bin=weft={option}");
    }
}

/// Hands the linker the function order, when its linker takes lld's `--symbol-ordering-file`
/// (rustc's own lld, the default for [`LINK_TARGET`] from Rust 1.90): a one-line program is
/// linked with the option first, and a linker that refuses it (GNU ld, or a rustc built to link
/// with the system's) links weft without it. Names the executable no longer has are skipped by
/// lld, so an order older than the code costs memory, never correctness.
fn symbol_order(rustc: &str, out: &Path) -> Result<(), Box<dyn Error>> {
    if !Path::new(SYMBOL_ORDER).exists() {
        println!("cargo:warning={SYMBOL_ORDER} is missing: functions are linked in no order");
        return Ok(());
    }
    println!("cargo:rerun-if-changed={SYMBOL_ORDER}");
    let mut order = String::new();
    let file = std::fs::File::open(SYMBOL_ORDER).map_err(|e| format!("{SYMBOL_ORDER}: {e}"))?;
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut order)
        .map_err(|e| format!("{SYMBOL_ORDER}: {e}"))?;
    let path = out.join("symbol-order.txt");
    std::fs::write(&path, order)?;
    // Two arguments, not -Wl,...: that splits the path at any comma in it.
    let option = format!("--symbol-ordering-file={}", path.display());
    if !probe(rustc, out, &[option.as_str()], false) {
        println!("cargo:warning=the linker refuses --symbol-ordering-file: no function order");
        return Ok(());
    }
    for arg in ["-Xlinker", &option, "-Xlinker", "--no-warn-symbol-ordering"] {
        println!("cargo:rustc-link-arg-bin=weft={arg}");
    }
    Ok(())
}

/// Whether `rustc` links a one-line program for [`LINK_TARGET`] with `options` given to the
/// linker and, if `run`, the program then runs.
fn probe(rustc: &str, out: &Path, options: &[&str], run: bool) -> bool {
    let program = out.join("probe.rs");
    let binary = out.join("probe");
    if std::fs::write(&program, "fn main() {}\n").is_err() {
        return false;
    }
    let mut link = Command::new(rustc);
    link.args(["--edition", "2021", "--target", LINK_TARGET, "-o"])
        .arg(&binary);
    for option in options {
        link.args(["-C", "link-arg=-Xlinker", "-C"])
            .arg(format!("link-arg={option}"));
    }
    let linked = link
        .arg(&program)
        .output()
        .is_ok_and(|o| o.status.success());
    // Its output captured: cargo reads a build script's own output as directives.
    linked
        && (!run
            || Command::new(&binary)
                .output()
                .is_ok_and(|o| o.status.success()))
}
