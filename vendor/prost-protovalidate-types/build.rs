//! CutX's copy of the upstream build script: the same generated code, but the proto is compiled
//! with protox (pure Rust) instead of a `protoc` binary, so that a fresh machine builds CutX with
//! nothing but cargo. The derives are the ones `prost_reflect_build::Builder::configure` adds.

use std::env;
use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "proto";
    let files = &["buf/validate/validate.proto"];

    for f in files {
        println!("cargo:rerun-if-changed={proto_dir}/{f}");
    }

    let base_path = PathBuf::from(
        env::var("OUT_DIR").map_err(|err| format!("missing OUT_DIR environment variable: {err}"))?,
    );
    let descriptor_path = base_path.join("file_descriptor_set.bin");

    let descriptors = protox::compile(files, [proto_dir])?;
    std::fs::write(&descriptor_path, descriptors.encode_to_vec())?;

    let mut config = prost_build::Config::new();
    if cfg!(feature = "reflect") {
        let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(descriptors.clone())?;
        for message in pool.all_messages() {
            let full_name = message.full_name();
            config
                .type_attribute(full_name, "#[derive(::prost_reflect::ReflectMessage)]")
                .type_attribute(full_name, format!(r#"#[prost_reflect(message_name = "{full_name}")]"#))
                .type_attribute(full_name, r#"#[prost_reflect(descriptor_pool = "DESCRIPTOR_POOL")]"#);
        }
    }
    config.compile_fds(descriptors)?;
    Ok(())
}
