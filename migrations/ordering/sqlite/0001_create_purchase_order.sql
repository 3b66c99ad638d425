-- The ordering context's table (SQLite: one database file per context). The
-- outbox and idempotency tables are the shared store's. See the PostgreSQL
-- migration for the why of each column and index.

create table purchase_order (
    id blob primary key,
    buyer_id blob not null,
    status text not null check (status in ('pending', 'confirmed', 'shipped', 'cancelled')),
    lines text not null,
    total_minor integer not null check (total_minor > 0),
    currency text not null check (length(currency) = 3),
    cancellation text check (cancellation in ('requested', 'expired')),
    cancel_reason text,
    version integer not null check (version > 0),
    created_at text not null,
    updated_at text not null,
    expires_at text not null,
    constraint purchase_order_status_cancellation_check
        check ((status = 'cancelled') = (cancellation is not null))
) strict;

create index purchase_order_created_idx on purchase_order (created_at, id);
create index purchase_order_buyer_created_idx on purchase_order (buyer_id, created_at, id);
create index purchase_order_status_created_idx on purchase_order (status, created_at, id);
create index purchase_order_buyer_status_created_idx on purchase_order (buyer_id, status, created_at, id);
create index purchase_order_pending_expiry_idx on purchase_order (expires_at) where status = 'pending';
