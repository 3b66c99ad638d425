-- The inventory context's table (SQLite: one database file per context). One
-- row per sku; its reservations kept in the row as JSON; `reserved` and
-- `next_expiry` derived from them for what queries filter on.

create table stock_item (
    id blob primary key,
    sku text not null constraint stock_item_sku_key unique,
    on_hand integer not null check (on_hand >= 0),
    reserved integer not null check (reserved >= 0 and reserved <= on_hand),
    reservations text not null,
    -- Microseconds since the Unix epoch (integers compare as times; SQLite's
    -- text times would not, across precisions).
    next_expiry integer,
    version integer not null check (version > 0),
    created_at text not null,
    updated_at text not null
) strict;

create index stock_item_next_expiry_idx on stock_item (next_expiry) where next_expiry is not null;
