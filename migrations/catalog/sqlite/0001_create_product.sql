-- The catalog context's tables (SQLite: one database file per context).

create table product (
    id blob primary key,
    sku text not null constraint product_sku_key unique,
    name text not null,
    description text not null,
    price_minor integer not null check (price_minor > 0),
    currency text not null check (length(currency) = 3),
    status text not null check (status in ('draft', 'published', 'retired')),
    version integer not null check (version > 0),
    created_at text not null,
    updated_at text not null
) strict;

create index product_status_id_idx on product (status, id);

create table outbox (
    position integer primary key autoincrement,
    aggregate_id blob not null,
    aggregate_version integer not null,
    event_type text not null,
    payload text not null,
    occurred_at text not null
) strict;

create table idempotency (
    request_id text primary key,
    fingerprint blob not null,
    result text not null,
    created_at text not null
) strict;
