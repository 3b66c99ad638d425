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
    fs::write(out.join("strata_commands.rs"), commands(&fds))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
}

/// `request_id_of`: a message's idempotency key when it is a command (a
/// message with a `request_id` field), found by its type. Generated from the
/// descriptors, so a new command is known the moment its proto declares it.
fn commands(fds: &prost_types::FileDescriptorSet) -> String {
    let mut arms = String::new();
    for file in &fds.file {
        let Some(module) = file
            .package
            .as_deref()
            .and_then(|p| p.strip_prefix("strata."))
            .map(|p| p.replace("type.", "r#type.").replace('.', "::"))
        else {
            continue;
        };
        for message in &file.message_type {
            if message
                .field
                .iter()
                .any(|f| f.name.as_deref() == Some("request_id"))
            {
                let name = message.name.as_deref().unwrap_or_default();
                arms.push_str(&format!(
                    "    if let Some(m) = message.downcast_ref::<crate::{module}::{name}>() {{\n        return Some(&m.request_id);\n    }}\n"
                ));
            }
        }
    }
    format!(
        "/// The idempotency key (`request_id`) of `message` when it is a command of a\n\
         /// Strata context; `None` for queries and for anything else.\n\
         #[must_use]\n\
         pub fn request_id_of(message: &dyn std::any::Any) -> Option<&str> {{\n{arms}    None\n}}\n"
    )
}
