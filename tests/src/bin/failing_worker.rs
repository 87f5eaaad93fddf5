//! One process of the cross-process test of a failing leader: once the key
//! `{NAMESPACE}:go` exists, `CALLERS` concurrent calls of a cached function
//! whose body sleeps `BODY_MS` then fails with a `Clone` error. Prints one
//! line: `bodies=<start>-<end>,…`, the wall-clock times (µs since the Unix
//! epoch) at which each run of the body in this process started and ended.
//!
//! usage: failing_worker REDIS_URL NAMESPACE CALLERS BODY_MS

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_runtime::{Cache, cached};

static BODIES: Mutex<Vec<(u128, u128)>> = Mutex::new(Vec::new());

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

#[cached(cache = cache, skip(cache, body_ms), ttl = 600)]
async fn failing(cache: Cache, body_ms: u64, id: u64) -> Result<u64, String> {
    let start = now_us();
    tokio::time::sleep(Duration::from_millis(body_ms)).await;
    BODIES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((start, now_us()));
    Err(format!("row {id}: database down"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: failing_worker REDIS_URL NAMESPACE CALLERS BODY_MS");
        std::process::exit(2);
    }
    let (url, namespace) = (&args[0], &args[1]);
    let callers: usize = args[2].parse().expect("CALLERS");
    let body_ms: u64 = args[3].parse().expect("BODY_MS");
    let cache = Cache::builder()
        .op_timeout(cache_tests::TEST_OP_TIMEOUT)
        .redis(url.as_str())
        .namespace(namespace.as_str())
        .build()
        .expect("cache");
    let mut conn = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("connection");
    let go = format!("{namespace}:go");
    let _: i64 = redis::cmd("INCR")
        .arg(format!("{namespace}:ready"))
        .query(&mut conn)
        .expect("INCR");
    while !redis::cmd("EXISTS")
        .arg(&go)
        .query::<bool>(&mut conn)
        .expect("EXISTS")
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let tasks: Vec<_> = (0..callers)
        .map(|_| tokio::spawn(failing(cache.clone(), body_ms, 1)))
        .collect();
    for task in tasks {
        let got = task.await.expect("caller panicked");
        assert!(got.is_err(), "a failing body answered {got:?}");
    }
    let bodies = BODIES.lock().unwrap_or_else(|p| p.into_inner());
    let bodies: Vec<String> = bodies.iter().map(|(s, e)| format!("{s}-{e}")).collect();
    println!("bodies={}", bodies.join(","));
}
