//! The `weft` binary (also installed as `edgevpn` for Kairos): everything is in the library.

fn main() -> std::process::ExitCode {
    weft::cli::main()
}
