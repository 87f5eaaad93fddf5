//! One process of the contract checker (`tests/tests/contract.rs`; the
//! model is `cache_tests::contract`). `TASKS` tasks call four cached
//! functions (tags, grace, a generic `impl` with two types) with random
//! arguments, random timeouts around the calls (cancellations) and bodies
//! that fail or panic at random, while the driver writes the database,
//! invalidates and breaks the cache's Redis. After every call the task
//! checks what the contract promises it:
//! - the value is of the function, type and argument called (`wrong-value`);
//! - it is not older than the last invalidation whose mark was published
//!   before the call started (`stale`);
//! - made while Redis was healthy (no fault for a lease TTL), the call
//!   returned within the latency bound (`slow`).
//!
//! Beside them, a monitor checks that the breaker stops skipping Redis and
//! that hits resume within `2 x open_for` (plus slack) after a fault
//! (`breaker`, `no-hits`), and a probe checks that a grace value outlives
//! `ttl + lock_ttl` (`grace-lost`): filled, left alone past that, then
//! asked while its database is down, it must still be served.
//!
//! Prints a `VIOLATION <check> <details>` line for each violation and one
//! `COUNTS name=<n> ...` line at the end.
//!
//! usage: contract_worker CACHE_URL DB_URL NAMESPACE SEED INDEX TASKS

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached};
use cache_tests::contract::{
    self, BREAKER_FAILURES, Chaos, GRACED_PATH, IDS, Keys, LOCK_TTL, OP_TIMEOUT, OPEN_FOR,
    PLAIN_PATH, Rng, Val, all_scopes, breaker_bound, latency_bound, now_ms, scopes, violation,
};
use redis::aio::MultiplexedConnection;

/// What a body needs: the cache, the database, its own randomness.
#[derive(Clone)]
struct Ctx {
    cache: Cache,
    db: MultiplexedConnection,
    keys: Keys,
    rng: Arc<Mutex<Rng>>,
    /// The database of `kept` is down (the grace probe's switch).
    kept_down: Arc<AtomicBool>,
}

/// The body of every function: reads the database's version, takes up to
/// `BODY_MAX`, and fails (8 %) or panics (4 %) at random; fails while the
/// database is down.
async fn body(ctx: &Ctx, f: &str, ty: &str, id: u64, random_faults: bool) -> Result<Val, String> {
    let mut db = ctx.db.clone();
    let mut pipe = redis::pipe();
    pipe.get(ctx.keys.db()).get(ctx.keys.down());
    let read = pipe.query_async::<(u64, Option<String>)>(&mut db);
    let (ver, down) = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| "the database timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (sleep, fault) = {
        let mut rng = ctx.rng.lock().unwrap();
        (
            rng.ms(0, contract::BODY_MAX.as_millis() as u64),
            rng.below(100),
        )
    };
    tokio::time::sleep(sleep).await;
    if down.as_deref() == Some("1") {
        return Err("database down".into());
    }
    if random_faults && fault < 8 {
        return Err("body error".into());
    }
    if random_faults && fault < 12 {
        panic!("contract: the body panics");
    }
    Ok(Val {
        f: f.into(),
        ty: ty.into(),
        arg: id,
        ver,
    })
}

#[cached(cache = ctx.cache, skip(ctx), ttl = 2, tags = ["items", "item:{id}"])]
async fn plain(ctx: Ctx, id: u64) -> Result<Val, String> {
    body(&ctx, "plain", "-", id, true).await
}

#[cached(cache = ctx.cache, skip(ctx), ttl = 1, grace = "1h", tags = ["items", "item:{id}"])]
async fn graced(ctx: Ctx, id: u64) -> Result<Val, String> {
    body(&ctx, "graced", "-", id, true).await
}

/// The grace probe's function: nobody else calls it, the driver
/// invalidates it only with `invalidate_all`.
#[cached(cache = ctx.cache, skip(ctx), ttl = 1, grace = "1h", lock_ttl = "1s")]
async fn kept(ctx: Ctx, id: u64) -> Result<Val, String> {
    if ctx.kept_down.load(Ordering::SeqCst) {
        return Err("database down".into());
    }
    body(&ctx, "kept", "-", id, false).await
}

/// `kept`'s full path.
const KEPT_PATH: &str = "contract_worker::kept";

/// A type parameter of [`Repo`].
trait Kind: Send + Sync + 'static {
    const NAME: &'static str;
}

struct A;
struct B;

impl Kind for A {
    const NAME: &'static str = "A";
}

impl Kind for B {
    const NAME: &'static str = "B";
}

/// A generic `impl` whose cached function has no receiver: `Repo::<A>::get`
/// and `Repo::<B>::get` must never share an entry.
struct Repo<T>(PhantomData<T>);

impl<T: Kind> Repo<T> {
    #[cached(cache = ctx.cache, skip(ctx), ttl = 2, tags = ["repo", "item:{id}"])]
    async fn get(ctx: Ctx, id: u64) -> Result<Val, String> {
        body(&ctx, "repo", T::NAME, id, true).await
    }
}

/// How long a call without a timeout of ours may take before it counts
/// as a hang (and is cancelled).
const HANG: Duration = Duration::from_secs(30);

/// The functions a task picks from: (name, type).
const FUNCTIONS: [(&str, &str); 4] = [
    ("plain", "-"),
    ("graced", "-"),
    ("repo", "A"),
    ("repo", "B"),
];

/// Calls function `which` with `id` in a task of its own (a panic is the
/// task's), cancelled after `timeout`. `None`: cancelled; `Some(Err(None))`:
/// the call panicked.
async fn call(
    ctx: &Ctx,
    which: usize,
    id: u64,
    timeout: Option<Duration>,
) -> Option<Result<Val, Option<String>>> {
    let ctx = ctx.clone();
    let mut handle = tokio::spawn(async move {
        match which {
            0 => plain(ctx, id).await,
            1 => graced(ctx, id).await,
            2 => Repo::<A>::get(ctx, id).await,
            _ => Repo::<B>::get(ctx, id).await,
        }
    });
    let joined = match timeout {
        Some(t) => match tokio::time::timeout(t, &mut handle).await {
            Ok(joined) => joined,
            Err(_) => {
                handle.abort();
                return None;
            }
        },
        None => (&mut handle).await,
    };
    Some(match joined {
        Ok(result) => result.map_err(Some),
        Err(e) if e.is_panic() => Err(None),
        Err(e) => Err(Some(e.to_string())),
    })
}

/// What the tasks count.
#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    cancelled: AtomicU64,
    checked_fresh: AtomicU64,
    clean: AtomicU64,
    max_clean_ms: AtomicU64,
    violations: AtomicU64,
    suppressed: AtomicU64,
    grace_probes: AtomicU64,
    grace_inconclusive: AtomicU64,
    max_recovery_ms: AtomicU64,
}

impl Counts {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// The phase and the fault state, as read.
type Head = (Option<String>, Option<String>);

/// Shared by the tasks of this process.
struct Worker {
    ctx: Ctx,
    counts: Counts,
    /// Tasks (and the probe) parked in the `quiet` phase.
    parked: AtomicUsize,
    /// What each task is calling, for the report of a hang.
    doing: Vec<Mutex<String>>,
    /// Violations by check.
    seen: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Worker {
    /// Prints a violation: the first few of each check, the others only
    /// counted (in the `COUNTS` line's `suppressed`).
    fn report(&self, line: String) {
        Counts::add(&self.counts.violations);
        let check = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut seen = self.seen.lock().unwrap();
        let n = seen.entry(check).or_default();
        *n += 1;
        if *n <= 5 {
            println!("{line}");
        } else {
            Counts::add(&self.counts.suppressed);
        }
    }

    /// The phase, the fault state and every mark, in one read.
    async fn state(&self) -> (String, Chaos, Vec<(String, u64)>) {
        let mut db = self.ctx.db.clone();
        let scopes = all_scopes();
        let mut pipe = redis::pipe();
        pipe.get(self.ctx.keys.phase()).get(self.ctx.keys.chaos());
        for s in &scopes {
            pipe.get(self.ctx.keys.mark(s));
        }
        // The database server is never broken: if it is gone, so is the
        // driver.
        let give_up = Instant::now() + Duration::from_secs(30);
        let (head, marks): (Head, Vec<Option<u64>>) = loop {
            let got: redis::RedisResult<Vec<redis::Value>> = pipe.query_async(&mut db).await;
            if let Ok(values) = got {
                let text = |v: &redis::Value| {
                    redis::from_redis_value::<Option<String>>(v.clone())
                        .ok()
                        .flatten()
                };
                let head = (text(&values[0]), text(&values[1]));
                let marks = values[2..]
                    .iter()
                    .map(|v| text(v).and_then(|s| s.parse().ok()))
                    .collect();
                break (head, marks);
            }
            if Instant::now() > give_up {
                eprintln!("contract_worker: the database server is gone");
                std::process::exit(3);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let phase = head.0.unwrap_or_else(|| "run".into());
        let marks = scopes
            .into_iter()
            .zip(marks)
            .map(|(s, m)| (s, m.unwrap_or(0)))
            .collect();
        (phase, Chaos::parse(head.1.as_deref()), marks)
    }

    async fn chaos(&self) -> Chaos {
        let mut db = self.ctx.db.clone();
        loop {
            let got: redis::RedisResult<Option<String>> = redis::cmd("GET")
                .arg(self.ctx.keys.chaos())
                .query_async(&mut db)
                .await;
            if let Ok(s) = got {
                return Chaos::parse(s.as_deref());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits out the `quiet` phase; false once the run is over.
    async fn park(&self, phase: &str) -> bool {
        if phase == "run" {
            return true;
        }
        if phase == "stop" {
            return false;
        }
        self.parked.fetch_add(1, Ordering::SeqCst);
        let go_on = loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (phase, _, _) = self.state().await;
            if phase != "quiet" {
                break phase == "run";
            }
        };
        self.parked.fetch_sub(1, Ordering::SeqCst);
        go_on
    }

    /// One task: calls and checks until the run stops.
    async fn task(self: Arc<Self>, slot: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        loop {
            let (phase, before, marks) = self.state().await;
            if !self.park(&phase).await {
                return;
            }
            if phase != "run" {
                continue;
            }
            let which = rng.below(FUNCTIONS.len() as u64) as usize;
            let (f, ty) = FUNCTIONS[which];
            let id = rng.below(IDS);
            let timeout = rng.chance(25).then(|| rng.ms(1, 60));
            let (started, started_ms) = (Instant::now(), now_ms());
            *self.doing[slot].lock().unwrap() = format!("{f}::<{ty}>({id}) since {started_ms}");
            let outcome = call(&self.ctx, which, id, Some(timeout.unwrap_or(HANG))).await;
            let took = started.elapsed();
            self.doing[slot].lock().unwrap().clear();
            if timeout.is_none() && outcome.is_none() {
                self.report(violation(
                    "hang",
                    format!(
                        "{f}::<{ty}>({id}) had not returned after {} s",
                        HANG.as_secs()
                    ),
                ));
            }
            let after = self.chaos().await;
            let c = &self.counts;
            Counts::add(&c.calls);
            let what = format!("{f}::<{ty}>({id})");
            match outcome {
                None => Counts::add(&c.cancelled),
                Some(Err(None)) => Counts::add(&c.panics),
                Some(Err(Some(_))) => Counts::add(&c.errors),
                Some(Ok(v)) => {
                    Counts::add(&c.ok);
                    if v.f != f || v.ty != ty || v.arg != id {
                        let check = if v.f == f && v.arg == id {
                            "wrong-value(type)"
                        } else {
                            "wrong-value"
                        };
                        self.report(violation(check, format!("{what} returned {v:?}")));
                    }
                    let covering = scopes(f, id);
                    let (scope, mark) = marks
                        .iter()
                        .filter(|(s, _)| covering.contains(s))
                        .max_by_key(|(_, m)| *m)
                        .cloned()
                        .unwrap_or_default();
                    if mark > 0 {
                        Counts::add(&c.checked_fresh);
                    }
                    if v.ver < mark {
                        self.report(violation(
                            "stale",
                            format!(
                                "{what} returned version {} after `{scope}` was invalidated at version {mark}",
                                v.ver
                            ),
                        ));
                    }
                }
            }
            if timeout.is_none_or(|t| took < t)
                && after.epoch == before.epoch
                && before.clean_at(started_ms)
            {
                Counts::add(&c.clean);
                c.max_clean_ms
                    .fetch_max(took.as_millis() as u64, Ordering::SeqCst);
                if took > latency_bound() {
                    self.report(violation(
                        "slow",
                        format!(
                            "{what} took {} ms with Redis healthy (bound {} ms)",
                            took.as_millis(),
                            latency_bound().as_millis()
                        ),
                    ));
                }
            }
            tokio::time::sleep(rng.ms(0, 3)).await;
        }
    }

    /// Watches the breaker and the hits: after a fault, Redis is skipped
    /// no longer than `2 x open_for` (and slack), and hits resume as soon.
    async fn monitor(self: Arc<Self>) {
        let mut last = (Chaos::default(), self.ctx.cache.stats());
        // Since the end of the last burst: whether a hit came, and the
        // misses when it ended.
        let (mut recovered, mut misses_at_end) = (true, 0);
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (phase, chaos, _) = self.state().await;
            if phase == "stop" {
                return;
            }
            let stats = self.ctx.cache.stats();
            let now = now_ms();
            if chaos.last_end_ms != last.0.last_end_ms {
                (recovered, misses_at_end) = (false, stats.misses);
            }
            // No fault began or ended since the last look.
            let settled =
                !chaos.active && chaos == last.0 && phase == "run" && chaos.last_end_ms > 0;
            if settled && stats.hits > last.1.hits && !recovered {
                recovered = true;
                self.counts
                    .max_recovery_ms
                    .fetch_max(now.saturating_sub(chaos.last_end_ms), Ordering::SeqCst);
            }
            let late = now > chaos.last_end_ms + breaker_bound().as_millis() as u64;
            if settled && late {
                if stats.skipped > last.1.skipped {
                    self.report(violation(
                        "breaker",
                        format!(
                            "calls skipped Redis {} ms after it was back (bound {} ms)",
                            now - chaos.last_end_ms,
                            breaker_bound().as_millis()
                        ),
                    ));
                }
                if !recovered && stats.misses > misses_at_end + 50 {
                    recovered = true;
                    self.report(violation(
                        "no-hits",
                        format!(
                            "no hit {} ms after Redis was back, {} misses since",
                            now - chaos.last_end_ms,
                            stats.misses - misses_at_end
                        ),
                    ));
                }
            }
            last = (chaos, stats);
        }
    }

    /// The grace probe: fills `kept(id)`, leaves it past `ttl + lock_ttl`
    /// (2 s), then asks for it with its database down: the grace value
    /// must be served, unless a fault, an invalidation of the namespace or
    /// a Redis error came in between (then the round is inconclusive).
    async fn probe(self: Arc<Self>, index: usize) {
        let mut round = 0u64;
        loop {
            let (phase, chaos0, marks0) = self.state().await;
            if !self.park(&phase).await {
                return;
            }
            if phase != "run" || chaos0.active {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            round += 1;
            let id = 1_000_000 * (index as u64 + 1) + round;
            let all0 = self.all_attempts().await;
            let errors0 = self.disturbances();
            self.ctx.kept_down.store(false, Ordering::SeqCst);
            let first = kept(self.ctx.clone(), id).await;
            let Ok(first) = first else {
                continue;
            };
            tokio::time::sleep(Duration::from_millis(2500)).await;
            self.ctx.kept_down.store(true, Ordering::SeqCst);
            let second = kept(self.ctx.clone(), id).await;
            self.ctx.kept_down.store(false, Ordering::SeqCst);
            let (_, chaos1, marks1) = self.state().await;
            let errors1 = self.disturbances();
            let all = |marks: &[(String, u64)]| marks.iter().find(|(s, _)| s == "all").cloned();
            let undisturbed = chaos1 == chaos0
                && all(&marks1) == all(&marks0)
                && self.all_attempts().await == all0
                && errors1 == errors0;
            if !undisturbed {
                Counts::add(&self.counts.grace_inconclusive);
                continue;
            }
            Counts::add(&self.counts.grace_probes);
            match second {
                Ok(v) if v == first => {}
                Ok(v) => self.report(violation(
                    "wrong-value",
                    format!("kept({id}) returned {v:?}, not the grace value {first:?}"),
                )),
                Err(e) => self.report(violation(
                    "grace-lost",
                    format!(
                        "kept({id}) (ttl 1 s, grace 1 h, lock_ttl 1 s) failed ({e}) with its database down 2.5 s after its fill, instead of serving {first:?}"
                    ),
                )),
            }
        }
    }

    /// The Redis errors of `kept` and the calls that skipped Redis: the
    /// probe's round is inconclusive when they move.
    fn disturbances(&self) -> (u64, u64) {
        let errors = self
            .ctx
            .cache
            .function_stats()
            .get(KEPT_PATH)
            .map_or(0, |s| s.errors);
        (errors, self.ctx.cache.stats().skipped)
    }

    /// How many `invalidate_all` the driver attempted (one that failed may
    /// still have been applied).
    async fn all_attempts(&self) -> u64 {
        let mut db = self.ctx.db.clone();
        redis::cmd("GET")
            .arg(self.ctx.keys.all_attempts())
            .query_async::<Option<u64>>(&mut db)
            .await
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        eprintln!("usage: contract_worker CACHE_URL DB_URL NAMESPACE SEED INDEX TASKS");
        std::process::exit(2);
    }
    let (cache_url, db_url, ns) = (&args[0], &args[1], &args[2]);
    let seed: u64 = args[3].parse().expect("SEED");
    let index: usize = args[4].parse().expect("INDEX");
    let tasks: usize = args[5].parse().expect("TASKS");
    // The bodies' panics are expected: keep them off the output.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let expected = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|s| s.starts_with("contract:"));
        if !expected {
            default_hook(info);
        }
    }));
    let cache = Cache::builder()
        .redis(cache_url.as_str())
        .namespace(ns.as_str())
        .op_timeout(OP_TIMEOUT)
        .lock_ttl(LOCK_TTL)
        .circuit_breaker(BREAKER_FAILURES, OPEN_FOR)
        .local_cache(1 << 20)
        .build()
        .expect("cache");
    let db = redis::Client::open(db_url.as_str())
        .expect("DB_URL")
        .get_multiplexed_async_connection()
        .await
        .expect("the database server");
    let mut rng = Rng::new(seed ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let worker = Arc::new(Worker {
        ctx: Ctx {
            cache: cache.clone(),
            db: db.clone(),
            keys: Keys::new(ns),
            rng: Arc::new(Mutex::new(Rng::new(rng.next_u64()))),
            kept_down: Arc::new(AtomicBool::new(false)),
        },
        counts: Counts::default(),
        parked: AtomicUsize::new(0),
        doing: (0..tasks).map(|_| Mutex::default()).collect(),
        seen: Mutex::default(),
    });
    let mut handles: Vec<_> = (0..tasks)
        .map(|slot| tokio::spawn(worker.clone().task(slot, rng.next_u64())))
        .collect();
    handles.push(tokio::spawn(worker.clone().probe(index)));
    let monitor = tokio::spawn(worker.clone().monitor());
    let mut conn = db.clone();
    let _: () = redis::cmd("SET")
        .arg(worker.ctx.keys.ready(index))
        .arg(1)
        .query_async(&mut conn)
        .await
        .expect("SET ready");
    // Tells the driver when every task is parked in the quiet phase.
    let mut acknowledged = false;
    while !monitor.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let idle = worker.parked.load(Ordering::SeqCst) == tasks + 1;
        if idle != acknowledged {
            let _: redis::RedisResult<()> = redis::cmd("SET")
                .arg(worker.ctx.keys.idle(index))
                .arg(u8::from(idle))
                .query_async(&mut conn)
                .await;
            acknowledged = idle;
        }
    }
    // The run is over: every task ends within a call's hang limit.
    let ended = tokio::time::timeout(HANG + Duration::from_secs(10), async {
        for h in handles {
            h.await.expect("a task");
        }
    })
    .await;
    if ended.is_err() {
        let doing: Vec<String> = worker
            .doing
            .iter()
            .map(|d| d.lock().unwrap().clone())
            .filter(|d| !d.is_empty())
            .collect();
        worker.report(violation(
            "hang",
            format!("tasks still busy after the run: {doing:?}"),
        ));
    }
    monitor.await.expect("the monitor");
    let paths = cache.function_stats();
    for path in [PLAIN_PATH, GRACED_PATH] {
        if !paths.contains_key(path) {
            println!(
                "{}",
                violation(
                    "setup",
                    format!("no function {path}: {:?}", paths.keys().collect::<Vec<_>>())
                )
            );
        }
    }
    let (c, s) = (&worker.counts, cache.stats());
    let n = |a: &AtomicU64| a.load(Ordering::SeqCst);
    println!(
        "COUNTS calls={} ok={} errors={} panics={} cancelled={} checked_fresh={} clean={} max_clean_ms={} violations={} suppressed={} grace_probes={} grace_inconclusive={} max_recovery_ms={} hits={} local_hits={} grace_hits={} lease_waits={} skipped={} cache_errors={}",
        n(&c.calls),
        n(&c.ok),
        n(&c.errors),
        n(&c.panics),
        n(&c.cancelled),
        n(&c.checked_fresh),
        n(&c.clean),
        n(&c.max_clean_ms),
        n(&c.violations),
        n(&c.suppressed),
        n(&c.grace_probes),
        n(&c.grace_inconclusive),
        n(&c.max_recovery_ms),
        s.hits,
        s.local_hits,
        s.grace_hits,
        s.lease_waits,
        s.skipped,
        s.errors,
    );
    println!("PATHS {:?}", paths.keys().collect::<Vec<_>>());
    println!("BY-CHECK {:?}", worker.seen.lock().unwrap());
}
