-- The tables every context keeps in its own schema beside its aggregates: the
-- transactional outbox and the idempotency records. Contexts created before
-- the shared store (catalog) already have them, in this same shape.

create table if not exists outbox (
    position bigint generated always as identity primary key,
    aggregate_id uuid not null,
    aggregate_version bigint not null,
    event_type text not null,
    payload jsonb not null,
    occurred_at timestamptz not null
);

create table if not exists idempotency (
    request_id text primary key,
    fingerprint bytea not null,
    result jsonb not null,
    created_at timestamptz not null
);
