-- The identity context's tables. They live in the `identity` schema (the store
-- sets search_path); the outbox and idempotency tables are the shared store's.

create table account (
    id uuid primary key,
    -- Stored trimmed and lower-cased by the domain, so this unique constraint
    -- is the case-insensitive uniqueness of emails. Its name is what the store
    -- recognizes as "email taken".
    email text not null constraint account_email_key unique,
    display_name text not null,
    -- A JSON array of role names, at least one.
    roles jsonb not null check (jsonb_typeof(roles) = 'array' and jsonb_array_length(roles) > 0),
    -- An argon2id PHC string (algorithm, parameters, salt and hash).
    password_hash text not null,
    status text not null check (status in ('active', 'suspended')),
    suspension_reason text,
    version bigint not null check (version > 0),
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint account_suspension_reason_check
        check ((status = 'suspended') = (suspension_reason is not null))
);
