//! Generates the gRPC contracts, plus a file descriptor set for server reflection.
//!
//! protoc comes from the `protoc-bin-vendored` crate unless `PROTOC` is set, so a fresh
//! machine needs nothing installed beyond the Rust toolchain.
#![allow(unsafe_code)]

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "iceconfig/v1/iceconfig.proto",
    "signaling/v1/signaling.proto",
];
const INCLUDE: &str = ".";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if env::var_os("PROTOC").is_none() {
        // SAFETY: a build script is single-threaded; nothing reads the environment concurrently.
        unsafe { env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let include = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("descriptor.bin"))
        .compile_protos(
            &PROTOS.iter().map(PathBuf::from).collect::<Vec<_>>(),
            &[PathBuf::from(INCLUDE), include],
        )?;

    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
