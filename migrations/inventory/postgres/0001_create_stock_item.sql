-- The inventory context's table, in the `inventory` schema (the store sets
-- search_path). One row per sku; its reservations are entities of the
-- aggregate, kept in the row as JSON so that they are read, versioned and
-- written with it in one statement. `reserved` and `next_expiry` are derived
-- from them and kept as plain columns for what queries filter on.

create table stock_item (
    id uuid primary key,
    sku text not null constraint stock_item_sku_key unique,
    on_hand bigint not null check (on_hand >= 0),
    -- The last line of defence for available = on_hand - reserved >= 0.
    reserved bigint not null check (reserved >= 0 and reserved <= on_hand),
    reservations jsonb not null,
    -- Microseconds since the Unix epoch of the earliest expiry of a held
    -- reservation; null when none is held. The sweep's index.
    next_expiry bigint,
    version bigint not null check (version > 0),
    created_at timestamptz not null,
    updated_at timestamptz not null
);

create index stock_item_next_expiry_idx on stock_item (next_expiry) where next_expiry is not null;
