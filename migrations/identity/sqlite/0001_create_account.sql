-- The identity context's tables (SQLite: one database file per context); the
-- outbox and idempotency tables are the shared store's.

create table account (
    id blob primary key,
    -- Stored trimmed and lower-cased by the domain, so this unique constraint
    -- is the case-insensitive uniqueness of emails.
    email text not null constraint account_email_key unique,
    display_name text not null,
    -- A JSON array of role names, at least one.
    roles text not null check (json_type(roles) = 'array' and json_array_length(roles) > 0),
    -- An argon2id PHC string (algorithm, parameters, salt and hash).
    password_hash text not null,
    status text not null check (status in ('active', 'suspended')),
    suspension_reason text,
    version integer not null check (version > 0),
    created_at text not null,
    updated_at text not null,
    constraint account_suspension_reason_check
        check ((status = 'suspended') = (suspension_reason is not null))
) strict;
