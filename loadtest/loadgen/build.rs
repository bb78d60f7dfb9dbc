//! Generates the gRPC client from the service's own proto, with a vendored protoc so that no
//! system protoc is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let protos = manifest_dir.join("../../protos");
    let proto = protos.join("stock/v1/stock.proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    // prost-build reads PROTOC from the environment; build scripts run single-threaded here.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(std::slice::from_ref(&proto), &[protos, well_known])?;
    println!("cargo:rerun-if-changed={}", proto.display());
    Ok(())
}
