//! Generates the API's protobuf messages (protos/stock/v1/stock.proto) for core_rs/src/wire.rs,
//! with a vendored protoc so that no system protoc is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let protos = root.join("protos");
    let proto = protos.join("stock/v1/stock.proto");
    // prost-build reads PROTOC from the environment; a build script runs on its own.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let well_known = protoc_bin_vendored::include_path()?;
    prost_build::Config::new()
        .compile_protos(std::slice::from_ref(&proto), &[protos, well_known])?;
    println!("cargo:rerun-if-changed={}", proto.display());
    Ok(())
}
