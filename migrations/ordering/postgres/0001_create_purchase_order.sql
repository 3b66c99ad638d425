-- The ordering context's table. It lives in the `ordering` schema (the store
-- sets search_path); the outbox and idempotency tables are the shared store's.
-- `order` is an SQL keyword, hence `purchase_order`.
--
-- One row per Order aggregate: its lines are entities inside the aggregate, so
-- they are stored with it as one JSON column (`{"v":"1","lines":[…]}`), loaded
-- with it, written in the same statement and versioned with it. What queries
-- filter on is kept in plain indexed columns.

create table purchase_order (
    id uuid primary key,
    buyer_id uuid not null,
    status text not null check (status in ('pending', 'confirmed', 'shipped', 'cancelled')),
    lines jsonb not null,
    total_minor bigint not null check (total_minor > 0),
    currency text not null check (length(currency) = 3),
    -- Why a cancelled order was cancelled: 'requested' (with cancel_reason) or
    -- 'expired'; null unless cancelled.
    cancellation text check (cancellation in ('requested', 'expired')),
    cancel_reason text,
    version bigint not null check (version > 0),
    created_at timestamptz not null,
    updated_at timestamptz not null,
    -- A pending order not confirmed by then expires.
    expires_at timestamptz not null,
    constraint purchase_order_status_cancellation_check
        check ((status = 'cancelled') = (cancellation is not null))
);

-- ListOrders, newest first, keyset on (created_at, id): one index per filter
-- statement, each walked backwards from the page's cursor, so no page sorts.
--   no filter:        purchase_order_created_idx
--   buyer:            purchase_order_buyer_created_idx
--   status:           purchase_order_status_created_idx
--   buyer and status: purchase_order_buyer_status_created_idx ("my open orders")
create index purchase_order_created_idx on purchase_order (created_at, id);
create index purchase_order_buyer_created_idx on purchase_order (buyer_id, created_at, id);
create index purchase_order_status_created_idx on purchase_order (status, created_at, id);
create index purchase_order_buyer_status_created_idx on purchase_order (buyer_id, status, created_at, id);

-- The expiry sweep: pending orders by deadline. Partial, so it holds only the
-- orders that can still expire and stays small however many orders exist.
create index purchase_order_pending_expiry_idx on purchase_order (expires_at) where status = 'pending';
