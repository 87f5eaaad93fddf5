//! A second process for the cross-process key test: fills
//! `Probe::lookup({"b": "2", "a": "1", …}, "a:b*{c}")` in the cache at
//! `$1`, namespace `$2`, building the map in its own insertion order.

use std::collections::HashMap;

use cache_runtime::Cache;
use cache_tests::fixtures::Probe;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(namespace)) = (args.next(), args.next()) else {
        eprintln!("usage: key_probe REDIS_URL NAMESPACE");
        std::process::exit(2);
    };
    let cache = Cache::builder()
        .redis(url)
        .namespace(namespace)
        .build()
        .expect("cache");
    let probe = Probe::new(cache.clone(), "key_probe");
    let mut filters = HashMap::new();
    for (k, v) in [("b", "2"), ("a", "1"), ("z:*", "{x}"), ("c", "3")] {
        filters.insert(k.to_string(), v.to_string());
    }
    let value = probe.lookup(filters, "a:b*{c}".to_string()).await;
    let stats = cache.stats();
    println!(
        "{} computations={} stores={}",
        value.by, stats.computations, stats.stores
    );
}
