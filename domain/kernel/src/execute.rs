//! The command machinery every context runs its commands through: idempotent
//! replay, optimistic concurrency, and the bounded retry when a concurrent
//! writer changed the aggregate between the read and the write.
//!
//! [`modify_locked`] is the same contract for aggregates that one row's worth
//! of contention would defeat (a popular item's stock): over the
//! [`LockedCommandStore`] port the command is decided while the store holds the
//! aggregate, so concurrent commands queue rather than retry.
//!
//! It is written once against the [`CommandStore`] port; a context supplies the
//! store (its repository) and the command (a method of its aggregate), nothing
//! else. No I/O of its own: it only calls the port.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::{
    AggregateRoot, Clock, Error, Id, OutboxMessage, Version,
    command::{CommandMeta, Recorded, replay},
};

/// How often a command without `expected_version` is decided again when a
/// concurrent writer changed the aggregate between its read and its write.
pub const CONFLICT_RETRIES: usize = 3;

/// One change to write atomically: the aggregate, its outbox messages and the
/// idempotency record of the command that made it (the aggregate is the result
/// the record keeps).
#[derive(Debug)]
pub struct Change<'a, A> {
    /// The aggregate after the change.
    pub aggregate: &'a A,
    /// `None` to insert a new aggregate; else the version it had before the
    /// change, which must still be the stored one.
    pub replaces: Option<Version>,
    /// The events of the change.
    pub outbox: &'a [OutboxMessage],
    /// The command's idempotency key, fingerprint and expected version.
    pub meta: &'a CommandMeta,
    /// When the change was made.
    pub at: OffsetDateTime,
}

/// Why a store did not write a [`Change`].
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The stored aggregate is no longer at the version the change replaces.
    #[error("the aggregate is at version {current}")]
    VersionConflict {
        /// The stored version.
        current: Version,
    },
    /// The aggregate to update does not exist.
    #[error("the aggregate does not exist")]
    NotFound,
    /// A command with this request id was already recorded (by a concurrent retry).
    #[error("the request id is already recorded")]
    RequestAlreadyRecorded,
    /// The store refused the change for a reason the client caused (a unique
    /// value taken): returned as is unless a concurrent retry of the same
    /// command is what took it.
    #[error(transparent)]
    Refused(Error),
    /// The store failed (unreachable, timed out, a bug).
    #[error(transparent)]
    Failed(Error),
}

/// What the command machinery needs from a context's store for aggregate `A`.
///
/// # Errors
/// Reads return the store's failure as an [`Error`] (`Unavailable`,
/// `DeadlineExceeded`, `Contention`, `Internal`); `save` returns a [`SaveError`].
#[async_trait]
pub trait CommandStore<A: AggregateRoot>: Send + Sync {
    /// The record of `request_id`, if that command was carried out, and the
    /// aggregate `id` — read consistently (one snapshot), so that a command
    /// that committed is seen with its record or not at all.
    async fn load_for_command(
        &self,
        id: Id<A>,
        request_id: &crate::RequestId,
    ) -> Result<(Option<Recorded<A>>, Option<A>), Error>;

    /// The record of `request_id`, if that command was carried out.
    async fn recorded(&self, request_id: &crate::RequestId) -> Result<Option<Recorded<A>>, Error>;

    /// Writes the aggregate, its outbox messages and the idempotency record
    /// atomically: all or nothing.
    async fn save(&self, change: Change<'_, A>) -> Result<(), SaveError>;
}

/// Creates an aggregate: `build` makes it and its events at the given time.
/// A retried command returns the aggregate as the first attempt created it.
///
/// # Errors
/// [`Error::RequestIdReused`]; the store's refusal ([`SaveError::Refused`], e.g.
/// a unique value taken) unless a concurrent retry of this command caused it;
/// the store's failure.
pub async fn create<A, S>(
    store: &S,
    clock: &dyn Clock,
    meta: &CommandMeta,
    build: impl FnOnce(OffsetDateTime) -> (A, Vec<A::Event>) + Send,
) -> Result<A, Error>
where
    A: AggregateRoot + Send + Sync,
    S: CommandStore<A> + ?Sized,
{
    if let Some(done) = replay(meta, store.recorded(&meta.request_id).await?)? {
        return Ok(done);
    }
    let now = clock.now();
    let (aggregate, events) = build(now);
    match save(store, meta, &aggregate, None, &events, now).await {
        Ok(()) => Ok(aggregate),
        Err(SaveError::Refused(refusal)) => after_refusal(store, meta, refusal).await,
        Err(SaveError::RequestAlreadyRecorded) => recorded_result(store, meta).await,
        Err(SaveError::Failed(error)) => Err(error),
        // An insert neither replaces a version nor needs an existing row.
        Err(error @ (SaveError::VersionConflict { .. } | SaveError::NotFound)) => {
            Err(Error::Internal(error.into()))
        }
    }
}

/// Runs `command` on aggregate `id`. A retried command (same request id, same
/// fingerprint) returns the aggregate as the first attempt left it, without a
/// second effect — also when the retry races the first attempt.
///
/// # Errors
/// [`Error::NotFound`]; [`Error::VersionConflict`] when `expected_version` is
/// stale, or when concurrent writers won [`CONFLICT_RETRIES`] times in a row
/// (carrying the version the client sent, if any); the aggregate's refusal;
/// [`Error::RequestIdReused`]; the store's failure.
pub async fn modify<A, S, E>(
    store: &S,
    clock: &dyn Clock,
    meta: &CommandMeta,
    id: Id<A>,
    command: impl Fn(&mut A, OffsetDateTime) -> Result<Vec<A::Event>, E> + Send + Sync,
) -> Result<A, Error>
where
    A: AggregateRoot + Send + Sync,
    S: CommandStore<A> + ?Sized,
    E: Into<Error>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        // One consistent read: was this command carried out already, and if
        // not, the aggregate it acts on.
        let (recorded, aggregate) = store.load_for_command(id, &meta.request_id).await?;
        if let Some(done) = replay(meta, recorded)? {
            return Ok(done);
        }
        let mut aggregate = aggregate.ok_or_else(|| not_found::<A>(id))?;
        let before = aggregate.version();
        if let Some(expected) = meta.expected_version
            && expected != before
        {
            return Err(conflict::<A>(id, Some(expected), before));
        }
        let now = clock.now();
        let events = command(&mut aggregate, now).map_err(Into::into)?;
        match save(store, meta, &aggregate, Some(before), &events, now).await {
            Ok(()) => return Ok(aggregate),
            // Read again: a concurrent retry of this very command may be what
            // changed the aggregate (then its result is ours), else the new
            // version decides (a stale `expected_version` is refused above).
            Err(SaveError::VersionConflict { current }) => {
                if attempts >= CONFLICT_RETRIES {
                    if let Some(done) = replay(meta, store.recorded(&meta.request_id).await?)? {
                        return Ok(done);
                    }
                    return Err(conflict::<A>(id, meta.expected_version, current));
                }
            }
            Err(SaveError::NotFound) => return Err(not_found::<A>(id)),
            Err(SaveError::RequestAlreadyRecorded) => return recorded_result(store, meta).await,
            Err(SaveError::Refused(refusal)) => return after_refusal(store, meta, refusal).await,
            Err(SaveError::Failed(error)) => return Err(error),
        }
    }
}

/// What a command run under [`modify_locked`] did to the aggregate.
#[derive(Debug)]
pub enum Outcome<A: AggregateRoot> {
    /// It changed (or was created): write it with these events.
    Changed(A, Vec<A::Event>),
    /// Nothing to do (the command was already in effect): answer it as it is,
    /// write nothing.
    Unchanged(A),
}

/// What a [`LockedCommandStore`] writes for a command decided under the lock.
#[derive(Debug)]
pub struct LockedChange<A> {
    /// The aggregate after the change.
    pub aggregate: A,
    /// `None` to insert a new aggregate; else the version it had.
    pub replaces: Option<Version>,
    /// The events of the change.
    pub outbox: Vec<OutboxMessage>,
    /// When the change was made.
    pub at: OffsetDateTime,
}

/// What a decision under the lock chose: write a change, or answer without
/// writing (a replay, a refusal, a no-op).
#[derive(Debug)]
pub enum Verdict<A> {
    /// Write this change and answer its aggregate.
    Write(LockedChange<A>),
    /// Write nothing; answer this.
    Answer(Result<A, Error>),
}

/// The decision [`modify_locked`] hands its store: from the idempotency record
/// and the aggregate as read under the lock, what to do.
pub type Decide<'a, A> = dyn Fn(Option<Recorded<A>>, Option<A>) -> Verdict<A> + Send + Sync + 'a;

/// The locked command path of a store: for aggregates whose commands contend
/// so hard on one row (a popular item's stock) that the optimistic retry of
/// [`modify`] would turn most of them into `ABORTED`.
///
/// # Errors
/// `save_locked` returns [`SaveError::RequestAlreadyRecorded`] when a
/// concurrent retry of the command recorded it first,
/// [`SaveError::VersionConflict`] when an insert lost to a concurrent insert
/// of the same aggregate, [`SaveError::Refused`] with the decision's error
/// (nothing written), or [`SaveError::Failed`].
#[async_trait]
pub trait LockedCommandStore<A: AggregateRoot>: CommandStore<A> {
    /// In one transaction holding the aggregate `id` exclusively (or, when it
    /// does not exist yet, nothing): reads the record of `request_id` and the
    /// aggregate, calls `decide` once, writes what it chose atomically with
    /// the record and the outbox rows, commits, and returns the answer.
    async fn save_locked(
        &self,
        id: Id<A>,
        request_id: &crate::RequestId,
        fingerprint: &crate::Fingerprint,
        decide: &Decide<'_, A>,
    ) -> Result<A, SaveError>;
}

/// Runs `command` on aggregate `id` holding it exclusively, so that
/// concurrent commands on one aggregate queue instead of racing: each is
/// decided on the state the previous one left, none is refused for
/// contention. `command` gets the aggregate, or `None` when it does not exist
/// (it may then create it, or refuse). Idempotent replay and
/// `expected_version` behave as in [`modify`]; a stale `expected_version` is
/// refused against the version read under the lock.
///
/// # Errors
/// [`Error::NotFound`] when `expected_version` names an aggregate that does not
/// exist; [`Error::VersionConflict`] when `expected_version` is stale (or,
/// without one, when an insert loses twice to concurrent inserts, which the
/// second attempt, now under the lock, does not); the command's refusal;
/// [`Error::RequestIdReused`]; the store's failure.
pub async fn modify_locked<A, S, E>(
    store: &S,
    clock: &dyn Clock,
    meta: &CommandMeta,
    id: Id<A>,
    command: impl Fn(Option<A>, OffsetDateTime) -> Result<Outcome<A>, E> + Send + Sync,
) -> Result<A, Error>
where
    A: AggregateRoot + Send + Sync,
    S: LockedCommandStore<A> + ?Sized,
    E: Into<Error>,
{
    let decide = |recorded: Option<Recorded<A>>, current: Option<A>| -> Verdict<A> {
        match replay(meta, recorded) {
            Ok(Some(done)) => return Verdict::Answer(Ok(done)),
            Ok(None) => {}
            Err(error) => return Verdict::Answer(Err(error)),
        }
        let before = current.as_ref().map(AggregateRoot::version);
        if let Some(expected) = meta.expected_version {
            match before {
                None => return Verdict::Answer(Err(not_found::<A>(id))),
                Some(before) if before != expected => {
                    return Verdict::Answer(Err(conflict::<A>(id, Some(expected), before)));
                }
                Some(_) => {}
            }
        }
        let now = clock.now();
        match command(current, now) {
            Err(refusal) => Verdict::Answer(Err(refusal.into())),
            Ok(Outcome::Unchanged(aggregate)) => Verdict::Answer(Ok(aggregate)),
            Ok(Outcome::Changed(aggregate, events)) => {
                match OutboxMessage::for_events(&aggregate, &events, now) {
                    Ok(outbox) => Verdict::Write(LockedChange {
                        aggregate,
                        replaces: before,
                        outbox,
                        at: now,
                    }),
                    Err(error) => Verdict::Answer(Err(Error::Internal(error.into()))),
                }
            }
        }
    };
    // Twice at most: the only race left under the lock is two first inserts
    // of the same aggregate; the loser decides again, now holding the row.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match store
            .save_locked(id, &meta.request_id, &meta.fingerprint, &decide)
            .await
        {
            Ok(aggregate) => return Ok(aggregate),
            Err(SaveError::VersionConflict { current }) => {
                if attempts >= 2 {
                    return Err(conflict::<A>(id, meta.expected_version, current));
                }
            }
            Err(SaveError::RequestAlreadyRecorded) => return recorded_result(store, meta).await,
            Err(SaveError::Refused(refusal)) => return Err(refusal),
            Err(SaveError::NotFound) => return Err(not_found::<A>(id)),
            Err(SaveError::Failed(error)) => return Err(error),
        }
    }
}

async fn save<A, S>(
    store: &S,
    meta: &CommandMeta,
    aggregate: &A,
    replaces: Option<Version>,
    events: &[A::Event],
    at: OffsetDateTime,
) -> Result<(), SaveError>
where
    A: AggregateRoot + Send + Sync,
    S: CommandStore<A> + ?Sized,
{
    let outbox = OutboxMessage::for_events(aggregate, events, at)
        .map_err(|error| SaveError::Failed(Error::Internal(error.into())))?;
    store
        .save(Change {
            aggregate,
            replaces,
            outbox: &outbox,
            meta,
            at,
        })
        .await
}

/// A concurrent retry of the same command recorded it first: its result is ours.
async fn recorded_result<A, S>(store: &S, meta: &CommandMeta) -> Result<A, Error>
where
    A: AggregateRoot + Send + Sync,
    S: CommandStore<A> + ?Sized,
{
    replay(meta, store.recorded(&meta.request_id).await?)?.ok_or_else(|| {
        Error::Internal(
            format!(
                "request {} is recorded but its record cannot be read back",
                meta.request_id.as_str()
            )
            .into(),
        )
    })
}

/// The store refused the change; unless a concurrent retry of this command is
/// what caused the refusal (it took the unique value first), the refusal stands.
async fn after_refusal<A, S>(store: &S, meta: &CommandMeta, refusal: Error) -> Result<A, Error>
where
    A: AggregateRoot + Send + Sync,
    S: CommandStore<A> + ?Sized,
{
    match replay(meta, store.recorded(&meta.request_id).await?)? {
        Some(done) => Ok(done),
        None => Err(refusal),
    }
}

fn not_found<A: AggregateRoot>(id: Id<A>) -> Error {
    Error::NotFound {
        kind: A::KIND,
        id: id.to_string(),
    }
}

fn conflict<A: AggregateRoot>(id: Id<A>, expected: Option<Version>, current: Version) -> Error {
    Error::VersionConflict {
        kind: A::KIND,
        id: id.to_string(),
        expected,
        current,
    }
}

#[cfg(test)]
mod tests {
    //! The machinery against an in-memory fake store that a test can script:
    //! make the next saves lose to a concurrent writer, or lose a record.
    #![allow(clippy::unwrap_used)]

    use std::{
        collections::HashMap,
        sync::{Mutex, PoisonError},
    };

    use serde::Serialize;

    use super::*;
    use crate::{DomainEvent, ManualClock, RequestId};

    #[derive(Debug, Clone, PartialEq)]
    struct Counter {
        id: Id<Counter>,
        version: Version,
        value: u32,
    }

    #[derive(Debug, Serialize)]
    struct Incremented;

    impl DomainEvent for Incremented {
        fn event_type(&self) -> &'static str {
            "test.counter.incremented"
        }
    }

    impl AggregateRoot for Counter {
        type Event = Incremented;
        const KIND: &'static str = "counter";
        fn id(&self) -> Id<Self> {
            self.id
        }
        fn version(&self) -> Version {
            self.version
        }
    }

    fn increment(counter: &mut Counter, _: OffsetDateTime) -> Result<Vec<Incremented>, Error> {
        counter.value += 1;
        counter.version = counter.version.next();
        Ok(vec![Incremented])
    }

    #[derive(Debug, Default)]
    struct Fake {
        counter: Mutex<Option<Counter>>,
        records: Mutex<HashMap<String, Recorded<Counter>>>,
        /// Saves still to lose to a concurrent writer, which bumps the version
        /// (and, when `winner` is set, records that command as the winner's).
        conflicts: Mutex<usize>,
        winner: Mutex<Option<CommandMeta>>,
        /// Claim the key is taken but keep no record.
        lose_records: bool,
    }

    fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[async_trait]
    impl CommandStore<Counter> for Fake {
        async fn load_for_command(
            &self,
            id: Id<Counter>,
            request_id: &RequestId,
        ) -> Result<(Option<Recorded<Counter>>, Option<Counter>), Error> {
            let counter = lock(&self.counter).clone().filter(|c| c.id == id);
            Ok((self.recorded(request_id).await?, counter))
        }

        async fn recorded(&self, request_id: &RequestId) -> Result<Option<Recorded<Counter>>, Error> {
            Ok(lock(&self.records).get(request_id.as_str()).cloned())
        }

        async fn save(&self, change: Change<'_, Counter>) -> Result<(), SaveError> {
            if self.lose_records {
                return Err(SaveError::RequestAlreadyRecorded);
            }
            let mut stored = lock(&self.counter);
            let mut conflicts = lock(&self.conflicts);
            if *conflicts > 0 {
                *conflicts -= 1;
                let concurrent = stored.as_mut().unwrap();
                concurrent.version = concurrent.version.next();
                concurrent.value += 100;
                if let Some(winner) = lock(&self.winner).as_ref() {
                    lock(&self.records).insert(
                        winner.request_id.as_str().to_owned(),
                        Recorded {
                            fingerprint: winner.fingerprint.clone(),
                            result: concurrent.clone(),
                        },
                    );
                }
                return Err(SaveError::VersionConflict {
                    current: concurrent.version,
                });
            }
            if stored.as_ref().map(AggregateRoot::version) != change.replaces {
                return Err(SaveError::VersionConflict {
                    current: stored.as_ref().unwrap().version,
                });
            }
            *stored = Some(change.aggregate.clone());
            lock(&self.records).insert(
                change.meta.request_id.as_str().to_owned(),
                Recorded {
                    fingerprint: change.meta.fingerprint.clone(),
                    result: change.aggregate.clone(),
                },
            );
            Ok(())
        }
    }

    #[async_trait]
    impl LockedCommandStore<Counter> for Fake {
        /// The fake's "lock" is that nothing else runs between its read and
        /// its write; `conflicts` scripts a concurrent first insert that wins.
        async fn save_locked(
            &self,
            id: Id<Counter>,
            request_id: &RequestId,
            fingerprint: &crate::Fingerprint,
            decide: &Decide<'_, Counter>,
        ) -> Result<Counter, SaveError> {
            let recorded = lock(&self.records).get(request_id.as_str()).cloned();
            let current = lock(&self.counter).clone().filter(|c| c.id == id);
            let mut conflicts = lock(&self.conflicts);
            if current.is_none() && *conflicts > 0 {
                *conflicts -= 1;
                *lock(&self.counter) = Some(Counter {
                    id,
                    version: Version::INITIAL,
                    value: 3,
                });
                return Err(SaveError::VersionConflict {
                    current: Version::INITIAL,
                });
            }
            match decide(recorded, current) {
                Verdict::Answer(Ok(counter)) => Ok(counter),
                Verdict::Answer(Err(refusal)) => Err(SaveError::Refused(refusal)),
                Verdict::Write(change) => {
                    *lock(&self.counter) = Some(change.aggregate.clone());
                    lock(&self.records).insert(
                        request_id.as_str().to_owned(),
                        Recorded {
                            fingerprint: fingerprint.clone(),
                            result: change.aggregate.clone(),
                        },
                    );
                    Ok(change.aggregate)
                }
            }
        }
    }

    /// Creates the counter when absent, else increments it; a value of 5 or
    /// more is left as it is (a no-op).
    fn upsert(counter: Option<Counter>, at: OffsetDateTime) -> Result<Outcome<Counter>, Error> {
        match counter {
            None => Ok(Outcome::Changed(
                Counter {
                    id: Id::from_uuid(uuid::Uuid::nil()),
                    version: Version::INITIAL,
                    value: 1,
                },
                vec![Incremented],
            )),
            Some(counter) if counter.value >= 5 => Ok(Outcome::Unchanged(counter)),
            Some(mut counter) => increment(&mut counter, at).map(|events| Outcome::Changed(counter, events)),
        }
    }

    #[tokio::test]
    async fn locked_commands_replay_refuse_reused_keys_and_check_the_locked_version() {
        let (store, id) = fake();
        let first = modify_locked(&store, &clock(), &meta("k", Some(1)), id, upsert)
            .await
            .unwrap();
        let again = modify_locked(&store, &clock(), &meta("k", Some(1)), id, upsert)
            .await
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(lock(&store.counter).as_ref().unwrap().value, 1, "one effect");
        let reused = modify_locked(&store, &clock(), &meta("k", None), id, upsert)
            .await
            .unwrap_err();
        assert!(matches!(reused, Error::RequestIdReused { .. }), "{reused:?}");
        let stale = modify_locked(&store, &clock(), &meta("k2", Some(1)), id, upsert)
            .await
            .unwrap_err();
        assert!(
            matches!(stale, Error::VersionConflict { expected: Some(e), current, .. }
                if e == Version::new(1) && current == Version::new(2)),
            "{stale:?}"
        );
    }

    /// A store whose every locked save loses to a concurrent insert.
    #[derive(Debug, Default)]
    struct AlwaysLoses(Mutex<usize>);

    #[async_trait]
    impl CommandStore<Counter> for AlwaysLoses {
        async fn load_for_command(
            &self,
            _: Id<Counter>,
            _: &RequestId,
        ) -> Result<(Option<Recorded<Counter>>, Option<Counter>), Error> {
            Ok((None, None))
        }
        async fn recorded(&self, _: &RequestId) -> Result<Option<Recorded<Counter>>, Error> {
            Ok(None)
        }
        async fn save(&self, _: Change<'_, Counter>) -> Result<(), SaveError> {
            Err(SaveError::NotFound)
        }
    }

    #[async_trait]
    impl LockedCommandStore<Counter> for AlwaysLoses {
        async fn save_locked(
            &self,
            _: Id<Counter>,
            _: &RequestId,
            _: &crate::Fingerprint,
            _: &Decide<'_, Counter>,
        ) -> Result<Counter, SaveError> {
            *lock(&self.0) += 1;
            Err(SaveError::VersionConflict {
                current: Version::INITIAL,
            })
        }
    }

    #[tokio::test]
    async fn a_locked_command_is_decided_twice_at_most() {
        let store = AlwaysLoses::default();
        let error = modify_locked(&store, &clock(), &meta("k", None), Id::generate(), upsert)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::VersionConflict { .. }), "{error:?}");
        assert_eq!(*lock(&store.0), 2, "the first attempt and one more");
    }

    #[tokio::test]
    async fn a_locked_insert_that_loses_to_a_concurrent_insert_is_decided_again() {
        let store = Fake::default();
        *lock(&store.conflicts) = 1;
        let id = Id::from_uuid(uuid::Uuid::nil());
        let result = modify_locked(&store, &clock(), &meta("k", None), id, upsert)
            .await
            .unwrap();
        assert_eq!(
            (result.value, result.version),
            (4, Version::new(2)),
            "applied to the winner's aggregate"
        );
        let missing = modify_locked(&Fake::default(), &clock(), &meta("k", Some(3)), id, upsert)
            .await
            .unwrap_err();
        assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");
    }

    #[tokio::test]
    async fn an_unchanged_outcome_writes_nothing() {
        let (store, id) = fake();
        lock(&store.counter).as_mut().unwrap().value = 5;
        let result = modify_locked(&store, &clock(), &meta("k", None), id, upsert)
            .await
            .unwrap();
        assert_eq!((result.value, result.version), (5, Version::INITIAL));
        assert!(lock(&store.records).is_empty(), "no record of a no-op");
    }

    fn fake() -> (Fake, Id<Counter>) {
        let id = Id::generate();
        let store = Fake::default();
        *lock(&store.counter) = Some(Counter {
            id,
            version: Version::INITIAL,
            value: 0,
        });
        (store, id)
    }

    fn meta(key: &str, expected: Option<u64>) -> CommandMeta {
        CommandMeta::parse("Increment", key, expected, &()).unwrap()
    }

    fn clock() -> ManualClock {
        ManualClock::new(OffsetDateTime::UNIX_EPOCH)
    }

    #[tokio::test]
    async fn a_retry_returns_the_first_result_without_a_second_effect() {
        let (store, id) = fake();
        let first = modify(&store, &clock(), &meta("k", None), id, increment)
            .await
            .unwrap();
        let again = modify(&store, &clock(), &meta("k", None), id, increment)
            .await
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(lock(&store.counter).as_ref().unwrap().value, 1);
    }

    #[tokio::test]
    async fn a_conflict_caused_by_a_retry_of_the_same_command_returns_its_result() {
        let (store, id) = fake();
        let command = meta("k", Some(1));
        *lock(&store.conflicts) = 1;
        *lock(&store.winner) = Some(command.clone());
        let result = modify(&store, &clock(), &command, id, increment).await.unwrap();
        assert_eq!(result.value, 100, "the concurrent winner's result");
        assert_eq!(result.version, Version::new(2));
    }

    #[tokio::test]
    async fn a_stale_expected_version_after_a_conflict_is_aborted_with_the_clients_version() {
        let (store, id) = fake();
        *lock(&store.conflicts) = 1;
        let error = modify(&store, &clock(), &meta("k", Some(1)), id, increment)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::VersionConflict { expected: Some(e), current, .. }
                if e == Version::new(1) && current == Version::new(2)),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn without_an_expected_version_a_conflict_is_decided_again() {
        let (store, id) = fake();
        *lock(&store.conflicts) = CONFLICT_RETRIES - 1;
        let result = modify(&store, &clock(), &meta("k", None), id, increment)
            .await
            .unwrap();
        assert_eq!(result.value, 100 * (CONFLICT_RETRIES as u32 - 1) + 1);
    }

    #[tokio::test]
    async fn conflicts_exhausted_are_aborted_carrying_only_what_the_client_sent() {
        let (store, id) = fake();
        *lock(&store.conflicts) = CONFLICT_RETRIES;
        let error = modify(&store, &clock(), &meta("k", None), id, increment)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::VersionConflict { expected: None, current, .. }
                if current == Version::new(1 + CONFLICT_RETRIES as u64)),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_record_that_cannot_be_read_back_is_internal() {
        let (mut store, id) = fake();
        store.lose_records = true;
        let error = modify(&store, &clock(), &meta("k", None), id, increment)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Internal(_)), "{error:?}");
        let status = crate::grpc::to_status(error);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[tokio::test]
    async fn a_reused_key_is_refused() {
        let (store, id) = fake();
        modify(&store, &clock(), &meta("k", None), id, increment)
            .await
            .unwrap();
        let error = modify(&store, &clock(), &meta("k", Some(2)), id, increment)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::RequestIdReused { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn an_unknown_aggregate_is_not_found() {
        let (store, _) = fake();
        let error = modify(&store, &clock(), &meta("k", None), Id::generate(), increment)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::NotFound { kind: "counter", .. }),
            "{error:?}"
        );
    }
}
