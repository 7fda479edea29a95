//! Compiles the wire schemas in `proto/` with prost (protox parses them in Rust, so no system
//! `protoc` is needed), and gives a release link of the `weft` executable the order of its
//! functions in `link/symbol-order.txt.gz`: the code a node runs packed together, so that a
//! node maps about half as much of its executable (`scripts/symbol-order.sh`, BENCHMARKS.md).

use std::error::Error;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

/// The function order, made by `scripts/symbol-order.sh`.
const SYMBOL_ORDER: &str = "link/symbol-order.txt.gz";

/// The target the order was made for, whose default linker (lld, from Rust 1.90) reads it.
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

/// Hands the linker the function order, in release builds for [`ORDERED_TARGET`] linked by
/// rustc's own lld. Another linker may not know the option, so a linker set by hand (in
/// `.cargo/config.toml` or the flags), or a rustc before lld was its default, links without it,
/// as does `WEFT_SYMBOL_ORDER=off`. Names the executable no longer has are skipped by lld, so
/// an order older than the code costs memory, never correctness.
fn symbol_order() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={SYMBOL_ORDER}");
    println!("cargo:rerun-if-env-changed=WEFT_SYMBOL_ORDER");
    let var = |name| std::env::var(name).unwrap_or_default();
    let own_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || var("CARGO_ENCODED_RUSTFLAGS").contains("link");
    if var("PROFILE") != "release"
        || var("TARGET") != ORDERED_TARGET
        || var("WEFT_SYMBOL_ORDER") == "off"
        || own_linker
        || !links_with_lld(&var("RUSTC"))
    {
        return Ok(());
    }
    if !std::path::Path::new(SYMBOL_ORDER).exists() {
        println!("cargo:warning={SYMBOL_ORDER} is missing: functions are linked in no order");
        return Ok(());
    }
    let mut order = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(SYMBOL_ORDER)?)
        .read_to_string(&mut order)
        .map_err(|e| format!("{SYMBOL_ORDER}: {e}"))?;
    let path = PathBuf::from(var("OUT_DIR")).join("symbol-order.txt");
    std::fs::write(&path, order)?;
    println!(
        "cargo:rustc-link-arg-bin=weft=-Wl,--symbol-ordering-file={}",
        path.display()
    );
    println!("cargo:rustc-link-arg-bin=weft=-Wl,--no-warn-symbol-ordering");
    Ok(())
}

/// Whether `rustc` links [`ORDERED_TARGET`] with its own lld: it does by default from 1.90 on,
/// when its sysroot holds that lld (a distribution's rustc may leave it out and link with the
/// system's linker).
fn links_with_lld(rustc: &str) -> bool {
    let ask = |arg: &[&str]| {
        Command::new(rustc)
            .args(arg)
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = ask(&["--version"]);
    let mut numbers = version
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    let lld = PathBuf::from(ask(&["--print", "sysroot"]))
        .join("lib/rustlib")
        .join(ORDERED_TARGET)
        .join("bin/gcc-ld/ld.lld");
    (major, minor) >= (1, 90) && lld.exists()
}
