//! Compiles proto/hallmark/v1/*.proto with protox (pure Rust: no system
//! protoc needed) and generates the tonic client and server code. The encoded
//! descriptor set is kept for gRPC server reflection.
use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "proto/hallmark/v1/hallmark.proto";
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([file], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("hallmark_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
