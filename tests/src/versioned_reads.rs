//! The cross-process stale-read tests' shared parts: worker processes
//! read a cached function whose "database" is the Redis key
//! `{namespace}:db` (a version number), while the test writes new versions
//! and invalidates. Before each batch of calls a worker reads
//! `{namespace}:invalidated`, the last version whose invalidation the test
//! has completed (and, for a local tier, given time to propagate): a call
//! that returns an older version is a stale read.

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A worker's command line: `REDIS_URL NAMESPACE TASKS SECONDS`.
pub struct WorkerArgs {
    pub url: String,
    pub namespace: String,
    pub tasks: usize,
    pub seconds: u64,
}

impl WorkerArgs {
    /// Parses the command line, or exits with `usage`.
    pub fn parse(usage: &str) -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.len() < 4 {
            eprintln!("usage: {usage}");
            std::process::exit(2);
        }
        WorkerArgs {
            url: args[0].clone(),
            namespace: args[1].clone(),
            tasks: args[2].parse().expect("TASKS"),
            seconds: args[3].parse().expect("SECONDS"),
        }
    }
}

/// The body of the functions under test: the database's version, read
/// from Redis, then 0-20 ms of "query" (so that fills race invalidations).
pub async fn db_version(db: &redis::Client, namespace: &str) -> Result<u64, String> {
    let mut conn = db
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let version: u64 = redis::cmd("GET")
        .arg(format!("{namespace}:db"))
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(rand_below(20))).await;
    Ok(version)
}

/// A number below `n`, at random.
pub fn rand_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() % n
}

/// Runs `args.tasks` tasks that each, until `args.seconds` have passed,
/// read the invalidated version, make `batch` calls of `call` (which
/// returns the version it served), and pause up to `pause_ms`. Returns the
/// calls and the stale reads among them, which it also reports on stderr.
pub async fn read_and_check<C, F>(
    args: &WorkerArgs,
    batch: u32,
    pause_ms: u64,
    call: C,
) -> (u64, u64)
where
    C: Fn() -> F + Clone + Send + 'static,
    F: Future<Output = u64> + Send,
{
    let db = redis::Client::open(args.url.as_str()).expect("url");
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let handles: Vec<_> = (0..args.tasks)
        .map(|_| {
            let (db, call) = (db.clone(), call.clone());
            let invalidated_key = format!("{}:invalidated", args.namespace);
            tokio::spawn(async move {
                let mut conn = db.get_multiplexed_async_connection().await.expect("conn");
                let (mut calls, mut stale) = (0u64, 0u64);
                while Instant::now() < until {
                    let invalidated: u64 = redis::cmd("GET")
                        .arg(&invalidated_key)
                        .query_async(&mut conn)
                        .await
                        .expect("GET invalidated");
                    for _ in 0..batch {
                        let version = call().await;
                        calls += 1;
                        if version < invalidated {
                            stale += 1;
                            eprintln!(
                                "served version {version} after {invalidated} was invalidated"
                            );
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(rand_below(pause_ms))).await;
                }
                (calls, stale)
            })
        })
        .collect();
    let (mut calls, mut stale) = (0, 0);
    for h in handles {
        let (c, s) = h.await.expect("task");
        calls += c;
        stale += s;
    }
    (calls, stale)
}

/// Waits for workers that print `name=<n>` fields on one line, and sums
/// each of `fields` over them.
pub fn totals<const N: usize>(workers: Vec<Child>, fields: [&str; N]) -> [u64; N] {
    let mut sums = [0; N];
    for w in workers {
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success(), "a worker failed");
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        for (sum, name) in sums.iter_mut().zip(fields) {
            *sum += line
                .split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("worker output: {line}"));
        }
    }
    sums
}

/// Sets `{namespace}:{key}` (the database's version, or the last
/// invalidated one) on the test's server.
pub fn set(conn: &mut redis::Connection, namespace: &str, key: &str, version: u64) {
    let _: () = redis::cmd("SET")
        .arg(format!("{namespace}:{key}"))
        .arg(version)
        .query(conn)
        .unwrap();
}

/// Starts `processes` of the worker binary `bin`, each with `tasks` tasks
/// reading for `seconds`, their output piped for [`totals`].
pub fn spawn_workers(
    bin: &str,
    url: &str,
    namespace: &str,
    processes: usize,
    tasks: usize,
    seconds: u64,
) -> Vec<Child> {
    (0..processes)
        .map(|_| {
            Command::new(bin)
                .args([url, namespace, &tasks.to_string(), &seconds.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"))
        })
        .collect()
}
