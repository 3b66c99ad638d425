//! Compiles, with protox (no system `protoc`):
//! - the vendored `google/rpc` protos (the standard error model that
//!   `tonic-types` encodes into error details) into a file descriptor set that
//!   the server publishes through reflection;
//! - `etcd/etcd.proto`, the part of etcd's v3 API the registry uses, into a
//!   gRPC client ([`crate::registry`]).

use std::{env, fs, io, path::PathBuf};

use prost::Message;

/// The vendored files, relative to `proto/`.
const PROTOS: &[&str] = &["google/rpc/status.proto", "google/rpc/error_details.proto"];

fn main() -> io::Result<()> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    // With their imports (google/protobuf/any.proto and duration.proto, which
    // protox knows), so that a reflection client can resolve every dependency.
    let fds = protox::compile(PROTOS, ["proto"]).map_err(io::Error::other)?;
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| io::Error::other("OUT_DIR unset"))?);
    fs::write(out.join("google_rpc_descriptor.bin"), fds.encode_to_vec())?;

    println!("cargo:rerun-if-changed=proto/{ETCD}");
    let etcd = protox::compile([ETCD], ["proto"]).map_err(io::Error::other)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(etcd)
}

/// etcd's KV, Watch and Lease services, relative to `proto/`.
const ETCD: &str = "etcd/etcd.proto";
