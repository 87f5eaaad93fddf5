//! The backplane on a Redis Cluster goes by sharded pub/sub (`SPUBLISH`,
//! `SSUBSCRIBE`): an invalidation is one message within one shard, not
//! one to every node, and it still reaches every local tier, in another
//! process too, after a failover and after its channel's slot moved to
//! another shard. Where the server has no sharded pub/sub (a single
//! server, or a cluster whose `SPUBLISH` / `SSUBSCRIBE` are refused as
//! unknown commands), the backplane is classic pub/sub, as before.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::{RedisCluster, RedisServer, no_hang, unique_namespace};

#[derive(Clone, Default)]
struct Db {
    version: Arc<AtomicU64>,
}

#[cached(cache = cache, skip(cache, db), ttl = 3600, tags = ["prices"])]
async fn price(cache: Cache, db: Db, id: u64) -> u64 {
    id * 1000 + db.version.load(Ordering::SeqCst)
}

fn cluster_cache(urls: &[String], namespace: &str, local: bool) -> Cache {
    let builder = Cache::builder()
        .redis_cluster(urls.to_vec())
        .namespace(namespace)
        .op_timeout(cache_tests::TEST_OP_TIMEOUT);
    match local {
        true => builder.local_cache(1 << 20).build().unwrap(),
        false => builder.build().unwrap(),
    }
}

/// Waits until the cache's local tier is confirmed (its subscriptions
/// start with its first call).
async fn ready(cache: &Cache) {
    no_hang(20, "the backplane subscriptions", async {
        while !cache.local_ready() {
            let _ = price(cache.clone(), Db::default(), 0).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Waits until `reader` serves `expected` for id 1 (the invalidation's
/// message applied), then checks that it keeps serving it.
async fn serves_after_the_message(reader: &Cache, db: &Db, expected: u64) {
    no_hang(10, "the invalidation's message", async {
        while price(reader.clone(), db.clone(), 1).await != expected {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    for _ in 0..5 {
        assert_eq!(price(reader.clone(), db.clone(), 1).await, expected);
    }
}

/// `CLUSTER KEYSLOT` of `key`, asked of node 0.
fn keyslot(cluster: &RedisCluster, key: &str) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut cluster.nodes()[0].conn())
        .unwrap()
}

/// The shard channel that carries the invalidations of `key`: the
/// backplane's name with the first hash tag `sN` in the slot group (of
/// 1024) of `key`'s slot, as the server computes slots.
fn shard_channel_of(cluster: &RedisCluster, channel: &str, key: &str) -> String {
    let group = keyslot(cluster, key) / 1024;
    (0..)
        .map(|n| format!("{channel}{{s{n}}}"))
        .find(|c| keyslot(cluster, c) / 1024 == group)
        .unwrap()
}

/// Subscribers of `channel` on node `i`: sharded (`PUBSUB SHARDNUMSUB`)
/// or classic (`PUBSUB NUMSUB`).
fn subscribers(cluster: &RedisCluster, i: usize, sharded: bool, channel: &str) -> u64 {
    let sub = if sharded { "SHARDNUMSUB" } else { "NUMSUB" };
    let (_, n): (String, u64) = redis::cmd("PUBSUB")
        .arg(sub)
        .arg(channel)
        .query(&mut cluster.nodes()[i].conn())
        .unwrap();
    n
}

/// The cluster bus's pub/sub messages (sent, summed over the nodes):
/// classic, sharded.
fn bus(cluster: &RedisCluster) -> (u64, u64) {
    (
        cluster.bus_messages("cluster_stats_messages_publish_sent"),
        cluster.bus_messages("cluster_stats_messages_publishshard_sent"),
    )
}

/// The bus's messages for `invalidations` invalidations by `writer`, once
/// they stopped growing: classic, sharded.
async fn bus_messages_of(cluster: &RedisCluster, writer: &Cache, invalidations: u64) -> (u64, u64) {
    let before = bus(cluster);
    for _ in 0..invalidations {
        writer.invalidate_tag("prices").await.unwrap();
    }
    // The bus forwards asynchronously: counted once two reads 200 ms
    // apart agree, and at least one per invalidation arrived.
    let mut last = bus(cluster);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = bus(cluster);
        let sent = (now.0 - before.0) + (now.1 - before.1);
        if now == last && sent >= invalidations {
            return (now.0 - before.0, now.1 - before.1);
        }
        last = now;
    }
}

const INVALIDATIONS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_is_one_message_within_one_shard() {
    let cluster = RedisCluster::start_replicated();
    let namespace = unique_namespace("sharded-count");
    let urls = cluster.urls();
    let readers = [
        cluster_cache(&urls, &namespace, true),
        cluster_cache(&urls, &namespace, true),
    ];
    let writer = cluster_cache(&urls, &namespace, false);
    for reader in &readers {
        ready(reader).await;
    }
    // Each reader subscribes to the shard channel of the invalidated key
    // once, at the primary that owns its slot.
    let tag_key = format!("{namespace}#tag:prices");
    let channel = shard_channel_of(&cluster, &format!("{namespace}#invalidations"), &tag_key);
    let owner = cluster.slot_owner(keyslot(&cluster, &channel));
    assert_eq!(subscribers(&cluster, owner, true, &channel), 2);
    let classic = format!("{namespace}#invalidations");
    for i in 0..cluster.nodes().len() {
        assert_eq!(subscribers(&cluster, i, false, &classic), 0);
    }
    let db = Db::default();
    for reader in &readers {
        serves_after_the_message(reader, &db, 1000).await;
    }
    db.version.store(1, Ordering::SeqCst);

    let (classic_sent, sharded_sent) = bus_messages_of(&cluster, &writer, INVALIDATIONS).await;
    println!(
        "sharded pub/sub, 6 nodes: {:.2} bus messages per invalidation (classic {classic_sent}, sharded {sharded_sent})",
        (classic_sent + sharded_sent) as f64 / INVALIDATIONS as f64
    );
    // One `SPUBLISH` each, forwarded by its primary to its one replica
    // only; no classic `PUBLISH` (which 6 nodes would forward 5 times).
    assert_eq!((classic_sent, sharded_sent), (0, INVALIDATIONS));
    let calls = cluster.nodes()[owner].command_calls();
    let spublish = calls
        .iter()
        .find(|(c, _)| c == "spublish")
        .map_or(0, |(_, n)| *n);
    assert!(spublish >= INVALIDATIONS, "{calls:?}");
    // Both heard them.
    for reader in &readers {
        serves_after_the_message(reader, &db, 1001).await;
        assert!(reader.local_ready());
    }
    assert!(readers.iter().all(|r| r.stats().local_hits > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_sharded_pub_sub_uses_classic_pub_sub() {
    // `SPUBLISH` and `SSUBSCRIBE` refused as unknown commands, as before
    // Redis 7.
    let cluster = RedisCluster::start_replicated_with(&[
        "--rename-command",
        "SPUBLISH",
        "",
        "--rename-command",
        "SSUBSCRIBE",
        "",
    ]);
    let namespace = unique_namespace("sharded-fallback");
    let urls = cluster.urls();
    let reader = cluster_cache(&urls, &namespace, true);
    let writer = cluster_cache(&urls, &namespace, false);
    ready(&reader).await;
    let classic = format!("{namespace}#invalidations");
    let subscribed: u64 = (0..cluster.nodes().len())
        .map(|i| subscribers(&cluster, i, false, &classic))
        .sum();
    assert_eq!(subscribed, 1);
    let db = Db::default();
    serves_after_the_message(&reader, &db, 1000).await;
    db.version.store(1, Ordering::SeqCst);
    let (classic_sent, sharded_sent) = bus_messages_of(&cluster, &writer, INVALIDATIONS).await;
    println!(
        "classic pub/sub, 6 nodes: {:.2} bus messages per invalidation (classic {classic_sent}, sharded {sharded_sent})",
        (classic_sent + sharded_sent) as f64 / INVALIDATIONS as f64
    );
    // Every classic `PUBLISH` goes to the 5 other nodes.
    assert_eq!(
        (classic_sent, sharded_sent),
        (5 * INVALIDATIONS, 0),
        "classic pub/sub on a cluster"
    );
    serves_after_the_message(&reader, &db, 1001).await;
    assert!(reader.stats().local_hits > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_uses_classic_pub_sub() {
    let server = RedisServer::start();
    let namespace = unique_namespace("sharded-single");
    let build = |local: bool| {
        let builder = Cache::builder()
            .redis(server.url())
            .namespace(namespace.as_str())
            .op_timeout(cache_tests::TEST_OP_TIMEOUT);
        match local {
            true => builder.local_cache(1 << 20).build().unwrap(),
            false => builder.build().unwrap(),
        }
    };
    let (reader, writer) = (build(true), build(false));
    ready(&reader).await;
    let (_, n): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(format!("{namespace}#invalidations"))
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(n, 1);
    let db = Db::default();
    serves_after_the_message(&reader, &db, 1000).await;
    db.version.store(1, Ordering::SeqCst);
    writer.invalidate_tag("prices").await.unwrap();
    serves_after_the_message(&reader, &db, 1001).await;
    let calls = server.command_calls();
    assert!(
        calls.iter().any(|(c, n)| c == "publish" && *n >= 1),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|(c, _)| c == "spublish" || c == "ssubscribe"),
        "{calls:?}"
    );
}

/// A `sharded_worker` process, asked to read on its standard input.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// One answer of the worker.
struct Read {
    versions: Vec<String>,
    local_hits: u64,
    ready: bool,
}

impl Worker {
    fn start(cluster: &RedisCluster, db: &RedisServer, namespace: &str) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sharded_worker"))
            .args([&cluster.urls().join(","), &db.url(), namespace])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sharded_worker");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Worker {
            child,
            stdin,
            stdout,
        }
    }

    fn read(&mut self) -> Read {
        writeln!(self.stdin, "read").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                .to_owned()
        };
        Read {
            versions: field("versions").split(',').map(str::to_owned).collect(),
            local_hits: field("local_hits").parse().unwrap(),
            ready: field("ready") == "1",
        }
    }

    /// Reads until every id's value is from `version` and the local tier
    /// is confirmed and answering; then checks that the next reads stay
    /// there, from the local tier.
    fn serves(&mut self, version: u64, what: &str) {
        let want = version.to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut last = self.read();
        loop {
            let now = self.read();
            let settled = now.ready
                && now.versions.iter().all(|v| *v == want)
                && now.local_hits > last.local_hits;
            if settled {
                last = now;
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: the other process still serves {:?} (ready: {}), not {want}",
                now.versions,
                now.ready
            );
            last = now;
            std::thread::sleep(Duration::from_millis(20));
        }
        for _ in 0..3 {
            let now = self.read();
            assert!(
                now.versions.iter().all(|v| *v == want),
                "{what}: {:?}",
                now.versions
            );
            assert!(
                now.local_hits > last.local_hits,
                "{what}: served from Redis"
            );
            last = now;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Invalidations still reach a local tier in another process after a
/// failover of the shard that carries them (the demoted primary ends the
/// subscription with `SUNSUBSCRIBE`), after their shard channel's
/// slot moved to another shard (the old shard ends the subscription with
/// `SUNSUBSCRIBE`), and after the primary that carries them was killed: the process never keeps serving a
/// value from before an invalidation (its local tier keeps values up to
/// an hour).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_reach_another_process_after_failovers_and_a_resharding() {
    let mut cluster = RedisCluster::start_replicated();
    let db = RedisServer::start();
    let namespace = unique_namespace("sharded-topology");
    let mut db_conn = db.conn();
    let set_db = |conn: &mut redis::Connection, v: u64| {
        cache_tests::versioned_reads::set(conn, &namespace, "db", v);
    };
    set_db(&mut db_conn, 1);
    let writer = cluster_cache(&cluster.urls(), &namespace, false);
    let mut worker = Worker::start(&cluster, &db, &namespace);
    worker.serves(1, "at the start");

    let tag_key = format!("{namespace}#tag:prices");
    let channel = shard_channel_of(&cluster, &format!("{namespace}#invalidations"), &tag_key);
    let slot = keyslot(&cluster, &channel);

    // A failover of the primary that carries the invalidations.
    let primary = cluster.slot_owner(slot);
    cluster.failover(cluster.replica_of(primary));
    set_db(&mut db_conn, 2);
    writer.invalidate_tag("prices").await.unwrap();
    worker.serves(2, "after a failover");

    // The channel's slot moves to another shard.
    let from = cluster.slot_owner(slot);
    let to = cluster
        .primaries()
        .into_iter()
        .find(|&p| p != from)
        .unwrap();
    cluster.move_slot_to(slot, to);
    set_db(&mut db_conn, 3);
    writer.invalidate_tag("prices").await.unwrap();
    worker.serves(3, "after the channel's slot moved");
    assert_eq!(subscribers(&cluster, to, true, &channel), 1);

    // The primary that carries them now is killed: its replica takes
    // over. The writer's first tries may meet the dead node.
    let primary = cluster.slot_owner(slot);
    let replica = cluster.replica_of(primary);
    cluster.kill(primary);
    cluster.wait_until_primary(replica);
    set_db(&mut db_conn, 4);
    no_hang(30, "an invalidation after a kill", async {
        while writer.invalidate_tag("prices").await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    worker.serves(4, "after a killed primary");

    // And once more, with nothing changing.
    set_db(&mut db_conn, 5);
    writer.invalidate_tag("prices").await.unwrap();
    worker.serves(5, "at the end");
}

/// One URL of a cluster node (a managed cluster's endpoint): the node is
/// asked whether it is a cluster's, and the backplane goes by sharded
/// pub/sub, as the backend's announcements do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_url_of_a_cluster_node_subscribes_to_every_shard() {
    let cluster = RedisCluster::start();
    let namespace = unique_namespace("sharded-one-url");
    let reader = Cache::builder()
        .redis(cluster.urls()[0].as_str())
        .namespace(namespace.as_str())
        .op_timeout(cache_tests::TEST_OP_TIMEOUT)
        .local_cache(1 << 20)
        .build()
        .unwrap();
    let writer = cluster_cache(&cluster.urls(), &namespace, false);
    ready(&reader).await;
    let tag_key = format!("{namespace}#tag:prices");
    let channel = shard_channel_of(&cluster, &format!("{namespace}#invalidations"), &tag_key);
    let owner = cluster.slot_owner(keyslot(&cluster, &channel));
    assert_eq!(subscribers(&cluster, owner, true, &channel), 1);
    let db = Db::default();
    for round in 0..3u64 {
        db.version.store(round, Ordering::SeqCst);
        writer.invalidate_tag("prices").await.unwrap();
        serves_after_the_message(&reader, &db, 1000 + round).await;
    }
    assert!(reader.stats().local_hits > 0);
}
