//! Compiles proto/eddy.proto with protox (a protobuf compiler in Rust), so building needs no
//! system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/eddy.proto");
    let descriptors = protox::compile(["proto/eddy.proto"], ["proto"])?;
    let mut config = prost_build::Config::new();
    // Batches and other byte fields decode as `Bytes` slices of the frame: no copy.
    config.bytes(["."]);
    config.compile_fds(descriptors)?;
    Ok(())
}
