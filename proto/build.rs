//! Compiles every `.proto` under this crate with protox (pure Rust, no system
//! `protoc`) and exports the file descriptor set for gRPC reflection.

use std::{env, fs, io, path::PathBuf};

use prost::Message;

/// Every proto file, relative to this crate's directory. Add a context's file here.
const PROTOS: &[&str] = &[
    "strata/type/v1/money.proto",
    "strata/catalog/v1/catalog.proto",
    "strata/identity/v1/identity.proto",
    "strata/inventory/v1/inventory.proto",
    "strata/ordering/v1/ordering.proto",
];

fn main() -> io::Result<()> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."]).map_err(io::Error::other)?;
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| io::Error::other("OUT_DIR unset"))?);
    fs::write(out.join("strata_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
}
