-- A unique id per event, for consumers that deduplicate (the application
-- writes a UUIDv7; earlier rows get a random one). SQLite cannot add a NOT NULL
-- column without a constant default; the application always writes it.
alter table outbox add column event_id blob;
update outbox set event_id = randomblob(16) where event_id is null;

-- Idempotency records are purged once older than the retention window; this
-- index makes finding them cheap.
create index idempotency_created_at_idx on idempotency (created_at);
