//! Test support: private `redis-server` processes on free loopback ports.
//!
//! Tests that only read and write use [`shared_url`]: `REDIS_URL` when set,
//! otherwise one private server started for the whole test binary. Tests
//! that break Redis (kill, pause, flush, reconfigure) start their own
//! [`RedisServer`], never touching a server anyone else uses.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A `redis-server` owned by one test; stopped (and its files removed) on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

/// The server binary the harness starts: `CACHE_TESTS_SERVER` when set
/// (a `valkey-server`, say, to run the suite against Valkey), otherwise
/// `redis-server`.
pub fn server_binary() -> String {
    std::env::var("CACHE_TESTS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

/// A loopback port that nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

impl RedisServer {
    /// Starts a server on a free port, with `extra` arguments
    /// (e.g. `["--maxmemory", "2mb"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("cache-tests-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create the server's directory");
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        server
    }

    /// Starts a plain server on a free port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    fn spawn(&mut self) {
        let child = Command::new(server_binary())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server: is it installed? (apt-get install redis-server)");
        watch_over(child.id());
        self.child = Some(child);
        wait_until_up(self.port);
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (connections are refused until [`restart`](Self::restart)).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Freezes the server (SIGSTOP): connections hang instead of failing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// The URL of a new ACL user `name` (password `pw`) with every key and
    /// command but no channel rights (Redis 7's default for new users).
    pub fn user_without_channel_rights(&self, name: &str) -> String {
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", name, "on", ">pw", "~*", "resetchannels", "+@all"])
            .query(&mut self.conn())
            .expect("ACL SETUSER");
        self.url()
            .replacen("redis://", &format!("redis://{name}:pw@"), 1)
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("server is not running").id();
        let status = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill {sig} {pid} failed");
    }

    /// A synchronous connection for assertions and set-up.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("cannot connect to the test server")
    }

    /// `INFO commandstats` as (command, calls) pairs, lowercase names.
    pub fn command_calls(&self) -> Vec<(String, u64)> {
        command_calls(&mut self.conn())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server must be thawed before it can die.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server's name and version from `INFO server`: `valkey 9.1.2` or
/// `redis 7.0.15`. Valkey reports a frozen `redis_version:7.2.4` (for
/// clients that check it), so its identity is read from `server_name` and
/// `valkey_version`, and `redis_version` only where they are absent.
pub fn server_identity(conn: &mut redis::Connection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(conn)
        .unwrap_or_default();
    identity(&info)
}

/// [`server_identity`] from the text of `INFO server`.
fn identity(info: &str) -> String {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    };
    match (field("server_name"), field("valkey_version")) {
        (name, Some(version)) => format!("{} {version}", name.unwrap_or("valkey".into())),
        (name, None) => format!(
            "{} {}",
            name.unwrap_or("redis".into()),
            field("redis_version").unwrap_or_else(|| "unknown".into())
        ),
    }
}

/// Calls per command from `INFO commandstats`.
pub fn command_calls(conn: &mut redis::Connection) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(conn)
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, fields) = rest.split_once(':')?;
            let calls = fields.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect()
}

/// Total calls of every command except those in `ignore`.
pub fn total_calls(conn: &mut redis::Connection, ignore: &[&str]) -> u64 {
    command_calls(conn)
        .into_iter()
        .filter(|(c, _)| !ignore.contains(&c.as_str()))
        .map(|(_, n)| n)
        .sum()
}

/// Kills `server` once this test process is gone, however it ended (a
/// server kept in a `static` is never dropped, and a killed test runs no
/// destructor): no `redis-server` outlives the tests that started it.
fn watch_over(server: u32) {
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 {server} 2>/dev/null",
        std::process::id()
    );
    let spawned = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!("cannot start a watchdog for redis-server {server}: {e}");
    }
}

fn wait_until_up(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
            && let Ok(mut c) = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .and_then(|c| c.get_connection())
            && redis::cmd("PING").query::<String>(&mut c).is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} did not come up within 10 s");
}

/// The URL of a Redis that tests may read and write (but not break):
/// `REDIS_URL` when set, else a private server shared by this test binary.
pub fn shared_url() -> String {
    static SHARED: OnceLock<(String, Option<RedisServer>)> = OnceLock::new();
    SHARED
        .get_or_init(|| match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => (url, None),
            _ => {
                let server = RedisServer::start();
                (server.url(), Some(server))
            }
        })
        .0
        .clone()
}

/// A namespace no other test (or earlier run) uses, so tests sharing a
/// server never see each other's keys.
pub fn unique_namespace(prefix: &str) -> String {
    format!("{prefix}-{}-{:016x}", std::process::id(), rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// A cache on the Redis at `url`, under `namespace`, with default settings.
pub fn redis_cache(url: &str, namespace: &str) -> cache_runtime::Cache {
    cache_runtime::Cache::builder()
        .redis(url)
        .namespace(namespace)
        .op_timeout(TEST_OP_TIMEOUT)
        .build()
        .expect("redis cache")
}

/// The op timeout of the caches of tests that are not about timeouts. The
/// library's default (100 ms) is a production figure; on a loaded 2-core
/// machine (two CPU burners beside the suite) a round trip to a test's
/// Redis can take longer, and the call then fails open: right, but not
/// what those tests check. Tests about timeouts set their own.
pub const TEST_OP_TIMEOUT: Duration = Duration::from_secs(2);

/// One cache on each backend, each in a namespace of its own: the
/// in-process one, and Redis at [`shared_url`]. Behaviour tests loop over
/// both, so both backends keep the same semantics.
pub fn backends(prefix: &str) -> Vec<cache_runtime::Cache> {
    let memory = cache_runtime::Cache::builder()
        .memory()
        .namespace(unique_namespace(prefix))
        .build()
        .expect("memory cache");
    vec![
        memory,
        redis_cache(&shared_url(), &unique_namespace(prefix)),
    ]
}

/// Awaits `f`, failing the test if it takes longer than `secs`: a guard
/// against hangs (a waiter never woken, a call stuck in reconnection),
/// far above any latency the test expects, never a performance assertion.
pub async fn no_hang<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s"))
}

/// A Redis Cluster on free loopback ports, made with `redis-cli --cluster
/// create`: 3 nodes without replicas ([`start`](Self::start)), 6 with a
/// replica per primary ([`start_replicated`](Self::start_replicated)), or
/// one holding every slot ([`start_single`](Self::start_single)). Stopped
/// on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes and joins them into a cluster.
    pub fn start() -> Self {
        Self::start_with(|_| Vec::new())
    }

    /// Starts three nodes, each with the arguments `extra` gives for it
    /// (by its index), and joins them into a cluster over their plain
    /// ports.
    pub fn start_with(extra: impl Fn(usize) -> Vec<String>) -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|i| {
                let mut args: Vec<String> =
                    ["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]
                        .map(String::from)
                        .to_vec();
                args.extend(extra(i));
                RedisServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("cannot run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.all_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cluster did not reach cluster_state:ok within 20 s");
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Six nodes: three primaries with one replica each, and a
    /// `cluster-node-timeout` of 1 s, so that a primary that dies is
    /// replaced within seconds (as managed services run a cluster).
    pub fn start_replicated() -> Self {
        Self::start_replicated_with(&[])
    }

    /// [`start_replicated`](Self::start_replicated), each node with the
    /// arguments `extra` too.
    pub fn start_replicated_with(extra: &[&str]) -> Self {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "1000",
                    // A replica takes over however long it was cut off.
                    "--cluster-replica-validity-factor",
                    "0",
                ];
                args.extend_from_slice(extra);
                RedisServer::start_with(&args)
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("cannot run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster.wait_until_replicated();
        cluster
    }

    /// A one-node cluster holding all 16384 slots: a cluster-mode endpoint
    /// behind one address.
    pub fn start_single() -> Self {
        let node = RedisServer::start_with(&["--cluster-enabled", "yes"]);
        let mut conn = node.conn();
        for chunk in (0..16384u16).collect::<Vec<_>>().chunks(4096) {
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTS")
                .arg(chunk)
                .query(&mut conn)
                .expect("CLUSTER ADDSLOTS");
        }
        let cluster = RedisCluster { nodes: vec![node] };
        cluster.wait_until_ok();
        cluster
    }

    fn live(&self) -> impl Iterator<Item = (usize, &RedisServer)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.child.is_some())
    }

    /// Waits until every replica has a primary it is in sync with.
    fn wait_until_replicated(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let synced = self.live().all(|(i, _)| {
                let info = self.info(i, "replication");
                !info.contains("role:slave") || info.contains("master_link_status:up")
            });
            if synced {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("replicas did not sync within 30 s");
    }

    /// `INFO section` of node `i`.
    pub fn info(&self, i: usize, section: &str) -> String {
        redis::cmd("INFO")
            .arg(section)
            .query(&mut self.nodes[i].conn())
            .unwrap_or_default()
    }

    /// Node `i`'s cluster id.
    pub fn node_id(&self, i: usize) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.nodes[i].conn())
            .expect("CLUSTER MYID")
    }

    /// Whether node `i` is a primary now.
    pub fn is_primary(&self, i: usize) -> bool {
        self.info(i, "replication").contains("role:master")
    }

    /// The live primaries that hold slots, by index.
    pub fn primaries(&self) -> Vec<usize> {
        self.live()
            .map(|(i, _)| i)
            .filter(|&i| self.is_primary(i))
            .collect()
    }

    /// The replica of primary `primary`, by index.
    pub fn replica_of(&self, primary: usize) -> usize {
        let id = self.node_id(primary);
        self.live()
            .map(|(i, _)| i)
            .find(|&i| {
                i != primary
                    && self
                        .info(i, "replication")
                        .contains(&format!("master_port:{}", self.nodes[primary].port))
            })
            .unwrap_or_else(|| panic!("no replica of node {primary} ({id})"))
    }

    /// A manual failover: replica `replica` takes over from its primary
    /// (`CLUSTER FAILOVER`, no write lost); returns once it is the primary
    /// and the cluster is ok.
    pub fn failover(&self, replica: usize) {
        let _: () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut self.nodes[replica].conn())
            .expect("CLUSTER FAILOVER");
        self.wait_until_primary(replica);
    }

    /// Kills node `i` (SIGKILL): its replica is promoted by the cluster
    /// after `cluster-node-timeout`.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Waits until node `i` is a primary and every live node sees the
    /// cluster ok.
    pub fn wait_until_primary(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.is_primary(i) && self.all_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("node {i} was not promoted within 30 s");
    }

    fn all_ok(&self) -> bool {
        self.live().all(|(_, n)| {
            let info: redis::RedisResult<String> =
                redis::cmd("CLUSTER").arg("INFO").query(&mut n.conn());
            info.is_ok_and(|i| i.contains("cluster_state:ok"))
        })
    }

    /// Moves every slot of primary `from` that holds keys to primary `to`,
    /// online and key by key as `redis-cli --cluster reshard` does
    /// (`SETSLOT IMPORTING` / `MIGRATING`, `MIGRATE` in batches, `SETSLOT
    /// NODE`): clients that use those keys meet `ASK` while a slot moves
    /// and `MOVED` after. Returns the slots moved.
    pub fn migrate_busy_slots(&self, from: usize, to: usize) -> Vec<u16> {
        let mut src = self.nodes[from].conn();
        let mut slots = std::collections::BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(&mut src)
                .expect("SCAN");
            for key in keys {
                let slot: u16 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(&key)
                    .query(&mut src)
                    .expect("CLUSTER KEYSLOT");
                slots.insert(slot);
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for &slot in &slots {
            self.move_slot(slot, from, to);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.all_ok() {
            assert!(Instant::now() < deadline, "cluster not ok after migrating");
            std::thread::sleep(Duration::from_millis(20));
        }
        slots.into_iter().collect()
    }

    /// Moves `slot` from primary `from` to primary `to`, keys and all
    /// (`SETSLOT IMPORTING` / `MIGRATING`, `MIGRATE`, `SETSLOT NODE`), and
    /// tells every other primary; does not wait for the cluster to settle.
    fn move_slot(&self, slot: u16, from: usize, to: usize) {
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let mut src = self.nodes[from].conn();
        let mut dst = self.nodes[to].conn();
        let cmd = |conn: &mut redis::Connection, args: &[&str]| {
            let _: () = redis::cmd("CLUSTER")
                .arg(args)
                .query(conn)
                .unwrap_or_else(|e| panic!("CLUSTER {args:?}: {e}"));
        };
        let s = slot.to_string();
        cmd(&mut dst, &["SETSLOT", &s, "IMPORTING", &from_id]);
        cmd(&mut src, &["SETSLOT", &s, "MIGRATING", &to_id]);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(10)
                .query(&mut src)
                .expect("GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let _: redis::Value = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("REPLACE")
                .arg("KEYS")
                .arg(&keys)
                .query(&mut src)
                .expect("MIGRATE");
        }
        cmd(&mut dst, &["SETSLOT", &s, "NODE", &to_id]);
        cmd(&mut src, &["SETSLOT", &s, "NODE", &to_id]);
        for other in self.primaries() {
            if other != from && other != to {
                cmd(
                    &mut self.nodes[other].conn(),
                    &["SETSLOT", &s, "NODE", &to_id],
                );
            }
        }
    }

    /// Moves `slot` to primary `to` from the primary that holds it, and
    /// waits until the cluster is ok.
    pub fn move_slot_to(&self, slot: u16, to: usize) {
        let from = self.slot_owner(slot);
        assert_ne!(from, to, "slot {slot} is on node {to} already");
        self.move_slot(slot, from, to);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.all_ok() {
            assert!(
                Instant::now() < deadline,
                "cluster not ok after moving a slot"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The live primary that holds `slot`, by index (as it says itself).
    pub fn slot_owner(&self, slot: u16) -> usize {
        self.primaries()
            .into_iter()
            .find(|&i| {
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query(&mut self.nodes[i].conn())
                    .expect("CLUSTER NODES");
                let Some(me) = nodes.lines().find(|l| l.contains("myself")) else {
                    return false;
                };
                me.split_whitespace().skip(8).any(|range| {
                    let mut ends = range.splitn(2, '-').map(|n| n.parse::<u16>());
                    match (ends.next(), ends.next()) {
                        (Some(Ok(lo)), Some(Ok(hi))) => (lo..=hi).contains(&slot),
                        (Some(Ok(one)), None) => one == slot,
                        _ => false,
                    }
                })
            })
            .unwrap_or_else(|| panic!("no primary holds slot {slot}"))
    }

    /// A counter of `CLUSTER INFO` (`cluster_stats_messages_...`) summed
    /// over the live nodes: the cluster bus's messages.
    pub fn bus_messages(&self, name: &str) -> u64 {
        self.live()
            .map(|(_, n)| {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut n.conn())
                    .unwrap_or_default();
                info.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Moves `slots` slots from primary `from` to primary `to` online
    /// (`redis-cli --cluster reshard`: keys migrate one by one, clients
    /// meet `ASK` and `MOVED`). Returns once it is done.
    pub fn reshard(&self, from: usize, to: usize, slots: u32) {
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{}", self.nodes[to].port))
            .args(["--cluster-from", &self.node_id(from)])
            .args(["--cluster-to", &self.node_id(to)])
            .args(["--cluster-slots", &slots.to_string()])
            .args(["--cluster-pipeline", "10", "--cluster-yes"])
            .output()
            .expect("cannot run redis-cli --cluster reshard");
        assert!(
            out.status.success(),
            "reshard failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.all_ok() {
            assert!(Instant::now() < deadline, "cluster not ok after resharding");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub mod contract;
pub mod fixtures;
pub mod logs;
pub mod proxy;
pub mod sentinel;
pub mod tls;
pub mod versioned_reads;

#[cfg(test)]
mod tests {
    #[test]
    fn the_identity_is_read_from_server_name_and_valkey_version() {
        let valkey =
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n";
        assert_eq!(super::identity(valkey), "valkey 9.1.2");
        let redis = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(super::identity(redis), "redis 7.0.15");
    }
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
