//! Measurements noted on the issues, each in one run on private servers:
//!
//! - `measure stampede`: 4 processes x 200 concurrent callers on one cold
//!   key whose body takes 200 ms, with stampede protection on and off:
//!   computations, and each caller's latency after the value was first
//!   available anywhere (p50/p99/max).
//! - `measure fail-open`: latency of a cached call when Redis refuses
//!   connections and when it is frozen (SIGSTOP), op timeout 100 ms, against
//!   the body alone.
//!
//! Run: `cargo run --release -p cache-tests --bin measure -- stampede`
//! (needs `redis-server` on the PATH).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached};
use cache_tests::{RedisServer, free_port};

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("stampede") => stampede(),
        Some("fail-open") => fail_open(),
        _ => {
            eprintln!("usage: measure stampede|fail-open");
            std::process::exit(2);
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn stampede() {
    const PROCESSES: usize = 4;
    const CALLERS: &str = "200";
    const BODY_MS: &str = "200";
    let worker = std::env::current_exe()
        .unwrap()
        .with_file_name("stampede_worker");
    println!("cold key, {PROCESSES} processes x {CALLERS} callers, body {BODY_MS} ms");
    println!(
        "{:<10} {:>13} {:>22} {:>22} {:>22}",
        "locking", "computations", "wait after fill p50", "p99", "max"
    );
    for (label, mode) in [("on", "lock"), ("off", "nolock")] {
        let server = RedisServer::start();
        let workers: Vec<_> = (0..PROCESSES)
            .map(|_| {
                Command::new(&worker)
                    .args([&server.url(), "measure", "cold", CALLERS, BODY_MS, mode])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("cannot start stampede_worker (build it: cargo build -p cache-tests --bins)")
            })
            .collect();
        let mut done: Vec<u128> = Vec::new();
        for w in workers {
            let out = w.wait_with_output().unwrap();
            let line = String::from_utf8_lossy(&out.stdout).to_string();
            let list = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("done_us="))
                .expect("worker output");
            done.extend(list.split(',').map(|t| t.parse::<u128>().unwrap()));
        }
        let computations: u64 = redis::cmd("GET")
            .arg("computations:cold")
            .query(&mut server.conn())
            .unwrap();
        let first = *done.iter().min().unwrap();
        let mut waits: Vec<f64> = done.iter().map(|t| (t - first) as f64 / 1000.0).collect();
        waits.sort_by(f64::total_cmp);
        println!(
            "{label:<10} {computations:>13} {:>19.2} ms {:>19.2} ms {:>19.2} ms",
            percentile(&waits, 0.5),
            percentile(&waits, 0.99),
            waits[waits.len() - 1]
        );
    }
}

struct Api {
    cache: Cache,
    runs: AtomicU64,
}

impl Api {
    #[cached(cache = self.cache, ttl = 60, tags = ["t"])]
    async fn get(&self, id: u32) -> String {
        self.runs.fetch_add(1, Ordering::Relaxed);
        format!("value {id}")
    }
}

async fn time_calls(api: &Api, n: u32) -> Vec<f64> {
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        std::hint::black_box(api.get(i).await);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    lat
}

#[tokio::main(flavor = "current_thread")]
async fn fail_open() {
    let op_timeout = Duration::from_millis(100);
    let build = |url: String| {
        let cache = Cache::builder()
            .redis(url)
            .op_timeout(op_timeout)
            .build()
            .unwrap();
        Api {
            cache,
            runs: AtomicU64::new(0),
        }
    };
    println!("op timeout {op_timeout:?}; latency of one cached call (miss path)");
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>8}",
        "redis", "p50 ms", "p99 ms", "max ms", "errors"
    );
    let row = |label: &str, lat: &[f64], errors: u64| {
        println!(
            "{label:<28} {:>10.3} {:>10.3} {:>10.3} {errors:>8}",
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            lat[lat.len() - 1]
        );
    };
    let server = RedisServer::start();
    let up = build(server.url());
    let lat = time_calls(&up, 200).await;
    row("up (miss + store)", &lat, up.cache.stats().errors);

    let refused = build(format!("redis://127.0.0.1:{}/", free_port()));
    let lat = time_calls(&refused, 200).await;
    row(
        "down (connection refused)",
        &lat,
        refused.cache.stats().errors,
    );

    let frozen = build(server.url());
    frozen.get(0).await; // connect first, then freeze
    server.pause();
    let lat = time_calls(&frozen, 20).await;
    row("frozen (SIGSTOP)", &lat, frozen.cache.stats().errors);
    server.resume();
}
