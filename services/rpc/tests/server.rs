//! `strata_rpc::Server` served on `127.0.0.1:0` and driven through generated
//! clients, as any gRPC caller would.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use prost::Message as _;
use tokio::{sync::oneshot, task::JoinHandle};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

/// A server running in this test, stopped by sending on `stop`.
struct Running {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), strata_rpc::ServeError>>,
}

async fn serve(server: strata_rpc::Server) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    Running { address, stop, task }
}

fn channel(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_lazy()
}

/// The file descriptors reflection answers `request` with.
async fn reflect(address: SocketAddr, request: MessageRequest) -> Vec<prost_types::FileDescriptorProto> {
    let mut reflection = ServerReflectionClient::new(channel(address));
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let response = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .collect()
}

#[tokio::test]
async fn reflection_describes_the_google_rpc_error_details() {
    let running = serve(strata_rpc::Server::new()).await;

    // What grpcurl asks when it meets an `ErrorInfo` in an error's details …
    let files = reflect(
        running.address,
        MessageRequest::FileContainingSymbol("google.rpc.ErrorInfo".into()),
    )
    .await;
    let file = files
        .iter()
        .find(|f| f.name() == "google/rpc/error_details.proto")
        .unwrap_or_else(|| panic!("no google/rpc/error_details.proto in {files:?}"));
    let messages: Vec<_> = file.message_type.iter().map(|m| m.name()).collect();
    for expected in ["ErrorInfo", "BadRequest", "PreconditionFailure", "RetryInfo"] {
        assert!(messages.contains(&expected), "{expected} in {messages:?}");
    }
    // … and then, to build the descriptor, every file it imports.
    for dependency in &file.dependency {
        let files = reflect(
            running.address,
            MessageRequest::FileByFilename(dependency.clone()),
        )
        .await;
        assert!(files.iter().any(|f| f.name() == dependency), "{dependency}");
    }
    let files = reflect(
        running.address,
        MessageRequest::FileContainingSymbol("google.rpc.Status".into()),
    )
    .await;
    assert!(
        files.iter().any(|f| f.name() == "google/rpc/status.proto"),
        "{files:?}"
    );

    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
}
