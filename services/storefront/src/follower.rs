//! The follower of ordering's events: when an order is cancelled — by its
//! buyer, by staff, by a refused checkout, or because it expired unconfirmed —
//! its reservations are released in inventory. This is what heals a checkout
//! that died after its holds were made firm (firm holds never expire), and a
//! cancellation whose release failed. Contexts never call each other: the
//! application layer follows one and commands the other.
//!
//! The position of the last event handled is kept in
//! `<data dir>/storefront-ordering.position`, so a restart resumes there; an
//! event is handled again after a crash at worst, which is harmless (releases
//! are idempotent). A stream that fails is reopened from the same position,
//! with a growing pause, forever.

use std::{path::Path, time::Duration};

use strata_edge::{Edge, shop};
use strata_proto::ordering::v1::{self as ordering, stream_events_response::Event};
use strata_rpc::client::Call;
use tonic::Status;

/// The longest pause between two attempts to reopen the stream.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Follows ordering's events until the task is dropped.
pub async fn run(edge: Edge) {
    let file = edge.flags.data_dir.join("storefront-ordering.position");
    let mut position = match read_position(&file) {
        Ok(position) => position,
        Err(error) => {
            tracing::error!(file = %file.display(), %error, "cannot read the follower's position; the follower does not run");
            return;
        }
    };
    let mut pause = Duration::from_millis(100);
    loop {
        match follow(&edge, &file, &mut position).await {
            Ok(()) => tracing::info!(position, "ordering's event stream ended; reopening it"),
            Err(status) => tracing::warn!(position, code = ?status.code(), message = status.message(),
                "following ordering's events failed; retrying"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

async fn follow(edge: &Edge, file: &Path, position: &mut u64) -> Result<(), Status> {
    let mut stream = edge
        .downstream
        .ordering
        .clone()
        .stream_events(ordering::StreamEventsRequest {
            after_position: *position,
            follow: true,
        })
        .await?
        .into_inner();
    tracing::info!(after = *position, "following ordering's events");
    while let Some(event) = stream.message().await? {
        if let Some(Event::OrderCancelled(_)) = event.event {
            release(edge, &event.aggregate_id).await?;
        }
        *position = event.position;
        if let Err(error) = write_position(file, *position) {
            tracing::warn!(file = %file.display(), %error, "cannot keep the follower's position");
        }
    }
    Ok(())
}

/// Gives back the stock of the cancelled order `id`.
async fn release(edge: &Edge, id: &str) -> Result<(), Status> {
    let call = Call::new(
        &format!("follower/{id}"),
        Duration::from_secs(30),
        Duration::from_secs(5),
    );
    let order = call
        .run(
            edge.downstream
                .ordering
                .clone()
                .get_order(call.request(ordering::GetOrderRequest { id: id.to_owned() })),
        )
        .await?
        .order
        .ok_or_else(|| Status::internal("GetOrder answered without the order"))?;
    shop::release_stock(&edge.downstream, &call, &order).await?;
    tracing::info!(order = id, "released the stock of a cancelled order");
    Ok(())
}

fn read_position(file: &Path) -> std::io::Result<u64> {
    match std::fs::read_to_string(file) {
        Ok(text) => text.trim().parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not a position: {e}"))
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(error) => Err(error),
    }
}

/// Replaces the file whole (written beside it, then renamed), so a crash
/// leaves the old position or the new one, never half of one.
fn write_position(file: &Path, position: u64) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = file.with_extension("position.partial");
    std::fs::write(&partial, position.to_string())?;
    std::fs::rename(partial, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("strata-follower-{}", uuid::Uuid::now_v7()));
        let file = dir.join("f.position");
        assert_eq!(read_position(&file).unwrap(), 0, "none yet: from the start");
        write_position(&file, 4096).unwrap();
        assert_eq!(read_position(&file).unwrap(), 4096);
        std::fs::write(&file, "garbage").unwrap();
        assert!(
            read_position(&file).is_err(),
            "a corrupt position is not taken for 0"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
