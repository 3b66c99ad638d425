-- The catalog context's tables. They live in the `catalog` schema (the store sets
-- search_path), so several contexts can share one database without sharing tables.

create table product (
    id uuid primary key,
    sku text not null constraint product_sku_key unique,
    name text not null,
    description text not null,
    price_minor bigint not null check (price_minor > 0),
    currency text not null check (length(currency) = 3),
    status text not null check (status in ('draft', 'published', 'retired')),
    version bigint not null check (version > 0),
    created_at timestamptz not null,
    updated_at timestamptz not null
);

create index product_status_id_idx on product (status, id);

-- Transactional outbox: one row per domain event, written in the same
-- transaction as the change; `position` orders the stream.
create table outbox (
    position bigint generated always as identity primary key,
    aggregate_id uuid not null,
    aggregate_version bigint not null,
    event_type text not null,
    payload jsonb not null,
    occurred_at timestamptz not null
);

-- One row per carried-out command: a retry with the same request_id returns
-- `result` instead of acting again.
create table idempotency (
    request_id text primary key,
    fingerprint bytea not null,
    result jsonb not null,
    created_at timestamptz not null
);
