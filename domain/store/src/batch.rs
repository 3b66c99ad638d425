//! Reads by key that concurrent callers share: opportunistic batching (the
//! "smart batching" or group-commit pattern), with no timer.
//!
//! A context builds one [`Batched`] per statement ([`crate::Store::batched`]
//! with a [`ReadByKey`]: its statement reads a *list* of keys and every row
//! carries its key) and reads one key at a time through it:
//!
//! - **Fewer than [`MAX_IN_FLIGHT`] statements of this read are in flight:**
//!   the read goes out at once, alone, from the caller's own task — exactly
//!   one statement, as an unbatched read would, with no waiting for company.
//! - **[`MAX_IN_FLIGHT`] are:** the caller queues. When a statement in
//!   flight ends, the next one carries every key queued meanwhile
//!   (at most [`MAX_KEYS`] distinct keys; the rest go in the statement after),
//!   each key once however many callers asked for it, and every caller gets
//!   its own row, or `None`. Under load batches grow by themselves; when the
//!   queue is empty the read is idle again.
//! - A queued read is only ever answered by a statement sent after it was
//!   queued, so a caller sees every write that committed before it asked.
//! - **A failure** of a batch's statement answers every caller of that batch
//!   with the same error ([`StoreError::Shared`]).
//! - **A caller that gives up** (its future dropped: a deadline, a cancelled
//!   request) is skipped when the next batch is formed, and never strands the
//!   others: queued callers are served by a driver task (spawned when the lone
//!   caller's statement ends with others queued), not by any caller's future.
//!   A lone caller that gives up mid-statement passes the turn on from its
//!   drop (see `Turn`), so the queue behind it is served all the same.
//!
//! Why a spawned driver rather than a leader among the callers: a leader's
//! future can be dropped at any await, and with it the statement that carried
//! the others' keys. A driver owns nothing but the queue; the only callers
//! whose future runs a statement are lone ones, whose statement carries only
//! their own key. The price is one task spawn per busy period, none per read
//! at concurrency 1.
//!
//! The decisions — forming a batch from the queue (`take_batch`) and
//! matching rows back to callers (`rows_by_key`, `answer_all`) — are plain
//! functions, unit-tested below against an in-memory fake of the statement.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    hash::Hash,
    marker::PhantomData,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{Backend, Param, Row, Sql, StoreError};

/// The most distinct keys one statement carries.
pub const MAX_KEYS: usize = 100;

/// The most statements of one read in flight at once. Measured (`make bench`,
/// get): with 4, batches stay small and the database works more per row (at
/// concurrency 64, 0.62× pgbench and 20 DB CPU ms per 1 000 gets) than with 1
/// (0.83× and 8.1); at concurrency 4 both are bound by the latency of one call
/// (0.13×). So one: while a statement is out, the next batch forms.
pub const MAX_IN_FLIGHT: usize = 1;

/// A read of rows by key, written for a list of keys so that one statement
/// serves many callers.
#[derive(Debug, Clone, Copy)]
pub struct ReadByKey {
    /// Selects every row whose key is in `$1`, the list of keys ([`Key::list`]):
    /// `… where id = any($1)` on PostgreSQL; on SQLite `… where id in (select
    /// unhex(value) from json_each($1))` for UUIDs, `… in (select value from
    /// json_each($1))` for text. At most one row per key (a second one is
    /// ignored, as a single-row read would).
    pub statement: Sql,
    /// The column that holds each row's key, so that rows are matched to callers.
    pub key_column: usize,
}

/// A key that rows are read by: a UUID or text.
pub trait Key: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static {
    /// The keys of one statement, as its `$1`.
    fn list(keys: Vec<Self>) -> Param;

    /// A row's key, from `column`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the column is missing or of another type.
    fn read(row: &Row, column: usize) -> Result<Self, StoreError>;
}

impl Key for Uuid {
    fn list(keys: Vec<Self>) -> Param {
        Param::Uuids(keys)
    }

    fn read(row: &Row, column: usize) -> Result<Self, StoreError> {
        row.uuid(column)
    }
}

impl Key for String {
    fn list(keys: Vec<Self>) -> Param {
        Param::Texts(keys)
    }

    fn read(row: &Row, column: usize) -> Result<Self, StoreError> {
        row.text(column)
    }
}

/// One read by key whose concurrent callers share statements (see the module
/// documentation). Built once per statement with [`crate::Store::batched`] and
/// kept beside the store; cheap to clone (clones share the queue).
pub struct Batched<K: Key> {
    queue: Arc<Queue<FromStore<K>>>,
}

impl<K: Key> Clone for Batched<K> {
    fn clone(&self) -> Self {
        Self {
            queue: Arc::clone(&self.queue),
        }
    }
}

impl<K: Key> fmt::Debug for Batched<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batched")
            .field("statement", &self.queue.fetch.read.statement.postgres)
            .finish_non_exhaustive()
    }
}

impl<K: Key> Batched<K> {
    pub(crate) fn new(backend: Backend, read: ReadByKey) -> Self {
        Self {
            queue: Arc::new(Queue::new(
                FromStore {
                    backend,
                    read,
                    key: PhantomData,
                },
                MAX_KEYS,
                MAX_IN_FLIGHT,
            )),
        }
    }

    /// The row with `key`, if any, as `from_row` reads it (in the caller's
    /// task, so a batch's rows are mapped in parallel).
    ///
    /// # Errors
    /// The classified driver error — [`StoreError::Shared`] when the statement
    /// carried other callers' keys too — or `from_row`'s.
    pub async fn get<T>(
        &self,
        key: K,
        from_row: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.queue.get(key).await?.as_deref().map(from_row).transpose()
    }
}

/// What one statement does for the queue: send keys, read rows back, tell a
/// row's key. The store implements it with SQL; the tests with a fake.
pub(crate) trait Fetch: Send + Sync + 'static {
    type Key: Clone + Eq + Hash + Send + Sync + 'static;
    type Row: Send + Sync + 'static;

    /// The rows of `keys` (distinct), in any order.
    fn fetch(&self, keys: Vec<Self::Key>) -> impl Future<Output = Result<Vec<Self::Row>, StoreError>> + Send;

    /// The key a row answers.
    fn key_of(&self, row: &Self::Row) -> Result<Self::Key, StoreError>;
}

/// A [`ReadByKey`] on a context's store.
struct FromStore<K> {
    backend: Backend,
    read: ReadByKey,
    key: PhantomData<fn() -> K>,
}

impl<K: Key> Fetch for FromStore<K> {
    type Key = K;
    type Row = Row;

    async fn fetch(&self, keys: Vec<K>) -> Result<Vec<Row>, StoreError> {
        crate::fetch_all(&self.backend, self.read.statement, vec![K::list(keys)]).await
    }

    fn key_of(&self, row: &Row) -> Result<K, StoreError> {
        K::read(row, self.read.key_column)
    }
}

/// What a caller is answered: its row (shared with the other callers of the
/// same key), none, or the error.
pub(crate) type Answer<R> = Result<Option<Arc<R>>, StoreError>;

/// A queued caller.
pub(crate) struct Waiter<K, R> {
    key: K,
    answer: oneshot::Sender<Answer<R>>,
}

impl<K, R> Waiter<K, R> {
    /// Whether the caller gave up (its future was dropped).
    fn gone(&self) -> bool {
        self.answer.is_closed()
    }
}

/// The next statement's keys (distinct) and the callers it answers.
pub(crate) struct Batch<K, R> {
    keys: Vec<K>,
    callers: Vec<Waiter<K, R>>,
}

/// Takes the next batch from `waiting`, in arrival order: callers that gave up
/// are dropped; a caller whose key is already in the batch joins it whatever
/// the batch's size; a new key joins while the batch has fewer than `max_keys`.
/// Whoever does not fit stays queued, in order.
pub(crate) fn take_batch<K: Clone + Eq + Hash, R>(
    waiting: &mut Vec<Waiter<K, R>>,
    max_keys: usize,
) -> Batch<K, R> {
    let mut keys = Vec::new();
    let mut seen = HashSet::new();
    let mut callers = Vec::new();
    let mut rest = Vec::new();
    for waiter in waiting.drain(..) {
        if waiter.gone() {
            continue;
        }
        if seen.contains(&waiter.key) {
            callers.push(waiter);
        } else if keys.len() < max_keys {
            seen.insert(waiter.key.clone());
            keys.push(waiter.key.clone());
            callers.push(waiter);
        } else {
            rest.push(waiter);
        }
    }
    *waiting = rest;
    Batch { keys, callers }
}

/// The rows of a statement by their key; the first row of a key wins.
///
/// # Errors
/// `key_of`'s, when a row's key cannot be read.
pub(crate) fn rows_by_key<K: Eq + Hash, R>(
    rows: Vec<R>,
    key_of: impl Fn(&R) -> Result<K, StoreError>,
) -> Result<HashMap<K, Arc<R>>, StoreError> {
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        found.entry(key_of(&row)?).or_insert_with(|| Arc::new(row));
    }
    Ok(found)
}

/// Answers every caller of a batch: its key's row or none, or — when the
/// statement failed — the one error, shared. Callers that gave up meanwhile
/// are passed over.
pub(crate) fn answer_all<K: Eq + Hash, R>(
    callers: Vec<Waiter<K, R>>,
    found: Result<HashMap<K, Arc<R>>, StoreError>,
) {
    match found {
        Ok(found) => {
            for waiter in callers {
                let _gone = waiter.answer.send(Ok(found.get(&waiter.key).cloned()));
            }
        }
        Err(error) => {
            let error = Arc::new(error);
            for waiter in callers {
                let _gone = waiter.answer.send(Err(StoreError::Shared(Arc::clone(&error))));
            }
        }
    }
}

/// The error a queued caller gets when the task that was to answer it stopped
/// (the runtime shut down, or it panicked).
fn stopped() -> StoreError {
    StoreError::Unavailable(sqlx::Error::WorkerCrashed)
}

struct State<K, R> {
    /// Callers waiting for the next statement, in arrival order.
    waiting: Vec<Waiter<K, R>>,
    /// Statements in flight or about to be sent (lone callers' or drivers'):
    /// while there are `max_in_flight`, callers queue.
    sending: usize,
}

/// The queue of one read: the callers waiting and whether a statement is out.
pub(crate) struct Queue<F: Fetch> {
    fetch: F,
    max_keys: usize,
    max_in_flight: usize,
    state: Mutex<State<F::Key, F::Row>>,
}

impl<F: Fetch> Queue<F> {
    pub(crate) fn new(fetch: F, max_keys: usize, max_in_flight: usize) -> Self {
        Self {
            fetch,
            max_keys: max_keys.max(1),
            max_in_flight: max_in_flight.max(1),
            state: Mutex::new(State {
                waiting: Vec::new(),
                sending: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<F::Key, F::Row>> {
        // Nothing panics while holding it; a poisoned queue is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The row of `key`: sent at once when nothing is in flight, otherwise
    /// with the next batch.
    pub(crate) async fn get(self: &Arc<Self>, key: F::Key) -> Answer<F::Row> {
        let queued = {
            let mut state = self.lock();
            if state.sending >= self.max_in_flight {
                let (answer, answered) = oneshot::channel();
                state.waiting.push(Waiter {
                    key: key.clone(),
                    answer,
                });
                Some(answered)
            } else {
                state.sending += 1;
                None
            }
        };
        if let Some(answered) = queued {
            return answered.await.unwrap_or_else(|_| Err(stopped()));
        }
        // Alone: this caller's own statement, carrying its key only. The turn
        // passes on when it ends — or when this future is dropped mid-way.
        let turn = Turn {
            queue: Some(Arc::clone(self)),
        };
        let rows = self.fetch.fetch(vec![key.clone()]).await;
        drop(turn);
        let mut found = rows_by_key(rows?, |row| self.fetch.key_of(row))?;
        Ok(found.remove(&key))
    }

    /// Ends a lone caller's turn: callers that queued meanwhile are served by
    /// a driver task; with none, the read is idle again.
    fn pass_on(self: Arc<Self>) {
        let mut state = self.lock();
        state.waiting.retain(|waiter| !waiter.gone());
        if state.waiting.is_empty() {
            state.sending -= 1;
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                drop(state);
                drop(runtime.spawn(drive(Driver {
                    queue: self,
                    armed: true,
                })));
            }
            Err(_) => {
                // No runtime to serve them (it is gone): they are answered
                // `stopped` as their senders drop.
                state.waiting.clear();
                state.sending -= 1;
            }
        }
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.lock().waiting.len()
    }

    #[cfg(test)]
    fn idle(&self) -> bool {
        let state = self.lock();
        state.sending == 0 && state.waiting.is_empty()
    }
}

/// A lone caller's right to send; dropping it passes the turn on.
struct Turn<F: Fetch> {
    queue: Option<Arc<Queue<F>>>,
}

impl<F: Fetch> Drop for Turn<F> {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.pass_on();
        }
    }
}

/// The driver's hold on the queue. It ends its turn itself when the queue is
/// empty; dropped before (the runtime shutting down, a panic), it answers the
/// queued callers `stopped` and leaves the read idle, so that it never stays
/// busy with nobody sending.
struct Driver<F: Fetch> {
    queue: Arc<Queue<F>>,
    /// Whether it still holds the turn.
    armed: bool,
}

impl<F: Fetch> Drop for Driver<F> {
    fn drop(&mut self) {
        if self.armed {
            let mut state = self.queue.lock();
            state.waiting.clear();
            state.sending -= 1;
        }
    }
}

/// Sends batch after batch until nobody waits.
async fn drive<F: Fetch>(mut driver: Driver<F>) {
    let queue = Arc::clone(&driver.queue);
    loop {
        let Batch { keys, callers } = {
            let mut state = queue.lock();
            let batch = take_batch(&mut state.waiting, queue.max_keys);
            if batch.callers.is_empty() {
                // This turn ends; a new caller may go alone again.
                state.sending -= 1;
                driver.armed = false;
                return;
            }
            batch
        };
        let found = match queue.fetch.fetch(keys).await {
            Ok(rows) => rows_by_key(rows, |row| queue.fetch.key_of(row)),
            Err(error) => Err(error),
        };
        answer_all(callers, found);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use tokio::sync::{Barrier, Semaphore};

    use super::*;

    /// Keys below this exist; the row of key `k` is `(k, "row k")`.
    const EXISTING: u32 = 1000;

    /// An in-memory statement: records the keys of every call, waits for a
    /// permit of `gate` before answering, and fails the calls `fail` names.
    struct Fake {
        calls: Mutex<Vec<Vec<u32>>>,
        gate: Semaphore,
        fail: Mutex<HashSet<usize>>,
        panics: Mutex<HashSet<usize>>,
        started: AtomicUsize,
    }

    impl Fake {
        fn open() -> Self {
            Self::gated(Semaphore::MAX_PERMITS)
        }

        fn gated(permits: usize) -> Self {
            Self {
                calls: Mutex::new(Vec::new()),
                gate: Semaphore::new(permits),
                fail: Mutex::new(HashSet::new()),
                panics: Mutex::new(HashSet::new()),
                started: AtomicUsize::new(0),
            }
        }

        fn calls(&self) -> Vec<Vec<u32>> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Fetch for Arc<Fake> {
        type Key = u32;
        type Row = (u32, String);

        async fn fetch(&self, keys: Vec<u32>) -> Result<Vec<(u32, String)>, StoreError> {
            let call = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(keys.clone());
                calls.len() - 1
            };
            self.started.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.unwrap().forget();
            // Let other callers queue meanwhile, as a real round trip would.
            tokio::task::yield_now().await;
            let panics = self.panics.lock().unwrap().contains(&call);
            assert!(!panics, "call {call} panics");
            if self.fail.lock().unwrap().contains(&call) {
                return Err(StoreError::Corrupt(format!("call {call} fails").into()));
            }
            Ok(keys
                .into_iter()
                .filter(|key| *key < EXISTING)
                .map(|key| (key, format!("row {key}")))
                .collect())
        }

        fn key_of(&self, row: &(u32, String)) -> Result<u32, StoreError> {
            Ok(row.0)
        }
    }

    fn queue(fake: &Arc<Fake>, max_keys: usize) -> Arc<Queue<Arc<Fake>>> {
        Arc::new(Queue::new(Arc::clone(fake), max_keys, 1))
    }

    /// Bounds every wait on a caller: a caller left stranded fails the test.
    const STRANDED: Duration = Duration::from_secs(5);

    /// Waits (by yielding, not by time) until `done` holds; fails after
    /// [`STRANDED`].
    async fn until(mut done: impl FnMut() -> bool) {
        tokio::time::timeout(STRANDED, async {
            while !done() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the condition never held");
    }

    /// What a task returned; fails if it is not done within [`STRANDED`].
    async fn finished<T>(task: tokio::task::JoinHandle<T>) -> T {
        tokio::time::timeout(STRANDED, task)
            .await
            .expect("the caller was never answered")
            .unwrap()
    }

    fn row(key: u32) -> Option<String> {
        (key < EXISTING).then(|| format!("row {key}"))
    }

    fn answered(answer: Answer<(u32, String)>) -> Option<String> {
        answer.unwrap().map(|row| row.1.clone())
    }

    fn spawn_get(queue: &Arc<Queue<Arc<Fake>>>, key: u32) -> tokio::task::JoinHandle<Answer<(u32, String)>> {
        let queue = Arc::clone(queue);
        tokio::spawn(async move { queue.get(key).await })
    }

    fn waiter(key: u32) -> (Waiter<u32, u32>, oneshot::Receiver<Answer<u32>>) {
        let (answer, answered) = oneshot::channel();
        (Waiter { key, answer }, answered)
    }

    #[test]
    fn a_batch_skips_callers_that_gave_up_sends_each_key_once_and_keeps_order() {
        let (a, _a) = waiter(1);
        let (gone, gone_rx) = waiter(2);
        drop(gone_rx);
        let (b, _b) = waiter(3);
        let (again, _again) = waiter(1);
        let mut waiting = vec![a, gone, b, again];
        let batch = take_batch(&mut waiting, 10);
        assert_eq!(batch.keys, vec![1, 3]);
        assert_eq!(
            batch.callers.iter().map(|w| w.key).collect::<Vec<_>>(),
            vec![1, 3, 1]
        );
        assert!(waiting.is_empty());
    }

    #[test]
    fn a_batch_holds_at_most_max_keys_but_every_caller_of_a_key_it_holds() {
        let (mut waiting, _receivers): (Vec<_>, Vec<_>) =
            [5, 6, 7, 5, 8, 6, 7].into_iter().map(waiter).unzip();
        let batch = take_batch(&mut waiting, 2);
        assert_eq!(batch.keys, vec![5, 6]);
        assert_eq!(
            batch.callers.iter().map(|w| w.key).collect::<Vec<_>>(),
            vec![5, 6, 5, 6]
        );
        // The rest stay queued, in arrival order.
        assert_eq!(waiting.iter().map(|w| w.key).collect::<Vec<_>>(), vec![7, 8, 7]);
        let next = take_batch(&mut waiting, 2);
        assert_eq!(next.keys, vec![7, 8]);
        assert!(waiting.is_empty());
        // An empty queue, or one of callers who all gave up, is no batch.
        let (gone, gone_rx) = waiter(9);
        drop(gone_rx);
        let mut waiting = vec![gone];
        assert!(take_batch(&mut waiting, 2).callers.is_empty());
        assert!(waiting.is_empty());
    }

    #[test]
    fn rows_are_matched_by_key_and_the_first_row_of_a_key_wins() {
        let found = rows_by_key(vec![(1, "a"), (2, "b"), (1, "c")], |row| Ok(row.0)).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[&1].1, "a");
        assert_eq!(found[&2].1, "b");
        let unreadable = rows_by_key(vec![(1, "a")], |_| -> Result<u32, _> {
            Err(StoreError::Corrupt("no key".into()))
        });
        assert!(matches!(unreadable, Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn every_caller_gets_its_own_row_or_none_or_the_one_shared_error() {
        let (a, a_rx) = waiter(1);
        let (b, b_rx) = waiter(2);
        let (again, again_rx) = waiter(1);
        let found = HashMap::from([(1, Arc::new(10))]);
        answer_all(vec![a, b, again], Ok(found));
        assert_eq!(a_rx.await.unwrap().unwrap().as_deref(), Some(&10));
        assert_eq!(b_rx.await.unwrap().unwrap(), None);
        assert_eq!(again_rx.await.unwrap().unwrap().as_deref(), Some(&10));

        let (a, a_rx) = waiter(1);
        let (b, b_rx) = waiter(2);
        answer_all(vec![a, b], Err(StoreError::Corrupt("boom".into())));
        let (Err(StoreError::Shared(a)), Err(StoreError::Shared(b))) =
            (a_rx.await.unwrap(), b_rx.await.unwrap())
        else {
            panic!("both callers get the shared error");
        };
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_lone_caller_is_sent_at_once_alone() {
        let fake = Arc::new(Fake::open());
        let queue = queue(&fake, MAX_KEYS);
        for key in [3, 4, 3, EXISTING + 1] {
            assert_eq!(answered(finished(spawn_get(&queue, key)).await), row(key));
        }
        // One statement per read, each carrying its own key only.
        assert_eq!(fake.calls(), vec![vec![3], vec![4], vec![3], vec![EXISTING + 1]]);
        assert!(queue.idle());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn callers_queued_behind_a_statement_share_the_next_one() {
        let fake = Arc::new(Fake::gated(0));
        let queue = queue(&fake, MAX_KEYS);
        let lone = spawn_get(&queue, 1);
        until(|| fake.started.load(Ordering::SeqCst) == 1).await;
        // While it is in flight: existing keys, missing ones, duplicates.
        let keys = [2, 3, 2, EXISTING + 5, 1, 3, EXISTING + 5, 4];
        let queued: Vec<_> = keys.iter().map(|&key| spawn_get(&queue, key)).collect();
        until(|| queue.queued() == keys.len()).await;
        fake.gate.add_permits(2);
        assert_eq!(answered(finished(lone).await), row(1));
        for (key, task) in keys.iter().zip(queued) {
            assert_eq!(answered(finished(task).await), row(*key), "key {key}");
        }
        let calls = fake.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0], vec![1]);
        let mut second = calls[1].clone();
        second.sort_unstable();
        assert_eq!(second, vec![1, 2, 3, 4, EXISTING + 5], "each key once");
        until(|| queue.idle()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn up_to_max_in_flight_callers_go_alone_then_the_rest_queue() {
        let fake = Arc::new(Fake::gated(0));
        let queue = Arc::new(Queue::new(Arc::clone(&fake), MAX_KEYS, 2));
        let first = spawn_get(&queue, 1);
        let second = spawn_get(&queue, 2);
        until(|| fake.started.load(Ordering::SeqCst) == 2).await;
        assert_eq!(queue.queued(), 0, "two statements in flight, nobody waits");
        let queued: Vec<_> = [3, 4, 3].iter().map(|&key| spawn_get(&queue, key)).collect();
        until(|| queue.queued() == 3).await;
        fake.gate.add_permits(3);
        assert_eq!(answered(finished(first).await), row(1));
        assert_eq!(answered(finished(second).await), row(2));
        for (key, task) in [3, 4, 3].iter().zip(queued) {
            assert_eq!(answered(finished(task).await), row(*key));
        }
        let mut calls = fake.calls();
        calls.sort();
        let mut third = calls[2].clone();
        third.sort_unstable();
        assert_eq!(
            (calls.len(), &calls[..2], third),
            (3, &[vec![1], vec![2]][..], vec![3, 4])
        );
        until(|| queue.idle()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_long_queue_is_sent_in_batches_of_at_most_max_keys() {
        let fake = Arc::new(Fake::gated(0));
        let queue = queue(&fake, 100);
        let lone = spawn_get(&queue, 0);
        until(|| fake.started.load(Ordering::SeqCst) == 1).await;
        let queued: Vec<_> = (1..=250).map(|key| spawn_get(&queue, key)).collect();
        until(|| queue.queued() == 250).await;
        fake.gate.add_permits(Semaphore::MAX_PERMITS / 2);
        assert_eq!(answered(finished(lone).await), row(0));
        for (key, task) in (1..=250).zip(queued) {
            assert_eq!(answered(finished(task).await), row(key));
        }
        let sizes: Vec<_> = fake.calls().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 100, 100, 50]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_statement_answers_every_caller_of_its_batch_with_the_same_error() {
        let fake = Arc::new(Fake::gated(0));
        fake.fail.lock().unwrap().insert(1);
        let queue = queue(&fake, MAX_KEYS);
        let lone = spawn_get(&queue, 1);
        until(|| fake.started.load(Ordering::SeqCst) == 1).await;
        let queued: Vec<_> = [2, 3, 2, EXISTING + 1].map(|key| spawn_get(&queue, key)).into();
        until(|| queue.queued() == 4).await;
        fake.gate.add_permits(Semaphore::MAX_PERMITS / 2);
        assert_eq!(answered(finished(lone).await), row(1));
        let mut errors = Vec::new();
        for task in queued {
            match finished(task).await {
                Err(StoreError::Shared(error)) => errors.push(error),
                other => panic!("expected the batch's error, got {other:?}"),
            }
        }
        assert!(errors.iter().all(|error| Arc::ptr_eq(error, &errors[0])));
        assert!(matches!(*errors[0], StoreError::Corrupt(_)));
        // The failure was that batch's only: the read goes on.
        assert_eq!(answered(finished(spawn_get(&queue, 2)).await), row(2));
        until(|| queue.idle()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn queued_callers_that_gave_up_are_not_sent() {
        let fake = Arc::new(Fake::gated(0));
        let queue = queue(&fake, MAX_KEYS);
        let lone = spawn_get(&queue, 1);
        until(|| fake.started.load(Ordering::SeqCst) == 1).await;
        let stays = spawn_get(&queue, 2);
        let gives_up = spawn_get(&queue, 3);
        let also_stays = spawn_get(&queue, 4);
        until(|| queue.queued() == 3).await;
        gives_up.abort();
        assert!(gives_up.await.unwrap_err().is_cancelled());
        fake.gate.add_permits(2);
        assert_eq!(answered(finished(lone).await), row(1));
        assert_eq!(answered(finished(stays).await), row(2));
        assert_eq!(answered(finished(also_stays).await), row(4));
        let mut second = fake.calls()[1].clone();
        second.sort_unstable();
        assert_eq!(second, vec![2, 4]);
        until(|| queue.idle()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_lone_caller_that_gives_up_mid_statement_strands_nobody() {
        let fake = Arc::new(Fake::gated(0));
        let queue = queue(&fake, MAX_KEYS);
        let lone = spawn_get(&queue, 1);
        until(|| fake.started.load(Ordering::SeqCst) == 1).await;
        let queued: Vec<_> = [2, 3].map(|key| spawn_get(&queue, key)).into();
        until(|| queue.queued() == 2).await;
        // Its statement never ends: the caller gives up while it is in flight.
        lone.abort();
        assert!(lone.await.unwrap_err().is_cancelled());
        fake.gate.add_permits(1);
        for (key, task) in [2, 3].into_iter().zip(queued) {
            assert_eq!(answered(finished(task).await), row(key));
        }
        assert_eq!(fake.calls().len(), 2);
        until(|| queue.idle()).await;
    }

    /// Many rounds of contenders started together, with duplicate and missing
    /// keys, a few of them giving up at once: every caller that stays gets its
    /// own row, no statement carries a key twice or more than the limit, and
    /// the read is idle after every round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_each_get_their_own_row() {
        const ROUNDS: usize = 50;
        const CONTENDERS: usize = 48;
        let fake = Arc::new(Fake::open());
        let queue = queue(&fake, 16);
        for round in 0..ROUNDS {
            let barrier = Arc::new(Barrier::new(CONTENDERS));
            let tasks: Vec<_> = (0..CONTENDERS)
                .map(|n| {
                    // Keys repeat across contenders; every 5th is missing.
                    let key =
                        u32::try_from((n * 7 + round) % 40).unwrap() + if n % 5 == 0 { EXISTING } else { 0 };
                    let queue = Arc::clone(&queue);
                    let barrier = Arc::clone(&barrier);
                    let gives_up = n % 11 == 3;
                    let task = tokio::spawn(async move {
                        barrier.wait().await;
                        if gives_up {
                            // Polled once (queued, or its statement sent), then dropped.
                            tokio::select! {
                                biased;
                                _ = queue.get(key) => {}
                                () = std::future::ready(()) => {}
                            }
                            None
                        } else {
                            Some(queue.get(key).await)
                        }
                    });
                    (key, task)
                })
                .collect();
            for (key, task) in tasks {
                let answer = tokio::time::timeout(STRANDED, task)
                    .await
                    .expect("every caller is answered")
                    .unwrap();
                if let Some(answer) = answer {
                    assert_eq!(answered(answer), row(key), "round {round}, key {key}");
                }
            }
            until(|| queue.idle()).await;
        }
        for keys in fake.calls() {
            assert!(keys.len() <= 16, "{keys:?}");
            assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len(), "{keys:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_driver_that_panics_answers_its_queue_and_leaves_the_read_idle() {
        let fake = Arc::new(Fake::gated(0));
        fake.panics.lock().unwrap().insert(1);
        let queue = queue(&fake, MAX_KEYS);
        let lone = spawn_get(&queue, 1);
        until(|| fake.started.load(Ordering::SeqCst) == 1).await;
        let queued: Vec<_> = [2, 3].map(|key| spawn_get(&queue, key)).into();
        until(|| queue.queued() == 2).await;
        fake.gate.add_permits(Semaphore::MAX_PERMITS / 2);
        assert_eq!(answered(finished(lone).await), row(1));
        for task in queued {
            assert!(matches!(
                finished(task).await,
                Err(StoreError::Unavailable(sqlx::Error::WorkerCrashed))
            ));
        }
        until(|| queue.idle()).await;
        assert_eq!(answered(finished(spawn_get(&queue, 4)).await), row(4));
    }

    #[test]
    fn without_a_runtime_the_queue_is_answered_and_the_read_left_idle() {
        let fake = Arc::new(Fake::open());
        let queue = queue(&fake, MAX_KEYS);
        let (answer, mut answered) = oneshot::channel();
        {
            let mut state = queue.lock();
            state.sending = 1;
            state.waiting.push(Waiter { key: 1, answer });
        }
        // A lone caller's turn ends where no runtime can run a driver.
        drop(Turn {
            queue: Some(Arc::clone(&queue)),
        });
        assert!(queue.idle());
        assert!(matches!(
            answered.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }
}
