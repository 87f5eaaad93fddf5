//! The contract checker: a seeded, randomized run of several caches in
//! several processes against a database the test writes, with random
//! invalidations, body errors and panics, cancellations, Redis pauses,
//! kills and `CLIENT KILL`s, checking after every call what the crate
//! promises (the model and the worker's checks are in
//! `cache_tests::contract` and `src/bin/contract_worker.rs`).
//!
//! The driver (this test) alternates calm phases (writes, invalidations,
//! short `CLIENT PAUSE WRITE`s: Redis slow, never failing) and fault bursts
//! (SIGSTOP/SIGCONT, kill and restart on the same port, `CLIENT KILL` of
//! normal and pub/sub clients, the database down). The workers check each
//! call (value, freshness, latency), the breaker and the grace values; the
//! driver checks the leases, the TTLs of everything the cache wrote, and,
//! in process, the bounds of the memory backend and of the local tier.
//!
//! `CONTRACT_SEED` replays a run's schedule (the interleaving of processes
//! is the machine's); `CONTRACT_SECONDS` (default 40) sets how long it
//! drives. The seed is printed first, and with every failure.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached};
use cache_tests::contract::{
    self, BREAKER_FAILURES, Chaos, GRACED_PATH, Keys, LOCK_TTL, OP_TIMEOUT, OPEN_FOR, PLAIN_PATH,
    PROPAGATION, Rng, Val, all_scopes, now_ms,
};
use cache_tests::{RedisServer, unique_namespace};

/// Worker processes, and calling tasks in each.
const WORKERS: usize = 2;
const TASKS: usize = 4;
/// A calm phase: longer than a lease TTL, so that the latency bound
/// applies in its end, and the grace probe has room for a round.
const CALM: Duration = Duration::from_secs(7);
/// A burst of faults.
const BURST: Duration = Duration::from_secs(4);

fn set(conn: &mut redis::Connection, key: &str, value: impl redis::ToRedisArgs) {
    let _: () = redis::cmd("SET").arg(key).arg(value).query(conn).unwrap();
}

/// The driver's side of a run.
struct Driver {
    rng: Rng,
    keys: Keys,
    db: redis::Connection,
    server: RedisServer,
    cache: Cache,
    runtime: tokio::runtime::Runtime,
    version: u64,
    chaos: Chaos,
    violations: Vec<String>,
    /// Faults injected, by kind, and invalidations completed.
    faults: [u64; 5],
    invalidations: u64,
    client_pauses: u64,
}

impl Driver {
    /// Writes a new database version, then invalidates a random scope;
    /// once the invalidation returned (and had time to reach the local
    /// tiers), publishes its mark: from then on no call may return an
    /// older version under that scope.
    fn write_and_invalidate(&mut self) {
        self.version += 1;
        set(&mut self.db, &self.keys.db(), self.version);
        let scopes = all_scopes();
        let scope = scopes[self.rng.below(scopes.len() as u64) as usize].clone();
        if scope == "all" {
            let _: () = redis::cmd("INCR")
                .arg(self.keys.all_attempts())
                .query(&mut self.db)
                .unwrap();
        }
        let cache = self.cache.clone();
        let done = self.runtime.block_on(async {
            match scope.as_str() {
                "all" => cache.invalidate_all().await,
                "fn:plain" => cache.invalidate_function(PLAIN_PATH).await,
                "fn:graced" => cache.invalidate_function(GRACED_PATH).await,
                tag => cache.invalidate_tag(tag).await,
            }
        });
        if done.is_ok() {
            std::thread::sleep(PROPAGATION);
            set(&mut self.db, &self.keys.mark(&scope), self.version);
            self.invalidations += 1;
        }
    }

    fn publish_chaos(&mut self) {
        let rendered = self.chaos.render();
        set(&mut self.db, &self.keys.chaos(), rendered);
    }

    /// Writes, invalidations and short `CLIENT PAUSE WRITE`s (a slow
    /// Redis: a call cancelled then is cancelled during a round trip).
    fn calm(&mut self, length: Duration) {
        let until = Instant::now() + length;
        while Instant::now() < until {
            match self.rng.below(100) {
                0..60 => {
                    self.write_and_invalidate();
                    // The refills that follow meet a slow Redis.
                    if self.rng.chance(70) {
                        self.client_pause();
                    }
                }
                60..85 => self.client_pause(),
                _ => {
                    self.version += 1;
                    set(&mut self.db, &self.keys.db(), self.version);
                }
            }
            std::thread::sleep(self.rng.ms(50, 250));
        }
    }

    /// `CLIENT PAUSE WRITE` for 20-90 ms: the writes of a miss's round
    /// trips (versions, lease, store) wait, and a call cancelled then is
    /// cancelled during a round trip. Redis slow, not failing.
    fn client_pause(&mut self) {
        let ms = 20 + self.rng.below(71);
        let paused: redis::RedisResult<()> = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("WRITE")
            .query(&mut self.server.conn());
        paused.unwrap();
        self.client_pauses += 1;
    }

    /// A burst of faults; Redis is up and the database too when it ends.
    fn burst(&mut self, length: Duration) {
        self.chaos.epoch += 1;
        self.chaos.active = true;
        self.publish_chaos();
        let until = Instant::now() + length;
        while Instant::now() < until {
            let kind = self.rng.below(6) as usize;
            self.chaos.epoch += 1;
            self.publish_chaos();
            match kind {
                0 => {
                    self.server.pause();
                    std::thread::sleep(self.rng.ms(200, 1500));
                    self.server.resume();
                }
                1 | 2 => {
                    let kind = if kind == 1 { "normal" } else { "pubsub" };
                    let _: redis::RedisResult<u64> = redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("TYPE")
                        .arg(kind)
                        .query(&mut self.server.conn());
                }
                3 => {
                    self.server.kill();
                    std::thread::sleep(self.rng.ms(100, 800));
                    self.server.restart();
                }
                4 => {
                    set(&mut self.db, &self.keys.down(), 1);
                    std::thread::sleep(self.rng.ms(200, 800));
                    set(&mut self.db, &self.keys.down(), 0);
                }
                _ => self.write_and_invalidate(),
            }
            self.faults[kind.min(4)] += 1;
            std::thread::sleep(self.rng.ms(50, 400));
        }
        set(&mut self.db, &self.keys.down(), 0);
        self.chaos.active = false;
        self.chaos.last_end_ms = now_ms();
        self.publish_chaos();
    }

    /// Every lease key of the namespace with its PTTL.
    fn leases(&mut self) -> Vec<(String, i64)> {
        self.keys_matching(&format!("{}#lease:*", self.cache.namespace()))
    }

    fn keys_matching(&mut self, pattern: &str) -> Vec<(String, i64)> {
        let mut conn = self.server.conn();
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut conn).unwrap();
        keys.into_iter()
            .map(|k| {
                let pttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut conn).unwrap();
                (k, pttl)
            })
            .filter(|(_, pttl)| *pttl != -2)
            .collect()
    }

    /// With every worker idle: no lease survives its holder (by more than
    /// the second the quiet phase waited, let alone by a lease TTL), none
    /// has a PTTL above `lock_ttl`, and every key the cache wrote expires.
    fn check_leftovers(&mut self) {
        for (key, pttl) in self.leases() {
            if pttl < 0 || pttl as u128 > LOCK_TTL.as_millis() {
                self.violations.push(contract::violation(
                    "lease-ttl",
                    format!(
                        "{key} has PTTL {pttl} ms (lock_ttl {} ms)",
                        LOCK_TTL.as_millis()
                    ),
                ));
            }
            self.violations.push(contract::violation(
                "lease-orphan",
                format!(
                    "{key} is held (PTTL {pttl} ms) though every call ended at least 1 s ago with Redis healthy"
                ),
            ));
        }
        std::thread::sleep(LOCK_TTL + Duration::from_millis(500));
        for (key, pttl) in self.leases() {
            self.violations.push(contract::violation(
                "lease-outlived",
                format!("{key} outlived its holder by more than lock_ttl (PTTL {pttl} ms)"),
            ));
        }
        let ns = self.cache.namespace().to_string();
        for pattern in [format!("{ns}:*"), format!("{ns}#*")] {
            for (key, pttl) in self.keys_matching(&pattern) {
                if pttl == -1 {
                    self.violations.push(contract::violation(
                        "no-expiry",
                        format!("{key} has no TTL: it would stay forever"),
                    ));
                }
            }
        }
    }
}

/// The worker processes, killed if the test fails before they exit, and
/// the threads that read their output as it comes (a full pipe would
/// block them).
struct Workers(Vec<Child>, Vec<std::thread::JoinHandle<String>>);

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.0 {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// Starts the workers, their output piped.
fn spawn_workers(cache_url: &str, db_url: &str, ns: &str, seed: u64) -> Workers {
    let mut children: Vec<Child> = (0..WORKERS)
        .map(|w| {
            Command::new(env!("CARGO_BIN_EXE_contract_worker"))
                .args([
                    cache_url,
                    db_url,
                    ns,
                    &seed.to_string(),
                    &w.to_string(),
                    &TASKS.to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("cannot start contract_worker")
        })
        .collect();
    let readers = children
        .iter_mut()
        .map(|c| {
            let mut stdout = c.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut out = String::new();
                let _ = stdout.read_to_string(&mut out);
                out
            })
        })
        .collect();
    Workers(children, readers)
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The memory backend's and the local tier's own functions.
#[cached(cache = cache, skip(cache), ttl = 600, tags = ["mem"])]
async fn mem_value(cache: Cache, id: u64) -> Val {
    Val {
        f: "mem".into(),
        ty: "-".into(),
        arg: id,
        ver: 0,
    }
}

/// About 1 KiB encoded: the local tier's byte bound counts whole entries.
#[cached(cache = cache, skip(cache), ttl = 600)]
async fn padded(cache: Cache, id: u64) -> (Val, String) {
    let val = Val {
        f: "padded".into(),
        ty: "-".into(),
        arg: id,
        ver: 0,
    };
    (val, "x".repeat(1000))
}

/// Hits in a second pass over `ids`, each called once, after a first pass
/// that filled them all (each call made `per_id` times): a store holding
/// at most N entries answers at most N of them.
async fn second_pass_hits(
    cache: &Cache,
    ids: &[u64],
    per_id: usize,
    call: impl AsyncFn(u64),
    count: impl Fn(&Cache) -> u64,
) -> u64 {
    for &id in ids {
        for _ in 0..per_id {
            call(id).await;
        }
    }
    let before = count(cache);
    for &id in ids {
        call(id).await;
    }
    count(cache) - before
}

/// The in-process bounds: the memory backend holds at most
/// `memory_capacity` entries, the local tier about its bytes.
fn check_memory_bounds(driver: &mut Driver) {
    let mut ids: Vec<u64> = (0..600).collect();
    for i in (1..ids.len()).rev() {
        let j = driver.rng.below(i as u64 + 1) as usize;
        ids.swap(i, j);
    }
    let capacity = 64;
    let memory = Cache::builder()
        .memory()
        .namespace(unique_namespace("contract-mem"))
        .memory_capacity(capacity)
        .build()
        .unwrap();
    let hits = driver.runtime.block_on(second_pass_hits(
        &memory,
        &ids,
        1,
        async |id| {
            let v = mem_value(memory.clone(), id).await;
            assert_eq!((v.f.as_str(), v.arg), ("mem", id));
        },
        |c| c.stats().hits,
    ));
    println!("memory backend: {hits} hits in a second pass over 600 keys (capacity {capacity})");
    if hits > capacity {
        driver.violations.push(contract::violation(
            "memory-capacity",
            format!("{hits} of 600 entries still served with memory_capacity({capacity})"),
        ));
    }

    let max_bytes = 64 << 10;
    let local = Cache::builder()
        .redis(driver.server.url())
        .namespace(unique_namespace("contract-local"))
        .local_cache(max_bytes)
        .build()
        .unwrap();
    let local_hits = driver.runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !local.local_ready() && Instant::now() < deadline {
            padded(local.clone(), u64::MAX).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        second_pass_hits(
            &local,
            &ids[..300],
            2,
            async |id| {
                let (v, _) = padded(local.clone(), id).await;
                assert_eq!((v.f.as_str(), v.arg), ("padded", id));
            },
            |c| c.stats().local_hits,
        )
        .await
    });
    // Each entry is over 1 KiB: at most 64 fit.
    println!(
        "local tier: {local_hits} local hits in a second pass over 300 keys of 1 KiB ({max_bytes} bytes)"
    );
    if local_hits > max_bytes / 1000 {
        driver.violations.push(contract::violation(
            "local-bytes",
            format!("{local_hits} local hits of 1 KiB values with local_cache({max_bytes})"),
        ));
    }
}

#[test]
fn the_contract_holds_under_random_faults() {
    let seed: u64 = std::env::var("CONTRACT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() ^ u64::from(std::process::id()) << 32);
    let seconds: u64 = std::env::var("CONTRACT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    println!("contract seed: {seed} (CONTRACT_SEED={seed} replays it), {seconds} s");
    let started = Instant::now();

    let db_server = RedisServer::start();
    let server = RedisServer::start();
    let ns = unique_namespace("contract");
    let keys = Keys::new(&ns);
    let mut db = db_server.conn();
    set(&mut db, &keys.db(), 1);
    set(&mut db, &keys.phase(), "run");
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(ns.as_str())
        .op_timeout(OP_TIMEOUT)
        .lock_ttl(LOCK_TTL)
        .circuit_breaker(BREAKER_FAILURES, OPEN_FOR)
        .build()
        .unwrap();
    let mut workers = spawn_workers(&server.url(), &db_server.url(), &ns, seed);
    wait_for("the workers start", 60, || {
        (0..WORKERS).all(|w| {
            redis::cmd("GET")
                .arg(keys.ready(w))
                .query::<Option<u8>>(&mut db)
                .unwrap()
                .is_some()
        })
    });
    let mut driver = Driver {
        rng: Rng::new(seed),
        keys: keys.clone(),
        db,
        server,
        cache,
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap(),
        version: 1,
        chaos: Chaos::default(),
        violations: Vec::new(),
        faults: [0; 5],
        invalidations: 0,
        client_pauses: 0,
    };
    driver.publish_chaos();

    let driving = Instant::now();
    driver.calm(CALM);
    while driving.elapsed() + BURST + CALM <= Duration::from_secs(seconds) {
        driver.burst(BURST);
        driver.calm(CALM);
    }

    // Quiet: every call ended; then the leases and TTLs.
    set(&mut driver.db, &keys.phase(), "quiet");
    // A call that hangs is cancelled by its worker after 30 s, and
    // reported.
    let idle_by = Instant::now() + Duration::from_secs(90);
    let idle = loop {
        let idle = (0..WORKERS).all(|w| {
            redis::cmd("GET")
                .arg(keys.idle(w))
                .query::<Option<u8>>(&mut driver.db)
                .unwrap()
                == Some(1)
        });
        if idle || Instant::now() > idle_by {
            break idle;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if idle {
        std::thread::sleep(Duration::from_secs(1));
        driver.check_leftovers();
    } else {
        driver.violations.push(contract::violation(
            "hang",
            "the workers did not go idle within 90 s",
        ));
    }
    set(&mut driver.db, &keys.phase(), "stop");

    let mut violations = std::mem::take(&mut driver.violations);
    let mut totals = std::collections::BTreeMap::<String, u64>::new();
    let readers = std::mem::take(&mut workers.1);
    for (w, (worker, reader)) in workers.0.iter_mut().zip(readers).enumerate() {
        let out = reader.join().unwrap();
        let status = worker.wait().unwrap();
        if !status.success() {
            violations.push(contract::violation(
                "worker",
                format!("worker {w} exited with {status}"),
            ));
        }
        for line in out.lines() {
            if line.starts_with("VIOLATION") {
                violations.push(format!("{line} (worker {w})"));
            } else if let Some(by_check) = line.strip_prefix("BY-CHECK ") {
                if by_check != "{}" {
                    violations.push(format!(
                        "VIOLATION counts by check (worker {w}, all printed or not): {by_check}"
                    ));
                }
            } else if let Some(counts) = line.strip_prefix("COUNTS ") {
                println!("worker {w}: {counts}");
                for field in counts.split_whitespace() {
                    let (name, _) = field.split_once('=').unwrap();
                    let n = contract::count(counts, name).unwrap_or(0);
                    let total = totals.entry(name.to_string()).or_default();
                    if name.starts_with("max_") {
                        *total = (*total).max(n);
                    } else {
                        *total += n;
                    }
                }
            } else {
                println!("worker {w}: {line}");
            }
        }
    }
    check_memory_bounds(&mut driver);
    violations.append(&mut driver.violations);

    let [pauses, normal_kills, pubsub_kills, restarts, db_down] = driver.faults;
    println!(
        "driver: {} invalidations, {} CLIENT PAUSE WRITE; faults: {pauses} SIGSTOP, {normal_kills} CLIENT KILL normal, {pubsub_kills} CLIENT KILL pubsub, {restarts} kill+restart, {db_down} database down",
        driver.invalidations, driver.client_pauses
    );
    println!("totals: {totals:?}");
    println!("took {:.1} s", started.elapsed().as_secs_f64());
    for v in &violations {
        println!("{v}");
    }
    let total = |name: &str| totals.get(name).copied().unwrap_or(0);
    assert!(
        violations.is_empty(),
        "{} violations of the contract, seed {seed} (CONTRACT_SEED={seed} replays the schedule):\n{}",
        violations.len(),
        violations.join("\n")
    );
    // The run exercised what it checks (counts, not times).
    assert!(
        total("checked_fresh") > 0 && total("clean") > 0 && total("cancelled") > 0,
        "seed {seed}: too little was checked: {totals:?}"
    );
    assert!(
        total("grace_probes") > 0,
        "seed {seed}: no grace probe ran undisturbed: {totals:?}"
    );
}
