//! Compiles `cutx/v1/*.proto` with protox (no system `protoc`) into Rust code and a descriptor
//! set. The descriptor set is encoded by protox's `Compiler` itself: going through `prost_types`
//! would drop the `google.api.http` options the gateway builds its REST routes from.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(root.join("cutx/v1"))?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "proto"));
    files.sort();
    // The error details are not imported by any cutx file, but the gateway renders them as JSON
    // and reflection describes them, so they travel in the same descriptor set.
    files.push(root.join("google/rpc/error_details.proto"));
    files.push(root.join("google/rpc/status.proto"));
    println!("cargo:rerun-if-changed={}", root.join("cutx").display());
    println!("cargo:rerun-if-changed={}", root.join("google").display());

    // buf/validate/validate.proto comes from the vendored prost-protovalidate-types, which the
    // validator's own types are generated from: one copy of the file for both.
    let validate = root.join("../vendor/prost-protovalidate-types/proto");
    println!("cargo:rerun-if-changed={}", validate.display());
    let mut compiler = protox::Compiler::new([&root, &validate])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;
    std::fs::write(out.join("cutx_descriptor.bin"), compiler.encode_file_descriptor_set())?;

    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
