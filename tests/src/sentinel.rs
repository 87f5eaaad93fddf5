//! A Sentinel-monitored group on loopback: a primary, one replica and one
//! sentinel (quorum 1), for failover tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{RedisServer, free_port, wait_until_up, watch_over};

/// The group's name.
pub const MASTER_NAME: &str = "mymaster";

/// A primary, its replica and a sentinel watching them. Stopped on drop.
pub struct SentinelGroup {
    /// The primary when the group started.
    pub primary: RedisServer,
    /// Its replica (the primary after a failover).
    pub replica: RedisServer,
    sentinel: Child,
    sentinel_port: u16,
    dir: std::path::PathBuf,
}

impl SentinelGroup {
    /// Starts the three servers and waits until the replica is in sync
    /// and the sentinel knows it.
    pub fn start() -> Self {
        let primary = RedisServer::start();
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
        let sentinel_port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "cache-tests-sentinel-{}-{sentinel_port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("cannot create the sentinel's directory");
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 10000\n",
                primary.port()
            ),
        )
        .expect("cannot write sentinel.conf");
        let sentinel = Command::new(crate::server_binary())
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server --sentinel");
        watch_over(sentinel.id());
        wait_until_up(sentinel_port);
        let group = SentinelGroup {
            primary,
            replica,
            sentinel,
            sentinel_port,
            dir,
        };
        group.wait_for(20, "the replica in sync and known to the sentinel", |g| {
            let synced: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut g.replica.conn())
                .unwrap_or_default();
            let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(MASTER_NAME)
                .query(&mut g.sentinel_conn())
                .unwrap_or_default();
            synced.contains("master_link_status:up") && !replicas.is_empty()
        });
        group
    }

    /// `redis://127.0.0.1:{sentinel port}/`.
    pub fn sentinel_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.sentinel_port)
    }

    fn sentinel_conn(&self) -> redis::Connection {
        redis::Client::open(self.sentinel_url())
            .and_then(|c| c.get_connection())
            .expect("cannot connect to the sentinel")
    }

    /// The port of the primary the sentinel names now.
    pub fn primary_port(&self) -> u16 {
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME)
            .query(&mut self.sentinel_conn())
            .expect("SENTINEL GET-MASTER-ADDR-BY-NAME");
        port
    }

    /// `SENTINEL FAILOVER`, retried until the sentinel takes it, then
    /// waits until the replica is the primary and takes writes.
    pub fn failover(&self) {
        self.wait_for(20, "the sentinel to start a failover", |g| {
            redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg(MASTER_NAME)
                .query::<String>(&mut g.sentinel_conn())
                .is_ok()
        });
        self.wait_for(30, "the replica to become the primary", |g| {
            let role: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut g.replica.conn())
                .unwrap_or_default();
            g.primary_port() == g.replica.port() && role.contains("role:master")
        });
    }

    fn wait_for(&self, secs: u64, what: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if ready(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out after {secs} s waiting for {what}");
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        let _ = self.sentinel.kill();
        let _ = self.sentinel.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
