//! Generates the Rust types and tonic services from `touchpoint/v1/*.proto`.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate so a fresh machine needs no
//! hand-installed compiler; a `PROTOC` variable still wins when it is set.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "touchpoint/v1/common.proto",
    "touchpoint/v1/envelope.proto",
    "touchpoint/v1/case_events.proto",
    "touchpoint/v1/outreach_events.proto",
    "touchpoint/v1/attempt_events.proto",
    "touchpoint/v1/inbound_events.proto",
    "touchpoint/v1/cases.proto",
    "touchpoint/v1/cadence.proto",
    "touchpoint/v1/dispatch.proto",
    "touchpoint/v1/routing.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("touchpoint_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["."])?;
    println!("cargo:rerun-if-changed=touchpoint");
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}
