//! Keys are the same in every process: a second process fills an entry, and
//! this one, building the `HashMap` argument in another order, hits it.

use std::collections::HashMap;
use std::process::Command;

use cache_tests::fixtures::Probe;
use cache_tests::{redis_cache, shared_url, unique_namespace};

#[tokio::test]
async fn another_process_computes_the_same_key() {
    let namespace = unique_namespace("keys");
    let out = Command::new(env!("CARGO_BIN_EXE_key_probe"))
        .args([shared_url(), namespace.clone()])
        .output()
        .expect("cannot start key_probe");
    assert!(
        out.status.success(),
        "key_probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "key_probe computations=1 stores=1"
    );

    let cache = redis_cache(&shared_url(), &namespace);
    let probe = Probe::new(cache.clone(), "this process");
    let mut filters = HashMap::new();
    for (k, v) in [("c", "3"), ("z:*", "{x}"), ("a", "1"), ("b", "2")] {
        filters.insert(k.to_string(), v.to_string());
    }
    let value = probe.lookup(filters.clone(), "a:b*{c}".to_string()).await;
    assert_eq!(
        value.by, "key_probe",
        "the entry of the other process is a hit here"
    );
    assert_eq!(cache.stats().computations, 0);

    // The same separators, moved between arguments, are another key.
    filters.insert("a".into(), "1:a:b*{c}".into());
    let value = probe.lookup(filters, String::new()).await;
    assert_eq!(value.by, "this process");
}
