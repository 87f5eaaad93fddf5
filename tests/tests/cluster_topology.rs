//! A Redis Cluster with replicas changing under traffic from several
//! processes: a manual failover, a killed primary, an online resharding
//! (slots moved key by key while their keys are used: `ASK`, then `MOVED`).
//! For each, while `cluster_worker` processes read `price(id)` (ids spread
//! over every shard) and the test writes the database and invalidates:
//! - no call fails (the cache fails open while a shard is down);
//! - no call returns a value older than an invalidation that returned
//!   before it started (the workers' cross-process check);
//! - caching resumes on every shard once the cluster has settled: for
//!   every id, calls served without running the body grow again (within
//!   a generous bounded wait; no timing is asserted).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cache_tests::versioned_reads;
use cache_tests::{RedisCluster, RedisServer, unique_namespace};

const PROCESSES: usize = 3;
const TASKS: usize = 4;
/// How long caching may take to resume on every shard before the test
/// fails: far above the few seconds it takes.
const RESUME_WITHIN: Duration = Duration::from_secs(30);

/// A run: the cluster, the database, the workers and the writer.
struct Run {
    cluster: RedisCluster,
    db: RedisServer,
    namespace: String,
    workers: Vec<Child>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<(u64, u64)>>,
}

impl Run {
    fn start() -> Run {
        let cluster = RedisCluster::start_replicated();
        let db = RedisServer::start();
        let namespace = unique_namespace("topology");
        let mut conn = db.conn();
        versioned_reads::set(&mut conn, &namespace, "db", 1);
        versioned_reads::set(&mut conn, &namespace, "invalidated", 0);
        let urls = cluster.urls().join(",");
        let workers = (0..PROCESSES)
            .map(|i| {
                Command::new(env!("CARGO_BIN_EXE_cluster_worker"))
                    .args([
                        &urls,
                        &db.url(),
                        &namespace,
                        &i.to_string(),
                        &TASKS.to_string(),
                    ])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("cluster_worker")
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = Some(std::thread::spawn({
            let (urls, db_url, namespace, stop) =
                (cluster.urls(), db.url(), namespace.clone(), stop.clone());
            move || write_and_invalidate(urls, db_url, namespace, stop)
        }));
        Run {
            cluster,
            db,
            namespace,
            workers,
            stop,
            writer,
        }
    }

    /// Calls served without the body, by id, summed over the workers.
    fn served(&self) -> Vec<u64> {
        let keys: Vec<String> = (0..PROCESSES)
            .map(|i| format!("{}:served:{i}", self.namespace))
            .collect();
        let reports: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query(&mut self.db.conn())
            .expect("MGET served");
        let mut sums: Vec<u64> = Vec::new();
        for report in reports.into_iter().flatten() {
            for (id, n) in report.split(',').enumerate() {
                if sums.len() <= id {
                    sums.resize(id + 1, 0);
                }
                sums[id] += n.parse::<u64>().expect("a count");
            }
        }
        sums
    }

    /// Waits until every id was served from the cache `more` times beyond
    /// `since`: caching works on every shard. Panics after `RESUME_WITHIN`.
    fn wait_for_caching(&self, since: &[u64], more: u64, what: &str) {
        let deadline = Instant::now() + RESUME_WITHIN;
        loop {
            let now = self.served();
            let behind: Vec<usize> = (0..now.len().max(since.len()))
                .filter(|&id| {
                    now.get(id).copied().unwrap_or(0) < since.get(id).copied().unwrap_or(0) + more
                })
                .collect();
            if !now.is_empty() && behind.is_empty() {
                eprintln!(
                    "{what}: caching on every shard after {} ms",
                    (Instant::now() + RESUME_WITHIN - deadline).as_millis()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: ids {behind:?} served from the cache fewer than {more} more times within {} s (served {now:?}, before {since:?})",
                RESUME_WITHIN.as_secs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the workers and the writer, and checks what they counted.
    fn finish(mut self, what: &str) {
        self.stop.store(true, Ordering::SeqCst);
        versioned_reads::set(&mut self.db.conn(), &self.namespace, "stop", 1);
        let (invalidations, refused) = self.writer.take().unwrap().join().expect("the writer");
        let workers = std::mem::take(&mut self.workers);
        let [calls, stale, failed, skipped] =
            versioned_reads::totals(workers, ["calls", "stale", "failed", "skipped"]);
        eprintln!(
            "{what}: calls={calls} stale={stale} failed={failed} skipped={skipped} invalidations={invalidations} refused={refused}"
        );
        assert!(calls > 0 && invalidations > 0, "{what}: nothing ran");
        assert_eq!(failed, 0, "{what}: calls failed");
        assert_eq!(stale, 0, "{what}: stale reads");
        drop(self.cluster);
    }
}

/// The test's writer: a new database version, `invalidate_tag("prices")`,
/// and once it returned, the version's mark for the workers; every 50 ms.
/// Returns the invalidations that returned, and those that failed (while a
/// shard was down).
fn write_and_invalidate(
    urls: Vec<String>,
    db_url: String,
    namespace: String,
    stop: Arc<AtomicBool>,
) -> (u64, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = cache_runtime::Cache::builder()
        .redis_cluster(urls)
        .namespace(namespace.as_str())
        .op_timeout(Duration::from_secs(1))
        .build()
        .expect("cache");
    let mut db = redis::Client::open(db_url)
        .unwrap()
        .get_connection()
        .unwrap();
    let (done, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut version = 1;
    while !stop.load(Ordering::SeqCst) {
        version += 1;
        versioned_reads::set(&mut db, &namespace, "db", version);
        match runtime.block_on(cache.invalidate_tag("prices")) {
            Ok(()) => {
                versioned_reads::set(&mut db, &namespace, "invalidated", version);
                done.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                refused.fetch_add(1, Ordering::SeqCst);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (done.into_inner(), refused.into_inner())
}

#[test]
fn a_manual_failover_under_traffic() {
    let run = Run::start();
    run.wait_for_caching(&[], 5, "before the failover");
    let primary = run.cluster.primaries()[0];
    let replica = run.cluster.replica_of(primary);
    run.cluster.failover(replica);
    let since = run.served();
    run.wait_for_caching(&since, 5, "after the failover");
    run.finish("manual failover");
}

#[test]
fn a_killed_primary_under_traffic() {
    let mut run = Run::start();
    run.wait_for_caching(&[], 5, "before the kill");
    let primary = run.cluster.primaries()[0];
    let replica = run.cluster.replica_of(primary);
    run.cluster.kill(primary);
    run.cluster.wait_until_primary(replica);
    let since = run.served();
    run.wait_for_caching(&since, 5, "after the promotion");
    run.finish("killed primary");
}

#[test]
fn an_online_resharding_under_traffic() {
    let run = Run::start();
    run.wait_for_caching(&[], 5, "before the resharding");
    let primaries = run.cluster.primaries();
    // `redis-cli --cluster reshard` moves the first slots of a node, which
    // our few keys seldom occupy: the slots that hold keys are moved too.
    run.cluster.reshard(primaries[0], primaries[1], 200);
    let moved = run.cluster.migrate_busy_slots(primaries[0], primaries[1]);
    assert!(!moved.is_empty(), "no slot with keys to move");
    let since = run.served();
    run.wait_for_caching(&since, 5, "after the resharding");
    run.finish("resharding");
}
