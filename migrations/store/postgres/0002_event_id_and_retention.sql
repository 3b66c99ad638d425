-- A unique id per event, for consumers that deduplicate (the application
-- writes a UUIDv7; earlier rows get a random one).
alter table outbox add column event_id uuid not null default gen_random_uuid();

-- Idempotency records are purged once older than the retention window; this
-- index makes finding them cheap.
create index idempotency_created_at_idx on idempotency (created_at);
