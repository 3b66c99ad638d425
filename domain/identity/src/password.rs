//! Password hashing as a port ([`PasswordHasher`]), so that the use cases can be
//! tested with a hasher that counts its calls, and its implementation on
//! argon2id ([`Argon2Hasher`]) with parameters from configuration
//! ([`PasswordPolicy`]).
//!
//! Hashing is deliberately slow (tens of milliseconds, tens of MiB): it runs on
//! threads of its own, never on a runtime worker, and at most
//! `hash_concurrency` hashes run at once (one per two cores by default), so that a
//! flood of sign-ins costs a bounded amount of memory and leaves the other
//! contexts their share of the CPU. The hashing threads run at the lowest
//! priority (nice 19): they take what CPU the other contexts leave, so a
//! flood slows sign-ins, not catalog reads. A call that finds every slot
//! taken waits up to `hash_wait` for one, then is refused with
//! [`Error::Busy`] (`RESOURCE_EXHAUSTED`, a 503 with `Retry-After` at the
//! edge); past `hash_queue` callers waiting, it is refused at once, since it
//! could not be served within the wait anyway and each waiting call holds an
//! HTTP/2 stream and an admission place of the server. A call
//! cancelled while it waits (its deadline passed, its client left) takes no
//! slot, and one cancelled before its hash began skips the hash. A hash that
//! has begun cannot be interrupted (argon2 has no cancellation point), so it
//! keeps its slot for the few milliseconds it has left: the slot counts what
//! really runs.

use std::{
    fmt::Debug,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use argon2::{
    Algorithm, Argon2, Block, Params,
    password_hash::{self, Output, ParamsString, Salt, SaltString, rand_core::OsRng},
};
use async_trait::async_trait;
use strata_kernel::Error;
use tokio::sync::Semaphore;

use crate::domain::{Password, PasswordHash};

/// Makes and checks password hashes.
///
/// # Errors
/// [`Error::Internal`] when hashing itself fails (bad parameters, a stored
/// hash that is not a PHC string, the blocking task lost). A wrong password is
/// not an error: `verify` returns `false`.
#[async_trait]
pub trait PasswordHasher: Debug + Send + Sync + 'static {
    /// A new hash of `password`, with a fresh salt.
    async fn hash(&self, password: &Password) -> Result<PasswordHash, Error>;

    /// Whether `password` is the one `hash` was made from. A withheld hash
    /// verifies nothing.
    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, Error>;
}

/// The environment variables [`PasswordPolicy::from_env`] reads.
pub mod vars {
    /// Argon2 memory cost in KiB.
    pub const MEMORY_KIB: &str = "STRATA_IDENTITY_ARGON2_MEMORY_KIB";
    /// Argon2 iterations (time cost).
    pub const ITERATIONS: &str = "STRATA_IDENTITY_ARGON2_ITERATIONS";
    /// Argon2 lanes.
    pub const PARALLELISM: &str = "STRATA_IDENTITY_ARGON2_PARALLELISM";
    /// The fewest characters a new password may have.
    pub const PASSWORD_MIN_LENGTH: &str = "STRATA_IDENTITY_PASSWORD_MIN_LENGTH";
    /// How many hashes may run at once in this process (0: one per core).
    pub const HASH_CONCURRENCY: &str = "STRATA_IDENTITY_HASH_CONCURRENCY";
    /// How long a call waits for a hashing slot before it is refused, in ms.
    pub const HASH_WAIT_MS: &str = "STRATA_IDENTITY_HASH_WAIT_MS";
    /// How many calls may wait for a hashing slot at once (0: 16 per slot);
    /// more are refused at once.
    pub const HASH_QUEUE: &str = "STRATA_IDENTITY_HASH_QUEUE";
}

/// How passwords are hashed and how long new ones must be. The defaults are
/// OWASP's argon2id recommendation (19 MiB, 2 iterations, 1 lane) and a
/// 12-character minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Time cost.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// The fewest characters a new password may have (at most
    /// [`crate::domain::MAX_PASSWORD_CHARS`]).
    pub min_password_chars: usize,
    /// How many hashes may run at once (0: one per core).
    pub hash_concurrency: u32,
    /// How long a call waits for a hashing slot before it is refused.
    pub hash_wait: Duration,
    /// How many calls may wait for a slot at once (0: 16 per slot).
    pub hash_queue: u32,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            min_password_chars: 12,
            hash_concurrency: 0,
            hash_wait: Duration::from_secs(1),
            hash_queue: 0,
        }
    }
}

/// A configuration value that is not usable; names its variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct PolicyError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with its value.
    pub problem: String,
}

impl PasswordPolicy {
    /// Cheap parameters for tests: hashing takes well under a millisecond.
    #[must_use]
    pub const fn for_tests() -> Self {
        Self {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
            min_password_chars: 12,
            hash_concurrency: 0,
            hash_wait: Duration::from_secs(1),
            hash_queue: 0,
        }
    }

    /// The policy from the process environment ([`vars`]); unset variables
    /// keep their defaults.
    ///
    /// # Errors
    /// [`PolicyError`] naming the first variable whose value is not usable.
    pub fn from_env() -> Result<Self, PolicyError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// The policy from `lookup` (a variable's value, if set).
    ///
    /// # Errors
    /// [`PolicyError`] naming the first variable whose value is not usable:
    /// not a number, or out of argon2's bounds, or a minimum length of 0 or
    /// above the maximum.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, PolicyError> {
        let defaults = Self::default();
        let number = |var: &'static str, default: u32| -> Result<u32, PolicyError> {
            match lookup(var) {
                None => Ok(default),
                Some(raw) => raw.trim().parse().map_err(|_| PolicyError {
                    var,
                    problem: format!("{raw:?} is not a whole number"),
                }),
            }
        };
        let policy = Self {
            memory_kib: number(vars::MEMORY_KIB, defaults.memory_kib)?,
            iterations: number(vars::ITERATIONS, defaults.iterations)?,
            parallelism: number(vars::PARALLELISM, defaults.parallelism)?,
            min_password_chars: number(vars::PASSWORD_MIN_LENGTH, 12)? as usize,
            hash_concurrency: number(vars::HASH_CONCURRENCY, defaults.hash_concurrency)?,
            hash_wait: Duration::from_millis(u64::from(number(
                vars::HASH_WAIT_MS,
                u32::try_from(defaults.hash_wait.as_millis()).unwrap_or(u32::MAX),
            )?)),
            hash_queue: number(vars::HASH_QUEUE, defaults.hash_queue)?,
        };
        policy.check()?;
        Ok(policy)
    }

    /// Whether argon2 accepts these parameters and the minimum is sensible.
    ///
    /// # Errors
    /// [`PolicyError`] naming the variable of the first parameter refused.
    pub fn check(&self) -> Result<(), PolicyError> {
        let refuse = |var, problem: String| Err(PolicyError { var, problem });
        if !(1..=crate::domain::MAX_PASSWORD_CHARS).contains(&self.min_password_chars) {
            return refuse(
                vars::PASSWORD_MIN_LENGTH,
                format!("must be 1 to {}", crate::domain::MAX_PASSWORD_CHARS),
            );
        }
        if !(Params::MIN_P_COST..=Params::MAX_P_COST).contains(&self.parallelism) {
            return refuse(
                vars::PARALLELISM,
                format!("must be {} to {}", Params::MIN_P_COST, Params::MAX_P_COST),
            );
        }
        if self.iterations < Params::MIN_T_COST {
            return refuse(
                vars::ITERATIONS,
                format!("must be at least {}", Params::MIN_T_COST),
            );
        }
        // argon2 needs at least 8 KiB per lane (parallelism is bounded above,
        // so the product fits).
        if self.memory_kib < 8 * self.parallelism {
            return refuse(
                vars::MEMORY_KIB,
                format!("must be at least 8 × the parallelism ({})", 8 * self.parallelism),
            );
        }
        self.params().map(|_| ()).map_err(|e| PolicyError {
            var: vars::MEMORY_KIB,
            problem: e.to_string(),
        })
    }

    fn params(&self) -> Result<Params, argon2::Error> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
    }

    /// How many hashes may run at once: `hash_concurrency`, or one per two
    /// cores (at least one), so that a flood of sign-ins leaves the other
    /// contexts at least half the machine.
    #[must_use]
    pub fn hash_slots(&self) -> usize {
        match self.hash_concurrency {
            0 => (std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) / 2).max(1),
            n => n as usize,
        }
    }

    /// How many calls may wait for a slot at once: `hash_queue`, or 16 per
    /// slot (at OWASP's parameters a hash takes 15 to 50 ms, so 16 waiting
    /// calls are served well within the default wait of 1 s).
    #[must_use]
    pub fn hash_queue_len(&self) -> usize {
        match self.hash_queue {
            0 => self.hash_slots() * 16,
            n => n as usize,
        }
    }
}

/// [`PasswordHasher`] on argon2id, PHC strings with a salt from the OS.
#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    argon2: Arc<Argon2<'static>>,
    slots: Arc<Semaphore>,
    wait: Duration,
    /// Calls waiting for a slot now, and how many may.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    workers: Arc<Workers>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads that hash, as many as there are slots: a hash allocates its
/// memory cost (19 MiB) on the thread that runs it, and the allocator keeps
/// freed memory in that thread's arena for reuse. On tokio's blocking pool
/// every hash could land on another of up to 512 threads, each keeping its
/// own 19 MiB: a flood of sign-ins grew the process to 630 MiB with only two
/// hashes at a time. On these threads it stays at slots x the memory cost.
struct Workers {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").finish_non_exhaustive()
    }
}

impl Workers {
    /// `n` threads taking jobs until the last hasher is dropped.
    fn start(n: usize) -> Result<Self, std::io::Error> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for i in 0..n {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lowest_priority();
                    loop {
                        let job = queue
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        match job {
                            // A job that panics loses its answer (the caller
                            // gets INTERNAL), not the thread.
                            Ok(job) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Self {
            jobs: std::sync::Mutex::new(jobs),
        })
    }

    fn run(&self, job: Job) -> Result<(), Error> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(job)
            .map_err(|_| Error::Internal("the hashing threads are gone".into()))
    }
}

/// Puts the calling thread at nice 19, the lowest priority: it then runs
/// when no thread of normal priority wants the CPU (Linux: the nice value of
/// one thread, not the process). Where that is refused, hashing goes on at
/// normal priority, with a warning.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::warn!(error = %e, "could not lower the hashing thread's priority");
    }
}

impl Argon2Hasher {
    /// A hasher with the policy's parameters.
    ///
    /// # Errors
    /// [`PolicyError`] when argon2 refuses the parameters.
    pub fn new(policy: &PasswordPolicy) -> Result<Self, PolicyError> {
        policy.check()?;
        let params = policy.params().map_err(|e| PolicyError {
            var: vars::MEMORY_KIB,
            problem: e.to_string(),
        })?;
        let workers = Workers::start(policy.hash_slots()).map_err(|e| PolicyError {
            var: vars::HASH_CONCURRENCY,
            problem: format!("cannot start the hashing threads: {e}"),
        })?;
        Ok(Self {
            argon2: Arc::new(Argon2::new(Algorithm::Argon2id, argon2::Version::V0x13, params)),
            slots: Arc::new(Semaphore::new(policy.hash_slots())),
            wait: policy.hash_wait,
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: policy.hash_queue_len(),
            workers: Arc::new(workers),
        })
    }

    /// Runs `work` on a hashing thread in a hashing slot: waits up to the
    /// policy's wait for one, skips `work` if the caller is gone before it
    /// begins, and holds the slot exactly while it runs.
    async fn in_slot<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, password_hash::Error> + Send + 'static,
    ) -> Result<T, Error> {
        let busy = || Error::Busy {
            what: "password hashing",
            retry_after: Duration::from_secs(1),
        };
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(tokio::sync::TryAcquireError::Closed) => {
                return Err(Error::Internal("the hashing slots were closed".into()));
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let _place = Waiting::take(&self.waiting, self.max_waiting).ok_or_else(busy)?;
                tokio::time::timeout(self.wait, Arc::clone(&self.slots).acquire_owned())
                    .await
                    .map_err(|_| busy())?
                    .map_err(|_| Error::Internal("the hashing slots were closed".into()))?
            }
        };
        let caller = Caller::default();
        let gone = Arc::clone(&caller.gone);
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.workers.run(Box::new(move || {
            let done = (!gone.load(Ordering::Acquire)).then(work);
            // The slot is free before the caller hears back, so that a
            // caller that goes on at once finds it free.
            drop(slot);
            let _ = answer.send(done);
        }))?;
        answered
            .await
            .map_err(|_| Error::Internal("a hashing thread failed".into()))?
            .ok_or_else(|| Error::Internal("the caller left before its hash began".into()))?
            .map_err(hashing_failed)
    }
}

/// A place among the calls waiting for a slot, given back when dropped
/// (served, timed out or cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    /// A place, if fewer than `max` are taken.
    fn take(waiting: &'a AtomicUsize, max: usize) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(waiting))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks the caller gone when its call is dropped (cancelled).
#[derive(Default)]
struct Caller {
    gone: Arc<AtomicBool>,
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.gone.store(true, Ordering::Release);
    }
}

/// Hashing errors never carry the password; they are still kept opaque.
fn hashing_failed(error: password_hash::Error) -> Error {
    Error::Internal(format!("password hashing failed: {error}").into())
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, Error> {
        let argon2 = Arc::clone(&self.argon2);
        let password = password.clone();
        let phc = self
            .in_slot(move || {
                hash_phc(
                    &argon2,
                    password.expose().as_bytes(),
                    &SaltString::generate(&mut OsRng),
                )
            })
            .await?;
        PasswordHash::from_phc(phc).map_err(|v| Error::Internal(v.to_string().into()))
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, Error> {
        let Some(phc) = hash.phc().map(str::to_owned) else {
            return Ok(false);
        };
        let password = password.clone();
        self.in_slot(move || verify_phc(password.expose().as_bytes(), &phc))
            .await
    }
}

thread_local! {
    /// This hashing thread's argon2 memory (19 MiB at the default cost),
    /// allocated at its first hash and reused by every later one. Left to the
    /// allocator, each hash's freed block was not reused: the process grew by
    /// the memory cost at each of the first ten or so hashes, to 230 MiB with
    /// a single slot. Reused, the process holds slots × the memory cost.
    static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs argon2 over `password` and `salt` with `argon2`'s parameters into an
/// output of `len` bytes, in this thread's [`MEMORY`] (grown to the largest
/// cost it has seen: a stored hash may carry an older policy's).
fn raw_hash(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: Salt<'_>,
    len: usize,
) -> password_hash::Result<Output> {
    let mut salt_bytes = [0_u8; Salt::MAX_LENGTH];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let blocks = argon2.params().block_count();
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        Output::init_with(len, |out| {
            Ok(argon2.hash_password_into_with_memory(password, salt_bytes, out, &mut memory[..blocks])?)
        })
    })
}

/// A new PHC string for `password` (what `argon2.hash_password` makes, in
/// this thread's memory).
fn hash_phc(argon2: &Argon2<'_>, password: &[u8], salt: &SaltString) -> password_hash::Result<String> {
    let params = argon2.params();
    let output = raw_hash(
        argon2,
        password,
        salt.as_salt(),
        params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN),
    )?;
    Ok(password_hash::PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: ParamsString::try_from(params)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// Whether `password` is the one `phc` was made from (what
/// `verify_password` checks, in this thread's memory). The parameters come
/// from the stored hash itself, so hashes made under an older policy still
/// verify; outputs are compared in constant time (`Output`'s `==`).
fn verify_phc(password: &[u8], phc: &str) -> password_hash::Result<bool> {
    let parsed = password_hash::PasswordHash::new(phc)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Ok(false);
    };
    let argon2 = Argon2::new(
        Algorithm::try_from(parsed.algorithm)?,
        parsed
            .version
            .map(argon2::Version::try_from)
            .transpose()?
            .unwrap_or_default(),
        Params::try_from(&parsed)?,
    );
    Ok(raw_hash(&argon2, password, salt, expected.len())? == expected)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |var| map.get(var).cloned()
    }

    #[test]
    fn defaults_are_owasps() {
        assert_eq!(
            PasswordPolicy::from_lookup(lookup(&[])).unwrap(),
            PasswordPolicy::default()
        );
        assert_eq!(
            PasswordPolicy::default(),
            PasswordPolicy {
                memory_kib: 19_456,
                iterations: 2,
                parallelism: 1,
                min_password_chars: 12,
                hash_concurrency: 0,
                hash_wait: Duration::from_secs(1),
                hash_queue: 0,
            }
        );
        assert_eq!(
            PasswordPolicy::default().hash_queue_len(),
            PasswordPolicy::default().hash_slots() * 16
        );
        assert_eq!(
            PasswordPolicy::default().hash_slots(),
            (std::thread::available_parallelism().unwrap().get() / 2).max(1),
            "one hash per two cores"
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            (vars::MEMORY_KIB, "lots"),
            (vars::MEMORY_KIB, "4"),
            (vars::ITERATIONS, "0"),
            (vars::PARALLELISM, "0"),
            (vars::PASSWORD_MIN_LENGTH, "0"),
            (vars::PASSWORD_MIN_LENGTH, "2000"),
            (vars::ITERATIONS, "-1"),
            (vars::HASH_CONCURRENCY, "many"),
            (vars::HASH_WAIT_MS, "-5"),
        ] {
            let error = PasswordPolicy::from_lookup(lookup(&[(var, value)])).unwrap_err();
            assert_eq!(error.var, var, "{var}={value}: {error}");
            assert!(error.to_string().starts_with(var));
        }
        let set = PasswordPolicy::from_lookup(lookup(&[
            (vars::MEMORY_KIB, "65536"),
            (vars::ITERATIONS, "3"),
            (vars::PARALLELISM, "4"),
            (vars::PASSWORD_MIN_LENGTH, "16"),
            (vars::HASH_CONCURRENCY, "3"),
            (vars::HASH_WAIT_MS, "250"),
        ]))
        .unwrap();
        assert_eq!((set.hash_slots(), set.hash_wait), (3, Duration::from_millis(250)));
        assert_eq!(
            (
                set.memory_kib,
                set.iterations,
                set.parallelism,
                set.min_password_chars
            ),
            (65_536, 3, 4, 16)
        );
    }

    #[tokio::test]
    async fn argon2id_hashes_verify_and_salt() {
        let hasher = Argon2Hasher::new(&PasswordPolicy::for_tests()).unwrap();
        let password = Password::given("password", "correct horse battery staple").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        let phc = hash.phc().unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(hasher.verify(&password, &hash).await.unwrap());
        let wrong = Password::given("password", "correct horse battery stapler").unwrap();
        assert!(!hasher.verify(&wrong, &hash).await.unwrap());
        assert_ne!(
            hasher.hash(&password).await.unwrap(),
            hash,
            "a fresh salt each time"
        );
        assert!(!hasher.verify(&password, &PasswordHash::withheld()).await.unwrap());
        // A hash made with other parameters still verifies: they are in the PHC string.
        let other = Argon2Hasher::new(&PasswordPolicy {
            memory_kib: 16,
            ..PasswordPolicy::for_tests()
        })
        .unwrap();
        assert!(other.verify(&password, &hash).await.unwrap());
    }

    /// A hasher with `slots` slots and `wait`, and work that runs until let go.
    fn gated(slots: u32, wait: Duration) -> Argon2Hasher {
        Argon2Hasher::new(&PasswordPolicy {
            hash_concurrency: slots,
            hash_wait: wait,
            ..PasswordPolicy::for_tests()
        })
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_the_slots_hash_at_once_and_the_rest_are_refused_as_busy() {
        use std::sync::atomic::AtomicUsize;
        for round in 0..10 {
            let hasher = Arc::new(gated(2, Duration::from_millis(100)));
            let running = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let (release, gate) = std::sync::mpsc::channel::<()>();
            let gate = Arc::new(std::sync::Mutex::new(gate));
            let barrier = Arc::new(tokio::sync::Barrier::new(8));
            let (done, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
            for _ in 0..8 {
                let (hasher, running, most, gate, barrier, done) = (
                    hasher.clone(),
                    running.clone(),
                    most.clone(),
                    gate.clone(),
                    barrier.clone(),
                    done.clone(),
                );
                tokio::spawn(async move {
                    barrier.wait().await;
                    let outcome = hasher
                        .in_slot(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            let _ = gate.lock().unwrap().recv();
                            running.fetch_sub(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .await;
                    let _ = done.send(outcome);
                });
            }
            // While two run, the six that found no slot are refused once
            // their wait is over; then the two are let go and succeed.
            for _ in 0..6 {
                let outcome = tokio::time::timeout(Duration::from_secs(5), outcomes.recv()).await;
                match outcome
                    .expect("the calls beyond the slots should be refused")
                    .unwrap()
                {
                    Err(Error::Busy { what, retry_after }) => {
                        assert_eq!((what, retry_after), ("password hashing", Duration::from_secs(1)));
                    }
                    other => panic!("round {round}: {other:?}"),
                }
            }
            release.send(()).unwrap();
            release.send(()).unwrap();
            for _ in 0..2 {
                outcomes.recv().await.unwrap().unwrap();
            }
            assert_eq!(most.load(Ordering::SeqCst), 2, "round {round}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_cancelled_while_it_waits_holds_no_slot() {
        let hasher = Arc::new(gated(1, Duration::from_secs(10)));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn({
            let hasher = hasher.clone();
            async move {
                hasher
                    .in_slot(move || {
                        let _ = gate.recv();
                        Ok(1)
                    })
                    .await
            }
        });
        while hasher.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        // Given up while waiting: no hash, and no slot kept.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let cancelled = tokio::time::timeout(
            Duration::from_millis(50),
            hasher.in_slot(move || {
                flag.store(true, Ordering::SeqCst);
                Ok(2)
            }),
        )
        .await;
        assert!(cancelled.is_err());
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(hasher.in_slot(|| Ok(3)).await.unwrap(), 3);
        assert!(!ran.load(Ordering::SeqCst), "the cancelled call's work never ran");
        assert_eq!(hasher.slots.available_permits(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_queue_a_call_is_refused_at_once_and_a_place_is_given_back() {
        for round in 0..10 {
            let hasher = Arc::new(
                Argon2Hasher::new(&PasswordPolicy {
                    hash_concurrency: 1,
                    hash_wait: Duration::from_secs(30),
                    hash_queue: 2,
                    ..PasswordPolicy::for_tests()
                })
                .unwrap(),
            );
            let (release, gate) = std::sync::mpsc::channel::<()>();
            let running = tokio::spawn({
                let hasher = hasher.clone();
                async move {
                    hasher
                        .in_slot(move || {
                            let _ = gate.recv();
                            Ok(0)
                        })
                        .await
                }
            });
            while hasher.slots.available_permits() > 0 {
                tokio::task::yield_now().await;
            }
            // Four callers at once for the two places: two wait, two are
            // refused without waiting (the wait is 30 s).
            let barrier = Arc::new(tokio::sync::Barrier::new(4));
            let callers: Vec<_> = (1..=4)
                .map(|n| {
                    let (hasher, barrier) = (hasher.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        hasher.in_slot(move || Ok(n)).await
                    })
                })
                .collect();
            while hasher.waiting.load(Ordering::SeqCst) < 2 {
                tokio::task::yield_now().await;
            }
            // Two are refused while the slot is still taken: without waiting for it.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while callers.iter().filter(|c| c.is_finished()).count() < 2 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "round {round}: nobody refused"
                );
                tokio::task::yield_now().await;
            }
            let (refused, mut waiting): (Vec<_>, Vec<_>) = callers.into_iter().partition(|c| c.is_finished());
            for caller in refused {
                assert!(
                    matches!(caller.await.unwrap(), Err(Error::Busy { .. })),
                    "round {round}"
                );
            }
            assert_eq!(waiting.len(), 2, "round {round}");
            assert_eq!(
                hasher.slots.available_permits(),
                0,
                "the first hash still holds the slot"
            );
            // One waiter gives up: its place is free for a new caller.
            waiting.pop().unwrap().abort();
            while hasher.waiting.load(Ordering::SeqCst) > 1 {
                tokio::task::yield_now().await;
            }
            let late = tokio::spawn({
                let hasher = hasher.clone();
                async move { hasher.in_slot(|| Ok(5)).await }
            });
            release.send(()).unwrap();
            assert_eq!(running.await.unwrap().unwrap(), 0);
            assert!(waiting.pop().unwrap().await.unwrap().is_ok(), "round {round}");
            assert_eq!(late.await.unwrap().unwrap(), 5, "round {round}");
            assert_eq!(hasher.waiting.load(Ordering::SeqCst), 0);
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_run_at_the_lowest_priority() {
        let hasher = Argon2Hasher::new(&PasswordPolicy::for_tests()).unwrap();
        let nice = hasher
            .in_slot(|| {
                Ok(rustix::process::getpriority_process(Some(
                    rustix::thread::gettid(),
                )))
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(nice, 19, "a hashing thread's nice value");
        let here = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert!(here < 19, "only the hashing threads are lowered");
    }

    #[tokio::test]
    async fn hashes_are_argon2s_own_both_ways() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let policy = PasswordPolicy {
            memory_kib: 64,
            iterations: 2,
            ..PasswordPolicy::for_tests()
        };
        let hasher = Argon2Hasher::new(&policy).unwrap();
        let password = Password::given("password", "correct horse battery").unwrap();
        let reference = Argon2::new(
            Algorithm::Argon2id,
            argon2::Version::V0x13,
            policy.params().unwrap(),
        );
        // Ours, checked by argon2's verifier.
        let ours = hasher.hash(&password).await.unwrap();
        let parsed = password_hash::PasswordHash::new(ours.phc().unwrap()).unwrap();
        assert!(
            reference
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        assert!(
            reference
                .verify_password(b"correct horse batterY", &parsed)
                .is_err()
        );
        // argon2's own, as stored before this hasher reused its memory, checked by ours.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = reference
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(verify_phc(b"correct horse battery", &theirs).unwrap());
        assert!(!verify_phc(b"correct horse batterY", &theirs).unwrap());
        // One made under another policy (more memory) verifies too.
        let bigger = Argon2::new(
            Algorithm::Argon2id,
            argon2::Version::V0x13,
            Params::new(256, 1, 1, None).unwrap(),
        );
        let old = bigger
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(verify_phc(b"correct horse battery", &old).unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hashing_thread_reuses_its_memory() {
        let hasher = Argon2Hasher::new(&PasswordPolicy {
            hash_concurrency: 1,
            memory_kib: 64,
            ..PasswordPolicy::for_tests()
        })
        .unwrap();
        let password = Password::given("password", "correct horse battery").unwrap();
        let memory = || MEMORY.with_borrow(|m| (m.as_ptr() as usize, m.len()));
        let mut seen = Vec::new();
        for _ in 0..5 {
            let hash = hasher.hash(&password).await.unwrap();
            assert!(hasher.verify(&password, &hash).await.unwrap());
            seen.push(hasher.in_slot(move || Ok(memory())).await.unwrap());
        }
        assert_eq!(seen[0].1, 64, "one block per KiB of the memory cost");
        assert!(
            seen.iter().all(|m| *m == seen[0]),
            "the same memory every time: {seen:?}"
        );
    }
}
