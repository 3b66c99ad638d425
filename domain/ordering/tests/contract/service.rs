//! The context's behaviour through its gRPC adapter (what a client sees:
//! codes, named fields, reasons), on a fresh store of the backend per step.

use std::{sync::Arc, time::Instant};
use strata_testkit::{CONTENDERS, race};

use strata_proto::ordering::v1::{self as pb, stream_events_response::Event};
use tokio_stream::StreamExt;
use tonic::{Code, Request};

use crate::support::*;

/// How many times each race is run.
const ROUNDS: usize = 25;
pub(crate) async fn suite(backend: &Backend) {
    placing_validates_and_computes_totals(backend).await;
    only_legal_transitions(backend).await;
    cancelling_twice(backend).await;
    idempotent_commands(backend).await;
    a_caller_chosen_id(backend).await;
    racing_retries_get_the_first_answer(backend).await;
    no_lost_update(backend).await;
    listing_newest_first_with_bound_tokens(backend).await;
    events_in_commit_order_resumable_and_followed(backend).await;
    a_command_past_the_deadline_expires_the_order(backend).await;
    the_sweep_expires_due_orders_once(backend).await;
}

async fn placing_validates_and_computes_totals(backend: &Backend) {
    let h = Harness::new(backend, 5).await;
    let buyer = uuid();
    let order = h
        .place(place_request(
            &unique("place"),
            &buyer,
            vec![line(3, 1290), line(1, 500), line(2, 1)],
        ))
        .await
        .unwrap();
    assert_eq!(status_of(&order), pb::OrderStatus::Pending);
    assert_eq!(order.version, 1);
    assert_eq!(order.buyer_id, buyer);
    let totals: Vec<i64> = order
        .lines
        .iter()
        .map(|l| l.line_total.as_ref().unwrap().amount_minor)
        .collect();
    assert_eq!(totals, [3870, 500, 2], "line totals are quantity × unit price");
    assert_eq!(order.total, money("EUR", 4372), "the total is computed here");
    assert_eq!(
        order.expire_time.as_ref().map(|t| t.seconds),
        Some((at(0) + TTL).unix_timestamp())
    );
    assert_eq!(h.get(&order.id).await.unwrap(), order);

    let refused = |lines: Vec<pb::PlaceOrderLine>| {
        let h = &h;
        let buyer = buyer.clone();
        async move {
            h.place(place_request(&unique("bad"), &buyer, lines))
                .await
                .unwrap_err()
        }
    };
    let twice = line(1, 100);
    let mut again = line(2, 100);
    again.product_id = twice.product_id.clone();
    let mut dollars = line(1, 100);
    dollars.unit_price = money("USD", 100);
    let mut control = line(1, 100);
    control.sku = "MUG\u{0}".into();
    let status = refused(vec![twice, line(0, 100), again, dollars, control]).await;
    assert_eq!(
        violated_fields(&status),
        ["lines[1].quantity", "lines[4].sku"],
        "per-line values first; the rules across lines once every line reads"
    );
    let mut again = line(2, 100);
    let first = line(1, 100);
    again.product_id = first.product_id.clone();
    let mut dollars = line(1, 100);
    dollars.unit_price = money("USD", 100);
    let status = refused(vec![first, line(1, 5), again, dollars]).await;
    assert_eq!(
        violated_fields(&status),
        ["lines[2].product_id", "lines[3].unit_price.currency_code"]
    );
    let mut no_price = line(1, 100);
    no_price.unit_price = None;
    let mut bad_id = line(1, 100);
    bad_id.product_id = "nope".into();
    assert_eq!(
        violated_fields(&refused(vec![line(1, 0), no_price, bad_id]).await),
        [
            "lines[0].unit_price.amount_minor",
            "lines[1].unit_price",
            "lines[2].product_id"
        ]
    );
    assert_eq!(
        violated_fields(&refused(vec![line(u32::MAX, i64::MAX / 1000)]).await),
        ["lines[0].quantity"],
        "a line total that overflows is refused, not wrapped"
    );
    assert_eq!(
        violated_fields(&refused(vec![line(1, i64::MAX - 10), line(1, 11)]).await),
        ["lines"],
        "an order total that overflows is refused"
    );
    assert_eq!(
        violated_fields(&refused(lines(6)).await),
        ["lines"],
        "at most max_lines lines"
    );
    assert_eq!(
        violated_fields(&refused(vec![]).await),
        ["lines"],
        "at least one line"
    );
    let status = h
        .place(place_request("", "not-a-uuid", lines(1)))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["buyer_id", "request_id"]);
    assert!(
        h.place(place_request(&unique("max"), &buyer, lines(5)))
            .await
            .is_ok()
    );
}

async fn only_legal_transitions(backend: &Backend) {
    let h = Harness::new(backend, 100).await;
    let order = h.place_ok(&uuid(), 2).await;
    let refused = h.ship(&order.id, &unique("ship")).await.unwrap_err();
    assert_eq!(precondition_reason(&refused), "ORDER_NOT_CONFIRMED");
    let confirmed = h.confirm(&order.id, &unique("confirm"), Some(1)).await.unwrap();
    assert_eq!(
        (status_of(&confirmed), confirmed.version),
        (pb::OrderStatus::Confirmed, 2)
    );
    assert_eq!(confirmed.lines, order.lines, "the lines never change");
    let refused = h.confirm(&order.id, &unique("confirm"), None).await.unwrap_err();
    assert_eq!(precondition_reason(&refused), "ORDER_NOT_PENDING");
    let shipped = h.ship(&order.id, &unique("ship")).await.unwrap();
    assert_eq!(
        (status_of(&shipped), shipped.version),
        (pb::OrderStatus::Shipped, 3)
    );
    let refused = h
        .cancel(&order.id, &unique("cancel"), "too late")
        .await
        .unwrap_err();
    assert_eq!(precondition_reason(&refused), "ORDER_SHIPPED");
    assert_eq!(
        h.get(&order.id).await.unwrap(),
        shipped,
        "refusals change nothing"
    );

    // Pending and confirmed orders can be cancelled; nothing follows.
    let pending = h.place_ok(&uuid(), 1).await;
    let cancelled = h
        .cancel(&pending.id, &unique("cancel"), "  changed my mind ")
        .await
        .unwrap();
    assert_eq!(status_of(&cancelled), pb::OrderStatus::Cancelled);
    assert_eq!(
        (cancelled.cancel_reason.as_str(), cancelled.expired),
        ("changed my mind", false)
    );
    for refused in [
        h.confirm(&pending.id, &unique("c"), None).await.unwrap_err(),
        h.ship(&pending.id, &unique("s")).await.unwrap_err(),
    ] {
        assert_eq!(refused.code(), Code::FailedPrecondition);
    }
    let other = h.place_ok(&uuid(), 1).await;
    h.confirm(&other.id, &unique("c"), None).await.unwrap();
    assert!(h.cancel(&other.id, &unique("x"), "no stock").await.is_ok());

    let status = h.cancel(&other.id, &unique("x"), "bell\u{7}").await.unwrap_err();
    assert_eq!(violated_fields(&status), ["reason"]);
    let status = h.cancel("nope", "has space", "").await.unwrap_err();
    assert_eq!(violated_fields(&status), ["id", "reason", "request_id"]);
    let missing = h.confirm(&uuid(), &unique("c"), None).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

async fn cancelling_twice(backend: &Backend) {
    let h = Harness::new(backend, 100).await;
    let order = h.place_ok(&uuid(), 1).await;
    let key = unique("cancel");
    let first = h.cancel(&order.id, &key, "duplicate order").await.unwrap();
    let again = h.cancel(&order.id, &key, "duplicate order").await.unwrap();
    assert_eq!(again, first, "the same request_id replays the first answer");
    let refused = h
        .cancel(&order.id, &unique("cancel"), "duplicate order")
        .await
        .unwrap_err();
    assert_eq!(precondition_reason(&refused), "ORDER_ALREADY_CANCELLED");
    let reused = h.cancel(&order.id, &key, "another reason").await.unwrap_err();
    assert_eq!(violated_fields(&reused), ["request_id"]);
    let cancelled = h
        .events_of(&order.id)
        .await
        .into_iter()
        .filter(|e| matches!(e, Event::OrderCancelled(_)))
        .count();
    assert_eq!(cancelled, 1, "one effect");
}

async fn idempotent_commands(backend: &Backend) {
    let h = Harness::new(backend, 100).await;
    let buyer = uuid();
    let key = unique("place");
    let request = place_request(&key, &buyer, lines(2));
    let first = h.place(request.clone()).await.unwrap();
    h.clock.advance(time::Duration::seconds(5));
    let again = h.place(request.clone()).await.unwrap();
    assert_eq!(again, first, "same request_id: the first answer");
    let mut different = request.clone();
    different.lines[0].quantity += 1;
    assert_eq!(
        violated_fields(&h.place(different).await.unwrap_err()),
        ["request_id"]
    );
    let mut other_buyer = request;
    other_buyer.buyer_id = uuid();
    assert_eq!(
        violated_fields(&h.place(other_buyer).await.unwrap_err()),
        ["request_id"]
    );
    let listed = h
        .list(pb::ListOrdersRequest {
            buyer_id: buyer.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.orders, std::slice::from_ref(&first), "one order placed");
    assert_eq!(h.events_of(&first.id).await.len(), 1, "one event");

    let confirm_key = unique("confirm");
    let confirmed = h.confirm(&first.id, &confirm_key, Some(1)).await.unwrap();
    let again = h.confirm(&first.id, &confirm_key, Some(1)).await.unwrap();
    assert_eq!(again, confirmed, "a retry after success is no conflict");
    let reused = h.confirm(&first.id, &confirm_key, None).await.unwrap_err();
    assert_eq!(
        violated_fields(&reused),
        ["request_id"],
        "another expected_version is another command"
    );
    let reused = h.ship(&first.id, &confirm_key).await.unwrap_err();
    assert_eq!(
        violated_fields(&reused),
        ["request_id"],
        "another operation is another command"
    );

    // The context's own keys are not the clients': the sweep's key for an
    // order cannot be taken from it.
    let squatter = format!("strata.ordering/expire/{}", first.id);
    let refused = h.cancel(&first.id, &squatter, "mine").await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["request_id"]);
}

/// A caller that chooses the id finds its order by it; the id is part of the
/// command; another order cannot take it.
async fn a_caller_chosen_id(backend: &Backend) {
    let h = Harness::new(backend, 100).await;
    let buyer = uuid();
    let id = uuid();
    assert_eq!(h.get(&id).await.unwrap_err().code(), Code::NotFound);
    let mut request = place_request(&unique("chosen"), &buyer, lines(1));
    request.id.clone_from(&id);
    let placed = h.place(request.clone()).await.unwrap();
    assert_eq!(placed.id, id);
    assert_eq!(h.get(&id).await.unwrap(), placed, "found by the id it chose");
    assert_eq!(
        h.place(request.clone()).await.unwrap(),
        placed,
        "a retry: the first answer"
    );

    let mut other_id = request.clone();
    other_id.id = uuid();
    assert_eq!(
        violated_fields(&h.place(other_id).await.unwrap_err()),
        ["request_id"],
        "the id is part of the command"
    );
    let mut taken = request.clone();
    taken.request_id = unique("taken");
    let refused = h.place(taken).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    assert_eq!(h.events_of(&id).await.len(), 1, "one order, one event");

    let mut malformed = request;
    malformed.request_id = unique("malformed");
    malformed.id = "not-a-uuid".to_owned();
    assert_eq!(violated_fields(&h.place(malformed).await.unwrap_err()), ["id"]);
}

/// N identical commands at once (a client retrying while its first attempt is
/// still running): every one gets the first, successful answer; one effect.
async fn racing_retries_get_the_first_answer(backend: &Backend) {
    let h = Arc::new(Harness::new(backend, 100).await);
    let started = Instant::now();
    for round in 0..ROUNDS {
        let buyer = uuid();
        let request = place_request(&unique("retry"), &buyer, lines(3));
        let results = race(|_| {
            let h = h.clone();
            let request = request.clone();
            async move { h.place(request).await }
        })
        .await;
        let first = results[0]
            .as_ref()
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        for result in &results {
            assert_eq!(result.as_ref().ok(), Some(first), "round {round}: {results:?}");
        }
        let listed = h
            .list(pb::ListOrdersRequest {
                buyer_id: buyer,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.orders.len(), 1, "round {round}: one order");
    }
    println!(
        "racing retries ({}): {ROUNDS} rounds × {CONTENDERS} identical PlaceOrder: 1 order and {CONTENDERS} equal answers each, in {:?}",
        backend.name(),
        started.elapsed()
    );
}

/// Concurrent commands with the same expected_version: exactly one wins, the
/// others are ABORTED, and the winner's change is the one stored.
async fn no_lost_update(backend: &Backend) {
    let h = Arc::new(Harness::new(backend, 100).await);
    let started = Instant::now();
    let (mut winners, mut aborted) = (0, 0);
    for round in 0..ROUNDS {
        let order = h.place_ok(&uuid(), 1).await;
        let results = race(|n| {
            let h = h.clone();
            let id = order.id.clone();
            async move {
                // Half confirm, half cancel: two different outcomes could be lost.
                if n % 2 == 0 {
                    h.confirm(&id, &unique("c"), Some(1)).await
                } else {
                    h.cancel_at(&id, &unique("x"), &format!("contender {n}"), Some(1))
                        .await
                }
            }
        })
        .await;
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: exactly one winner: {results:?}");
        for status in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(status.code(), Code::Aborted, "round {round}: {status:?}");
        }
        let stored = h.get(&order.id).await.unwrap();
        assert_eq!(&&stored, &won[0], "round {round}: the winner's change is stored");
        assert_eq!(stored.version, 2);
        assert_eq!(
            h.events_of(&order.id).await.len(),
            2,
            "round {round}: placed + one change"
        );
        winners += won.len();
        aborted += results.len() - won.len();
    }
    assert_eq!((winners, aborted), (ROUNDS, ROUNDS * (CONTENDERS - 1)));
    println!(
        "no lost update ({}): {ROUNDS} rounds × {CONTENDERS} contenders with expected_version 1: {winners} winners, {aborted} ABORTED, in {:?}",
        backend.name(),
        started.elapsed()
    );
}

async fn listing_newest_first_with_bound_tokens(backend: &Backend) {
    let h = Harness::new(backend, 100).await;
    let (alice, bob) = (uuid(), uuid());
    let mut placed = Vec::new();
    for n in 0..7 {
        // Pairs placed at the same instant: the id breaks the tie.
        if n % 2 == 0 {
            h.clock.advance(time::Duration::seconds(1));
        }
        let order = h.place_ok(if n == 3 { &bob } else { &alice }, 1).await;
        let order = if n % 3 == 0 {
            h.confirm(&order.id, &unique("c"), None).await.unwrap()
        } else {
            order
        };
        placed.push(order);
    }
    let all_pages = |buyer_id: String, status: pb::OrderStatus| {
        let h = &h;
        async move {
            let mut seen = Vec::new();
            let mut token = String::new();
            for pages in 0.. {
                assert!(pages < 100, "the pages never end");
                let page = h
                    .list(pb::ListOrdersRequest {
                        page_size: 2,
                        page_token: token,
                        buyer_id: buyer_id.clone(),
                        status: status.into(),
                    })
                    .await
                    .unwrap();
                assert!(page.orders.len() <= 2);
                seen.extend(page.orders.into_iter().map(|o| o.id));
                if page.next_page_token.is_empty() {
                    return seen;
                }
                token = page.next_page_token;
            }
            seen
        }
    };
    let newest_first = |keep: &dyn Fn(&pb::Order) -> bool| {
        let mut orders: Vec<_> = placed.iter().filter(|o| keep(o)).collect();
        orders
            .sort_by_key(|o| std::cmp::Reverse((o.create_time.map(|t| (t.seconds, t.nanos)), o.id.clone())));
        orders.into_iter().map(|o| o.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        all_pages(String::new(), pb::OrderStatus::Unspecified).await,
        newest_first(&|_| true)
    );
    assert_eq!(
        all_pages(alice.clone(), pb::OrderStatus::Unspecified).await,
        newest_first(&|o| o.buyer_id == alice)
    );
    assert_eq!(
        all_pages(String::new(), pb::OrderStatus::Confirmed).await,
        newest_first(&|o| status_of(o) == pb::OrderStatus::Confirmed)
    );
    assert_eq!(
        all_pages(alice.clone(), pb::OrderStatus::Pending).await,
        newest_first(&|o| o.buyer_id == alice && status_of(o) == pb::OrderStatus::Pending)
    );

    let first = h
        .list(pb::ListOrdersRequest {
            page_size: 2,
            buyer_id: alice.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let status = h
        .list(pb::ListOrdersRequest {
            page_size: 2,
            page_token: first.next_page_token,
            buyer_id: bob,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["page_token"],
        "a token is bound to its filter"
    );
    let status = h
        .list(pb::ListOrdersRequest {
            page_size: -1,
            buyer_id: "x".into(),
            status: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_size", "buyer_id", "status"]);
    // A page that holds exactly the rest says that no more follow.
    let carol = uuid();
    h.place_ok(&carol, 1).await;
    h.place_ok(&carol, 1).await;
    let exact = h
        .list(pb::ListOrdersRequest {
            page_size: 2,
            page_token: String::new(),
            buyer_id: carol.clone(),
            status: pb::OrderStatus::Unspecified.into(),
        })
        .await
        .unwrap();
    assert_eq!(exact.orders.len(), 2);
    assert!(exact.next_page_token.is_empty(), "no page follows the last one");
}

async fn events_in_commit_order_resumable_and_followed(backend: &Backend) {
    let h = Arc::new(Harness::new(backend, 100).await);
    // A follower opened before any write sees every event once, in order,
    // while writers commit concurrently.
    let follower = h
        .grpc
        .stream_events(Request::new(pb::StreamEventsRequest {
            after_position: 0,
            follow: true,
        }))
        .await
        .unwrap()
        .into_inner();
    let mut orders = Vec::new();
    for _ in 0..CONTENDERS {
        orders.push(h.place_ok(&uuid(), 1).await);
    }
    for round in 0..4 {
        race(|n| {
            let h = h.clone();
            let id = orders[n].id.clone();
            async move {
                match round {
                    0 => h.confirm(&id, &unique("c"), None).await.unwrap(),
                    1 => h.ship(&id, &unique("s")).await.unwrap(),
                    _ => h.place_ok(&uuid(), 2).await,
                }
            }
        })
        .await;
    }
    let all = h.events(0).await;
    let total = CONTENDERS * 5;
    assert_eq!(all.len(), total, "every command wrote one event");
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions increase: {positions:?}"
    );
    let followed: Vec<_> = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        follower.take(total).map(Result::unwrap).collect::<Vec<_>>(),
    )
    .await
    .expect("the follower receives every event");
    assert_eq!(
        followed, all,
        "the follower saw every event once, in commit order"
    );
    for order in &orders {
        let kinds: Vec<_> = all
            .iter()
            .filter(|e| e.aggregate_id == order.id)
            .map(|e| {
                (
                    e.aggregate_version,
                    std::mem::discriminant(e.event.as_ref().unwrap()),
                )
            })
            .collect();
        assert_eq!(kinds.len(), 3);
        assert!(matches!(
            all.iter().find(|e| e.aggregate_id == order.id).unwrap().event,
            Some(Event::OrderPlaced(_))
        ));
        assert_eq!(kinds.iter().map(|k| k.0).collect::<Vec<_>>(), [1, 2, 3]);
    }

    // Resuming after any position gives exactly the rest: no gap, no repeat.
    for cut in [0, 1, total / 2, total - 1, total] {
        let after = if cut == 0 { 0 } else { all[cut - 1].position };
        assert_eq!(h.events(after).await, all[cut..], "resumed after event {cut}");
    }

    // `follow` delivers an event committed after the stream opened.
    let last = all.last().unwrap().position;
    let mut stream = h
        .grpc
        .stream_events(Request::new(pb::StreamEventsRequest {
            after_position: last,
            follow: true,
        }))
        .await
        .unwrap()
        .into_inner();
    let order = h.place_ok(&uuid(), 1).await;
    let received = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("the follower is woken by the commit")
        .unwrap()
        .unwrap();
    assert_eq!(received.aggregate_id, order.id);
    assert!(received.position > last);
    match received.event.unwrap() {
        Event::OrderPlaced(placed) => {
            assert_eq!(placed.lines, order.lines);
            assert_eq!(placed.total, order.total);
            assert_eq!(placed.buyer_id, order.buyer_id);
        }
        other => panic!("{other:?}"),
    }
}

async fn a_command_past_the_deadline_expires_the_order(backend: &Backend) {
    let h = Harness::new(backend, 100).await;
    let late = h.place_ok(&uuid(), 1).await;
    let in_time = h.place_ok(&uuid(), 1).await;
    let looked_at = h.place_ok(&uuid(), 1).await;
    h.clock.advance(TTL - time::Duration::microseconds(1));
    assert!(
        h.confirm(&in_time.id, &unique("c"), Some(1)).await.is_ok(),
        "just before the deadline"
    );
    h.clock.advance(time::Duration::microseconds(1));

    let key = unique("confirm");
    let refused = h.confirm(&late.id, &key, Some(1)).await.unwrap_err();
    assert_eq!(precondition_reason(&refused), "ORDER_EXPIRED");
    let expired = h.get(&late.id).await.unwrap();
    assert_eq!(status_of(&expired), pb::OrderStatus::Cancelled);
    assert_eq!(
        (expired.cancel_reason.as_str(), expired.expired, expired.version),
        ("expired", true, 2)
    );
    let again = h.confirm(&late.id, &key, Some(1)).await.unwrap_err();
    assert_eq!(
        precondition_reason(&again),
        "ORDER_EXPIRED",
        "a retry answers the same"
    );
    let refused = h.confirm(&late.id, &unique("confirm"), None).await.unwrap_err();
    assert_eq!(precondition_reason(&refused), "ORDER_NOT_PENDING");
    let events = h.events_of(&late.id).await;
    assert_eq!(events.len(), 2, "placed, then expired once: {events:?}");
    assert_eq!(
        events[1],
        Event::OrderCancelled(pb::OrderCancelled {
            reason: "expired".into(),
            expired: true
        })
    );

    // Reading an order past its deadline expires it too.
    let read = h.get(&looked_at.id).await.unwrap();
    assert_eq!(
        (status_of(&read), read.expired, read.version),
        (pb::OrderStatus::Cancelled, true, 2)
    );
    assert_eq!(h.get(&looked_at.id).await.unwrap(), read, "once");
    assert_eq!(h.events_of(&looked_at.id).await.len(), 2);
    assert_eq!(
        status_of(&h.get(&in_time.id).await.unwrap()),
        pb::OrderStatus::Confirmed
    );
    assert_eq!(
        h.ordering.expire_due().await.unwrap(),
        0,
        "nothing left for the sweep"
    );
}

async fn the_sweep_expires_due_orders_once(backend: &Backend) {
    let h = Arc::new(Harness::new(backend, 100).await);
    let first = h.place_ok(&uuid(), 1).await;
    let confirmed = h.place_ok(&uuid(), 1).await;
    h.confirm(&confirmed.id, &unique("c"), None).await.unwrap();
    let cancelled = h.place_ok(&uuid(), 1).await;
    h.cancel(&cancelled.id, &unique("x"), "no longer needed")
        .await
        .unwrap();
    h.clock.advance(time::Duration::minutes(5));
    let second = h.place_ok(&uuid(), 1).await;

    assert_eq!(h.ordering.expire_due().await.unwrap(), 0, "nothing is due yet");
    h.clock.advance(time::Duration::minutes(11));
    assert_eq!(h.ordering.expire_due().await.unwrap(), 1, "the first order only");
    assert!(h.get(&first.id).await.unwrap().expired);
    assert_eq!(
        status_of(&h.get(&second.id).await.unwrap()),
        pb::OrderStatus::Pending
    );
    h.clock.advance(time::Duration::minutes(5));
    assert_eq!(h.ordering.expire_due().await.unwrap(), 1, "then the second");
    assert_eq!(h.ordering.expire_due().await.unwrap(), 0, "and nothing twice");
    assert_eq!(
        status_of(&h.get(&confirmed.id).await.unwrap()),
        pb::OrderStatus::Confirmed
    );
    assert_eq!(
        h.get(&cancelled.id).await.unwrap().cancel_reason,
        "no longer needed"
    );

    // Many due orders, swept while clients touch them: each expires once.
    let many: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..CONTENDERS * 30 {
            v.push(h.place_ok(&uuid(), 1).await);
        }
        v
    };
    h.clock.advance(TTL);
    let touched: Vec<_> = many.iter().step_by(3).map(|o| o.id.clone()).collect();
    let sweeping = {
        let h = h.clone();
        tokio::spawn(async move { h.ordering.expire_due().await.unwrap() })
    };
    let mut lazily = 0;
    for id in &touched {
        let order = h.get(id).await.unwrap();
        assert!(order.expired);
        lazily += 1;
    }
    let swept = sweeping.await.unwrap();
    assert!(
        swept <= many.len() && swept + lazily >= many.len(),
        "swept {swept}, touched {lazily}"
    );
    assert_eq!(h.ordering.expire_due().await.unwrap(), 0);
    let all = h.events(0).await;
    for order in &many {
        let expiries = all
            .iter()
            .filter(|e| e.aggregate_id == order.id && matches!(e.event, Some(Event::OrderCancelled(_))))
            .count();
        assert_eq!(expiries, 1, "order {} expired exactly once", order.id);
    }
    println!(
        "sweep ({}): {} due orders, {swept} swept while {lazily} were read (expired lazily), each expired once",
        backend.name(),
        many.len()
    );
}
