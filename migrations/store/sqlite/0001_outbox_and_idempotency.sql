-- The tables every context keeps in its own file beside its aggregates: the
-- transactional outbox and the idempotency records. Contexts created before
-- the shared store (catalog) already have them, in this same shape.

create table if not exists outbox (
    position integer primary key autoincrement,
    aggregate_id blob not null,
    aggregate_version integer not null,
    event_type text not null,
    payload text not null,
    occurred_at text not null
) strict;

create table if not exists idempotency (
    request_id text primary key,
    fingerprint blob not null,
    result text not null,
    created_at text not null
) strict;
