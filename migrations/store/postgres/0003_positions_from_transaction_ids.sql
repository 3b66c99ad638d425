-- Event positions are written by the application from the transaction id
-- (xid × 1024 + the event's index in its transaction), so that a reader can
-- serve exactly the events of ended transactions and never skip one; see
-- domain/store/src/postgres.rs. Positions already written stay as they are:
-- they are far below the transaction-derived ones.
alter table outbox alter column position drop identity if exists;
