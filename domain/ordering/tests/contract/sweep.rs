//! What `mount` does: the expiry sweep it spawns, running in a server on
//! `127.0.0.1:0` (moving the clock past an order's deadline is enough for the
//! order to expire, seen on the event stream a client follows; no sleep), and
//! its settings read from the environment.

use std::{sync::Arc, time::Duration};

use strata_kernel::ManualClock;
use strata_ordering::Settings;
use strata_proto::ordering::v1::{self as pb, order_service_client::OrderServiceClient};
use tokio_stream::{StreamExt, wrappers::TcpListenerStream};

use crate::support::{Backend, at, lines, place_request, unique, uuid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawned_sweep_expires_orders() {
    let config = Backend::sqlite().fresh().await;
    let clock = Arc::new(ManualClock::new(at(0)));
    let settings = Settings {
        max_lines: 10,
        pending_ttl: Duration::from_secs(60),
        sweep_period: Duration::from_millis(20),
    };
    let service = strata_ordering::mount_with(config, settings, clock.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    let mut client = OrderServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap();

    let order = client
        .place_order(place_request(&unique("place"), &uuid(), lines(2)))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let mut events = client
        .stream_events(pb::StreamEventsRequest {
            after_position: 0,
            follow: true,
        })
        .await
        .unwrap()
        .into_inner();
    let placed = events.next().await.unwrap().unwrap();
    assert!(matches!(
        placed.event,
        Some(pb::stream_events_response::Event::OrderPlaced(_))
    ));

    clock.advance(time::Duration::seconds(60));
    let expired = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("the sweep expires the order")
        .unwrap()
        .unwrap();
    assert_eq!(expired.aggregate_id, order.id);
    assert_eq!(
        expired.event,
        Some(pb::stream_events_response::Event::OrderCancelled(
            pb::OrderCancelled {
                reason: "expired".into(),
                expired: true
            }
        ))
    );
    let stored = client
        .get_order(pb::GetOrderRequest { id: order.id })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert!(stored.expired);

    // A graceful shutdown waits for open calls: end the followed stream first.
    drop(events);
    drop(client);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
