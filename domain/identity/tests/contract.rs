//! Identity's tests, one binary: the repository contract and the use cases,
//! run against the SQLite store and the PostgreSQL store (a real server in a
//! container), so both behave the same for everything identity relies on —
//! through the same port and command machinery the service uses; then the
//! credential checks (counted and timed) and the gRPC service end to end
//! (`grpc` module: nothing secret leaves it).

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "contract/grpc.rs"]
mod grpc;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use strata_testkit::{CONTENDERS, race, unique};

use async_trait::async_trait;
use serde::Serialize;
use strata_identity::domain::{
    Account, AccountEvent, AccountId, AccountStatus, DisplayName, Email, Password, PasswordHash, Role, Roles,
    SuspensionReason,
};
use strata_identity::error::IdentityError;
use strata_identity::password::{Argon2Hasher, PasswordHasher, PasswordPolicy};
use strata_identity::repository::AccountRepository;
use strata_identity::service::{Identity, NewAccount};
use strata_identity::store;
use strata_kernel::{
    AggregateRoot, CommandMeta, Error, ManualClock, OutboxMessage, RequestId, Version,
    execute::{Change, SaveError},
};
use strata_store::StoreConfig;
use strata_testkit::TestPostgres;
use time::OffsetDateTime;
use tokio_stream::StreamExt;

type Repo = Arc<dyn AccountRepository>;

/// How many times each race is run.
const ROUNDS: usize = 20;
/// A password that meets the default policy.
const PASSWORD: &str = "correct horse battery staple";

pub(crate) fn sqlite_config() -> (StoreConfig, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("strata-identity-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    (
        StoreConfig::new(strata_store::embedded_url(&dir, store::CONTEXT)),
        dir,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_keeps_the_contract() {
    let (config, dir) = sqlite_config();
    let repo = store::open(&config).await.unwrap();
    contract(&repo).await;
    // Migrations run again on an existing file without complaint.
    store::open(&config).await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_keeps_the_contract() {
    let pg = TestPostgres::start().await.unwrap();
    let config = StoreConfig::new(pg.fresh_database().await.unwrap());
    let repo = store::open(&config).await.unwrap();
    contract(&repo).await;
    store::open(&config).await.expect("migrations are idempotent");
}

async fn contract(repo: &Repo) {
    round_trip(repo).await;
    unique_email_and_atomicity(repo).await;
    optimistic_versions(repo).await;
    idempotency_records_keep_no_hash(repo).await;
    let identity = service(repo, Arc::new(ManualClock::new(at(0)))).await;
    registration_rules(&identity).await;
    suspension_rules(&identity).await;
    credentials(&identity).await;
    password_changes(&identity).await;
    idempotent_commands(&identity, repo).await;
    no_lost_update(&identity, repo).await;
    racing_retries_all_get_the_first_answer(&identity, repo).await;
    events_in_commit_order_and_resumable(&identity, repo).await;
    concurrent_events_are_read_in_order_without_gaps(&identity, repo).await;
    a_follower_receives_events_as_they_commit(&identity, repo).await;
}

/// A time with microseconds, what both stores keep.
fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).unwrap()
        + time::Duration::microseconds(123_456)
}

fn email(prefix: &str) -> Email {
    Email::parse(&format!("{}@example.com", unique(prefix))).unwrap()
}

fn hash(n: u32) -> PasswordHash {
    PasswordHash::from_phc(format!("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$hash{n}")).unwrap()
}

fn new_account(email: Email, seconds: i64) -> (Account, AccountEvent) {
    Account::register(
        AccountId::generate(),
        email,
        DisplayName::parse("Ada").unwrap(),
        Roles::new([Role::Customer, Role::Staff]).unwrap(),
        hash(1),
        at(seconds),
    )
}

fn meta(key: &str) -> CommandMeta {
    #[derive(Serialize)]
    struct Key<'a>(&'a str);
    CommandMeta::parse("Contract", key, None, &Key(key)).unwrap()
}

async fn save(
    repo: &Repo,
    account: &Account,
    replaces: Option<Version>,
    key: &str,
    events: &[AccountEvent],
) -> Result<(), SaveError> {
    let outbox = OutboxMessage::for_events(account, events, account.updated_at()).unwrap();
    repo.save(Change {
        aggregate: account,
        replaces,
        outbox: &outbox,
        meta: &meta(key),
        at: account.updated_at(),
    })
    .await
}

async fn last_position(repo: &Repo) -> u64 {
    let events: Vec<_> = repo.events(0, false).await.unwrap().collect().await;
    events.last().map_or(0, |e| e.as_ref().unwrap().position)
}

async fn events_after(repo: &Repo, position: u64) -> Vec<strata_store::StoredEvent> {
    let events: Vec<_> = repo.events(position, false).await.unwrap().collect().await;
    events.into_iter().map(Result::unwrap).collect()
}

async fn round_trip(repo: &Repo) {
    let before = last_position(repo).await;
    let (mut account, registered) = new_account(email("rt"), 0);
    save(repo, &account, None, &unique("reg"), &[registered])
        .await
        .unwrap();
    let stored = repo.get(account.id()).await.unwrap().unwrap();
    assert_eq!(stored, account, "every field round-trips, the hash included");
    assert_eq!(stored.created_at().microsecond(), 123_456);
    assert_eq!(
        repo.find_by_email(account.email()).await.unwrap().as_ref(),
        Some(&account)
    );
    assert_eq!(repo.find_by_email(&email("nobody")).await.unwrap(), None);
    assert_eq!(repo.get(AccountId::generate()).await.unwrap(), None);

    let events = events_after(repo, before).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "identity.account.registered");
    assert_eq!(events[0].payload["email"], account.email().as_str());
    assert_eq!(
        events[0].payload["roles"],
        serde_json::json!(["customer", "staff"])
    );

    let event = account
        .suspend(SuspensionReason::parse("fraud").unwrap(), at(5))
        .unwrap();
    save(repo, &account, Some(Version::INITIAL), &unique("sus"), &[event])
        .await
        .unwrap();
    let stored = repo.get(account.id()).await.unwrap().unwrap();
    assert_eq!(stored, account);
    assert!(matches!(stored.status(), AccountStatus::Suspended(r) if r.as_str() == "fraud"));
    let event = account.reinstate(at(6)).unwrap();
    save(repo, &account, Some(Version::new(2)), &unique("rei"), &[event])
        .await
        .unwrap();
    assert_eq!(
        repo.get(account.id()).await.unwrap().unwrap().status(),
        &AccountStatus::Active
    );
}

async fn unique_email_and_atomicity(repo: &Repo) {
    let address = email("dup");
    save(repo, &new_account(address.clone(), 0).0, None, &unique("a"), &[])
        .await
        .unwrap();
    // Another spelling of the same address normalizes to the same email.
    let shouted = Email::parse(&format!("  {}  ", address.as_str().to_uppercase())).unwrap();
    assert_eq!(shouted, address);
    let (twin, event) = new_account(shouted, 1);
    let key = unique("twin");
    let before = last_position(repo).await;
    let refused = save(repo, &twin, None, &key, &[event]).await;
    assert!(
        matches!(
            refused,
            Err(SaveError::Refused(Error::AlreadyExists { field: "email", .. }))
        ),
        "{refused:?}"
    );
    // Nothing of the refused change was written: no account, record or event.
    assert_eq!(repo.get(twin.id()).await.unwrap(), None);
    assert!(
        repo.recorded(&RequestId::parse(&key).unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(last_position(repo).await, before);
}

async fn optimistic_versions(repo: &Repo) {
    let (mut account, _) = new_account(email("ver"), 0);
    save(repo, &account, None, &unique("v1"), &[]).await.unwrap();
    account
        .suspend(SuspensionReason::parse("x").unwrap(), at(1))
        .unwrap();
    save(repo, &account, Some(Version::INITIAL), &unique("v2"), &[])
        .await
        .unwrap();
    let mut stale = account.clone();
    stale.reinstate(at(2)).unwrap();
    let refused = save(repo, &stale, Some(Version::INITIAL), &unique("stale"), &[]).await;
    assert!(
        matches!(refused, Err(SaveError::VersionConflict { current }) if current == Version::new(2)),
        "{refused:?}"
    );
    let (ghost, _) = new_account(email("ghost"), 0);
    let refused = save(repo, &ghost, Some(Version::INITIAL), &unique("ghost"), &[]).await;
    assert!(matches!(refused, Err(SaveError::NotFound)), "{refused:?}");
}

async fn idempotency_records_keep_no_hash(repo: &Repo) {
    let (account, _) = new_account(email("idem"), 0);
    let key = unique("reg");
    save(repo, &account, None, &key, &[]).await.unwrap();
    let recorded = repo
        .recorded(&RequestId::parse(&key).unwrap())
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(recorded.fingerprint, meta(&key).fingerprint);
    assert_eq!(recorded.result.id(), account.id());
    assert_eq!(recorded.result.email(), account.email());
    assert_eq!(
        recorded.result.password_hash().phc(),
        None,
        "the record keeps the account without its hash"
    );
    // The same key again is refused, and the account keeps the first change only.
    let mut again = account.clone();
    again
        .suspend(SuspensionReason::parse("x").unwrap(), at(1))
        .unwrap();
    let refused = save(repo, &again, Some(Version::INITIAL), &key, &[]).await;
    assert!(
        matches!(refused, Err(SaveError::RequestAlreadyRecorded)),
        "{refused:?}"
    );
    assert_eq!(repo.get(account.id()).await.unwrap().as_ref(), Some(&account));
}

// ---------------------------------------------------------------------------
// The use cases, on the same store.

/// Verifications and hashes made, around the real argon2id hasher.
#[derive(Debug)]
pub(crate) struct Counting {
    inner: Argon2Hasher,
    pub(crate) hashes: AtomicUsize,
    pub(crate) verifications: AtomicUsize,
}

impl Counting {
    pub(crate) fn new(policy: &PasswordPolicy) -> Self {
        Self {
            inner: Argon2Hasher::new(policy).unwrap(),
            hashes: AtomicUsize::new(0),
            verifications: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl PasswordHasher for Counting {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, Error> {
        self.hashes.fetch_add(1, Ordering::SeqCst);
        self.inner.hash(password).await
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, Error> {
        self.verifications.fetch_add(1, Ordering::SeqCst);
        self.inner.verify(password, hash).await
    }
}

async fn service(repo: &Repo, clock: Arc<ManualClock>) -> Identity {
    let hasher = Arc::new(Argon2Hasher::new(&PasswordPolicy::for_tests()).unwrap());
    Identity::with_clock(repo.clone(), hasher, clock).await.unwrap()
}

/// What a client sees of an account: a replayed answer has no hash (the
/// record keeps none), so answers are compared without it.
fn public(account: &Account) -> strata_identity::domain::AccountSnapshot {
    account.snapshot().without_password_hash()
}

fn password(raw: &str) -> Password {
    Password::given("password", raw).unwrap()
}

fn command(operation: &str, key: &str, expected: Option<u64>, values: &impl Serialize) -> CommandMeta {
    CommandMeta::parse(operation, key, expected, values).unwrap()
}

async fn register(identity: &Identity, address: &Email) -> Account {
    register_with(identity, &unique("reg"), address, "Ada")
        .await
        .unwrap()
}

async fn register_with(
    identity: &Identity,
    key: &str,
    address: &Email,
    name: &str,
) -> Result<Account, Error> {
    let meta = command("RegisterAccount", key, None, &(address.as_str(), name));
    identity
        .register(
            &meta,
            NewAccount {
                email: address.clone(),
                password: password(PASSWORD),
                display_name: DisplayName::parse(name).unwrap(),
                roles: Roles::new([Role::Customer]).unwrap(),
            },
        )
        .await
}

fn suspend_meta(key: &str, id: AccountId, expected: Option<u64>) -> CommandMeta {
    command("SuspendAccount", key, expected, &(id.to_string(), "fraud"))
}

async fn suspend(identity: &Identity, id: AccountId, expected: Option<u64>) -> Result<Account, Error> {
    identity
        .suspend(
            &suspend_meta(&unique("sus"), id, expected),
            id,
            SuspensionReason::parse("fraud").unwrap(),
        )
        .await
}

async fn reinstate(identity: &Identity, id: AccountId, expected: Option<u64>) -> Result<Account, Error> {
    let meta = command("ReinstateAccount", &unique("rei"), expected, &id.to_string());
    identity.reinstate(&meta, id).await
}

async fn change_password(
    identity: &Identity,
    key: &str,
    id: AccountId,
    expected: Option<u64>,
    current: &str,
    new: &str,
) -> Result<Account, IdentityError> {
    let meta = command("ChangePassword", key, expected, &id.to_string());
    identity
        .change_password(&meta, id, &password(current), &password(new))
        .await
}

async fn registration_rules(identity: &Identity) {
    let address = email("Reg");
    let account = register(identity, &address).await;
    assert_eq!(account.status(), &AccountStatus::Active);
    assert_eq!(account.version(), Version::INITIAL);
    assert!(account.password_hash().phc().unwrap().starts_with("$argon2id$"));
    let shouted = Email::parse(&address.as_str().to_uppercase()).unwrap();
    let taken = register_with(identity, &unique("reg"), &shouted, "Eve")
        .await
        .unwrap_err();
    assert!(
        matches!(
            taken,
            Error::AlreadyExists {
                kind: "account",
                field: "email"
            }
        ),
        "{taken:?}"
    );

    // An email reserved for staff cannot be taken by a customer, only by staff.
    let staff_email = email("reserved-staff");
    let reserving = identity.clone().reserving(vec![staff_email.clone()]);
    let squat = register_with(&reserving, &unique("squat"), &staff_email, "Squatter")
        .await
        .unwrap_err();
    assert!(
        matches!(squat, Error::AlreadyExists { field: "email", .. }),
        "{squat:?}"
    );
    let meta = command(
        "RegisterAccount",
        &unique("staff"),
        None,
        &(staff_email.as_str(), "Staff"),
    );
    let staff = reserving
        .register(
            &meta,
            NewAccount {
                email: staff_email.clone(),
                password: password(PASSWORD),
                display_name: DisplayName::parse("Staff").unwrap(),
                roles: Roles::new([Role::Staff]).unwrap(),
            },
        )
        .await
        .unwrap();
    assert_eq!(staff.email(), &staff_email);
}

async fn suspension_rules(identity: &Identity) {
    let account = register(identity, &email("sus")).await;
    let id = account.id();
    let reason = |e: &Error| match e {
        Error::FailedPrecondition { reason, .. } => *reason,
        other => panic!("{other:?}"),
    };
    let refused = reinstate(identity, id, None).await.unwrap_err();
    assert_eq!(reason(&refused), "ACCOUNT_NOT_SUSPENDED");
    let suspended = suspend(identity, id, Some(1)).await.unwrap();
    assert_eq!(suspended.version(), Version::new(2));
    let refused = suspend(identity, id, None).await.unwrap_err();
    assert_eq!(reason(&refused), "ACCOUNT_ALREADY_SUSPENDED");
    let stale = reinstate(identity, id, Some(1)).await.unwrap_err();
    assert!(
        matches!(stale, Error::VersionConflict { current, .. } if current == Version::new(2)),
        "{stale:?}"
    );
    let active = reinstate(identity, id, Some(2)).await.unwrap();
    assert_eq!(active.status(), &AccountStatus::Active);
    assert!(matches!(
        suspend(identity, AccountId::generate(), None).await,
        Err(Error::NotFound { .. })
    ));
}

async fn credentials(identity: &Identity) {
    let address = email("cred");
    let account = register(identity, &address).await;
    let signed_in = identity
        .verify_credentials(&address, &password(PASSWORD))
        .await
        .unwrap();
    assert_eq!(signed_in.id(), account.id());
    let shouted = Email::parse(&format!(" {} ", address.as_str().to_uppercase())).unwrap();
    assert!(
        identity
            .verify_credentials(&shouted, &password(PASSWORD))
            .await
            .is_ok(),
        "any case signs in"
    );
    assert!(matches!(
        identity
            .verify_credentials(&address, &password("wrong password!"))
            .await,
        Err(IdentityError::BadCredentials)
    ));
    assert!(matches!(
        identity
            .verify_credentials(&email("unknown"), &password(PASSWORD))
            .await,
        Err(IdentityError::BadCredentials)
    ));
    suspend(identity, account.id(), None).await.unwrap();
    assert!(
        matches!(
            identity.verify_credentials(&address, &password(PASSWORD)).await,
            Err(IdentityError::Suspended(id)) if id == account.id()
        ),
        "a suspended account is told so once the password is right"
    );
    assert!(
        matches!(
            identity
                .verify_credentials(&address, &password("wrong password!"))
                .await,
            Err(IdentityError::BadCredentials)
        ),
        "… and not before"
    );
}

async fn password_changes(identity: &Identity) {
    let address = email("pw");
    let account = register(identity, &address).await;
    let id = account.id();
    let wrong = change_password(
        identity,
        &unique("pw"),
        id,
        None,
        "not the password",
        "a brand new password",
    )
    .await
    .unwrap_err();
    assert!(matches!(wrong, IdentityError::BadCredentials), "{wrong:?}");
    let key = unique("pw");
    let changed = change_password(identity, &key, id, Some(1), PASSWORD, "a brand new password")
        .await
        .unwrap();
    assert_eq!(changed.version(), Version::new(2));
    assert!(
        identity
            .verify_credentials(&address, &password("a brand new password"))
            .await
            .is_ok()
    );
    assert!(matches!(
        identity.verify_credentials(&address, &password(PASSWORD)).await,
        Err(IdentityError::BadCredentials)
    ));
    // The retry replays, although its current password no longer verifies.
    let again = change_password(identity, &key, id, Some(1), PASSWORD, "a brand new password")
        .await
        .unwrap();
    assert_eq!(again.version(), Version::new(2));
    assert_eq!(
        identity.get(id).await.unwrap().version(),
        Version::new(2),
        "one effect"
    );
    let stale = change_password(
        identity,
        &unique("pw"),
        id,
        Some(1),
        "a brand new password",
        "yet another password",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(stale, IdentityError::Kernel(Error::VersionConflict { .. })),
        "{stale:?}"
    );
    suspend(identity, id, None).await.unwrap();
    let refused = change_password(
        identity,
        &unique("pw"),
        id,
        None,
        "a brand new password",
        "yet another password",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            refused,
            IdentityError::Kernel(Error::FailedPrecondition {
                reason: "ACCOUNT_SUSPENDED",
                ..
            })
        ),
        "{refused:?}"
    );
}

async fn idempotent_commands(identity: &Identity, repo: &Repo) {
    // Register twice with one key: one account, one event, the first answer.
    let before = last_position(repo).await;
    let key = unique("reg");
    let address = email("once");
    let first = register_with(identity, &key, &address, "Ada").await.unwrap();
    let second = register_with(identity, &key, &address, "Ada").await.unwrap();
    assert_eq!(second.id(), first.id());
    assert_eq!(second.version(), first.version());
    assert_eq!(events_after(repo, before).await.len(), 1, "one effect");
    // The same key with another request is refused.
    let reused = register_with(identity, &key, &address, "Eve").await.unwrap_err();
    assert!(matches!(reused, Error::RequestIdReused { .. }), "{reused:?}");
    // The same for a command on an existing account.
    let key = unique("sus");
    let id = first.id();
    let reason = SuspensionReason::parse("fraud").unwrap();
    let first = identity
        .suspend(&suspend_meta(&key, id, None), id, reason.clone())
        .await
        .unwrap();
    let again = identity
        .suspend(&suspend_meta(&key, id, None), id, reason)
        .await
        .unwrap();
    assert_eq!(
        public(&again),
        public(&first),
        "a suspended account suspended again by a retry is the first answer"
    );
    let other = command("SuspendAccount", &key, None, &(id.to_string(), "spam"));
    let reused = identity
        .suspend(&other, id, SuspensionReason::parse("spam").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(reused, Error::RequestIdReused { .. }), "{reused:?}");
    assert_eq!(identity.get(id).await.unwrap().version(), Version::new(2));
}

/// Concurrent commands that all expect version 1: exactly one wins, every
/// other one is ABORTED (a version conflict), none is lost or applied twice.
/// Even rounds suspend, odd rounds change the password.
async fn no_lost_update(identity: &Identity, repo: &Repo) {
    let started = Instant::now();
    let (mut winners, mut conflicts) = (0, 0);
    for round in 0..ROUNDS {
        let account = register(identity, &email(&format!("race{round}"))).await;
        let id = account.id();
        let results: Vec<Result<Account, String>> = race(|n| {
            let identity = identity.clone();
            async move {
                if round % 2 == 0 {
                    suspend(&identity, id, Some(1))
                        .await
                        .map_err(|e| format!("{e:?}"))
                } else {
                    let new = format!("new password number {n}");
                    change_password(&identity, &unique("pw"), id, Some(1), PASSWORD, &new)
                        .await
                        .map_err(|e| format!("{e:?}"))
                }
            }
        })
        .await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        let lost = results
            .iter()
            .filter(|r| matches!(r, Err(e) if e.starts_with("VersionConflict") || e.starts_with("Kernel(VersionConflict")))
            .count();
        assert_eq!(won, 1, "round {round}: exactly one winner: {results:?}");
        assert_eq!(
            lost,
            CONTENDERS - 1,
            "round {round}: every other one ABORTED: {results:?}"
        );
        winners += won;
        conflicts += lost;
        let stored = repo.get(id).await.unwrap().unwrap();
        assert_eq!(stored.version(), Version::new(2), "round {round}: one effect");
    }
    assert_eq!((winners, conflicts), (ROUNDS, ROUNDS * (CONTENDERS - 1)));
    println!(
        "no lost update: {ROUNDS} rounds × {CONTENDERS} contenders: {winners} winners, {conflicts} ABORTED, {:?}",
        started.elapsed()
    );
}

/// N identical commands at once (a client retrying while its first attempt is
/// still running): every one gets the first, successful answer; one effect.
async fn racing_retries_all_get_the_first_answer(identity: &Identity, repo: &Repo) {
    for round in 0..ROUNDS {
        let account = register(identity, &email(&format!("retry{round}"))).await;
        let id = account.id();
        let key = unique("retry");
        let expected = if round % 2 == 0 { Some(1) } else { None };
        let results = race(|_| {
            let identity = identity.clone();
            let meta = suspend_meta(&key, id, expected);
            async move {
                identity
                    .suspend(&meta, id, SuspensionReason::parse("fraud").unwrap())
                    .await
                    .map(|account| public(&account))
                    .map_err(|e| format!("{e:?}"))
            }
        })
        .await;
        let first = results[0]
            .as_ref()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        for result in &results {
            assert_eq!(result.as_ref().ok(), Some(first), "round {round}: {results:?}");
        }
        assert_eq!(
            repo.get(id).await.unwrap().unwrap().version(),
            Version::new(2),
            "round {round}: one effect"
        );
    }
}

async fn events_in_commit_order_and_resumable(identity: &Identity, repo: &Repo) {
    let start = last_position(repo).await;
    let a = register(identity, &email("ev-a")).await;
    let b = register(identity, &email("ev-b")).await;
    suspend(identity, a.id(), None).await.unwrap();
    change_password(
        identity,
        &unique("pw"),
        b.id(),
        None,
        PASSWORD,
        "another long password",
    )
    .await
    .unwrap();
    reinstate(identity, a.id(), None).await.unwrap();
    let events = events_after(repo, start).await;
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.aggregate_id, e.event_type.as_str(), e.aggregate_version.get()))
        .collect();
    let (a, b) = (a.id().as_uuid(), b.id().as_uuid());
    assert_eq!(
        seen,
        [
            (a, "identity.account.registered", 1),
            (b, "identity.account.registered", 1),
            (a, "identity.account.suspended", 2),
            (b, "identity.account.password_changed", 2),
            (a, "identity.account.reinstated", 3),
        ],
        "commit order"
    );
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    // Resuming after any position yields exactly the rest.
    for (i, event) in events.iter().enumerate() {
        let rest: Vec<_> = events_after(repo, event.position)
            .await
            .iter()
            .map(|e| e.event_id)
            .collect();
        let expected: Vec<_> = events[i + 1..].iter().map(|e| e.event_id).collect();
        assert_eq!(rest, expected, "resume after {}", event.position);
    }
    // No event carries a password or a hash.
    for event in &events {
        let payload = event.payload.to_string();
        assert!(
            !payload.contains(PASSWORD) && !payload.contains("argon2"),
            "{payload}"
        );
    }
}

/// Writers commit concurrently while a reader follows the stream: the reader
/// sees every event exactly once, in position order.
async fn concurrent_events_are_read_in_order_without_gaps(identity: &Identity, repo: &Repo) {
    let start = last_position(repo).await;
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let repo = repo.clone();
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut position = start;
            loop {
                let done = !writing.load(Ordering::SeqCst);
                for event in events_after(&repo, position).await {
                    position = event.position;
                    seen.push(event.position);
                }
                if done {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for round in 0..ROUNDS / 4 {
        race(|n| {
            let identity = identity.clone();
            async move {
                let account = register(&identity, &email(&format!("cev{round}-{n}"))).await;
                suspend(&identity, account.id(), None).await.unwrap();
            }
        })
        .await;
    }
    writing.store(false, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let all: Vec<u64> = events_after(repo, start)
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(all.len(), ROUNDS / 4 * CONTENDERS * 2);
    assert_eq!(seen, all, "the follower saw every event once, in order");
}

async fn a_follower_receives_events_as_they_commit(identity: &Identity, repo: &Repo) {
    let account = register(identity, &email("follow")).await;
    let position = last_position(repo).await;
    let mut stream = identity.events(position, true).await.unwrap();
    suspend(identity, account.id(), None).await.unwrap();
    let received = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the follower is woken by the commit")
        .unwrap()
        .unwrap();
    assert_eq!(received.aggregate_id, account.id().as_uuid());
    assert_eq!(received.event_type, "identity.account.suspended");
}

/// A bad password setting fails `mount`, naming its variable; good ones mount.
#[tokio::test]
async fn mount_refuses_a_bad_setting_by_name() {
    let (config, dir) = sqlite_config();
    for (var, value) in [
        ("STRATA_IDENTITY_ARGON2_MEMORY_KIB", "a lot"),
        ("STRATA_IDENTITY_ARGON2_ITERATIONS", "0"),
        ("STRATA_IDENTITY_ARGON2_PARALLELISM", "-2"),
        ("STRATA_IDENTITY_PASSWORD_MIN_LENGTH", "1025"),
        ("STRATA_IDENTITY_HASH_CONCURRENCY", "all"),
        ("STRATA_IDENTITY_RESERVED_EMAILS", "staff@shop.test, not an email"),
    ] {
        let error =
            strata_identity::mount_configured(config.clone(), |v| (v == var).then(|| value.to_owned()))
                .await
                .unwrap_err();
        assert!(error.to_string().starts_with(var), "{var}={value}: {error}");
    }
    let cheap = [
        ("STRATA_IDENTITY_ARGON2_MEMORY_KIB", "64"),
        ("STRATA_IDENTITY_ARGON2_ITERATIONS", "1"),
        ("STRATA_IDENTITY_ARGON2_PARALLELISM", "2"),
        ("STRATA_IDENTITY_PASSWORD_MIN_LENGTH", "16"),
        (
            "STRATA_IDENTITY_RESERVED_EMAILS",
            "staff@shop.test, other@shop.test",
        ),
    ];
    let lookup = |v: &str| {
        cheap
            .iter()
            .find(|(k, _)| *k == v)
            .map(|(_, value)| (*value).to_owned())
    };
    strata_identity::mount_configured(config, lookup).await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------
// Credential checks: an unknown email costs what a wrong password costs.

/// Deterministic: each path of `VerifyCredentials` verifies exactly one hash.
#[tokio::test]
async fn every_credential_check_verifies_exactly_once() {
    let (config, dir) = sqlite_config();
    let repo = store::open(&config).await.unwrap();
    let hasher = Arc::new(Counting::new(&PasswordPolicy::for_tests()));
    let identity = Identity::with_clock(repo, hasher.clone(), Arc::new(ManualClock::new(at(0))))
        .await
        .unwrap();
    assert_eq!(
        hasher.hashes.load(Ordering::SeqCst),
        1,
        "the dummy hash, made once"
    );
    let address = email("count");
    register(&identity, &address).await;
    assert_eq!(hasher.hashes.load(Ordering::SeqCst), 2);
    let verifications = |identity: &Identity, address: Email, raw: &'static str| {
        let identity = identity.clone();
        let hasher = hasher.clone();
        async move {
            let before = hasher.verifications.load(Ordering::SeqCst);
            let result = identity.verify_credentials(&address, &password(raw)).await;
            (hasher.verifications.load(Ordering::SeqCst) - before, result)
        }
    };
    let (unknown, result) = verifications(&identity, email("nobody"), PASSWORD).await;
    assert!(matches!(result, Err(IdentityError::BadCredentials)));
    assert_eq!(unknown, 1, "an unknown email is verified against the dummy hash");
    let (wrong, result) = verifications(&identity, address.clone(), "wrong password!").await;
    assert!(matches!(result, Err(IdentityError::BadCredentials)));
    assert_eq!(wrong, 1);
    let (right, result) = verifications(&identity, address, PASSWORD).await;
    assert!(result.is_ok());
    assert_eq!(right, 1);
    assert_eq!(
        hasher.hashes.load(Ordering::SeqCst),
        2,
        "checking never hashes anew"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Measured, with real argon2id: the medians of the two refusals are within a
/// factor of two of each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_email_and_wrong_password_take_comparable_time() {
    const N: usize = 31;
    let (config, dir) = sqlite_config();
    let repo = store::open(&config).await.unwrap();
    // Real argon2id, cheaper than production so that the test stays quick,
    // still far costlier than the store's look-up.
    let policy = PasswordPolicy {
        memory_kib: 2048,
        iterations: 2,
        ..PasswordPolicy::default()
    };
    let identity = Identity::new(repo, Arc::new(Argon2Hasher::new(&policy).unwrap()))
        .await
        .unwrap();
    let address = email("timing");
    register(&identity, &address).await;
    let unknown = email("nobody");
    let time = |address: Email| {
        let identity = identity.clone();
        async move {
            let started = Instant::now();
            let result = identity
                .verify_credentials(&address, &password("wrong password!"))
                .await;
            assert!(matches!(result, Err(IdentityError::BadCredentials)));
            started.elapsed()
        }
    };
    let (mut wrong, mut missing) = (Vec::new(), Vec::new());
    for _ in 0..N {
        // Interleaved, so that a slow moment of the machine hits both.
        wrong.push(time(address.clone()).await);
        missing.push(time(unknown.clone()).await);
    }
    wrong.sort();
    missing.sort();
    let (wrong, missing) = (wrong[N / 2], missing[N / 2]);
    let ratio = missing.as_secs_f64() / wrong.as_secs_f64();
    println!(
        "credential timing: median of {N}: wrong password {wrong:?}, unknown email {missing:?}, ratio {ratio:.2}"
    );
    assert!((0.5..=2.0).contains(&ratio), "ratio {ratio:.2}");
    std::fs::remove_dir_all(dir).unwrap();
}
