//! Compiles the vendored `google/rpc` protos (the standard error model that
//! `tonic-types` encodes into error details) with protox, no system `protoc`,
//! into a file descriptor set that the server publishes through reflection.

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
    fs::write(out.join("google_rpc_descriptor.bin"), fds.encode_to_vec())
}
