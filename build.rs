//! Compiles the wire schemas in `proto/` with prost. protox parses them in Rust, so no system
//! `protoc` is needed to build weft.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schemas = ["proto/weft/token.proto", "proto/weft/p2p.proto"];
    for schema in schemas {
        println!("cargo:rerun-if-changed={schema}");
    }
    let descriptors = protox::compile(schemas, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
