//! The `metrics` feature: every counter of a function's calls, and the
//! durations that matter, through the [`metrics`](https://docs.rs/metrics)
//! facade, so that any exporter (Prometheus, StatsD, OpenTelemetry) shows
//! them. Names follow Prometheus conventions: counters end in `_total`,
//! durations are histograms in seconds, and the only label besides
//! `outcome` is `function`, the function's path: never a key.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `cache_requests_total` | `function`, `outcome` | calls, by outcome: `hit`, `miss`, `grace` (a value served within grace), `coalesced` (a miss answered by a concurrent caller's computation; counted as a `miss` too), `skipped` (circuit breaker open), `bypass` |
//! | `cache_local_hits_total` | `function` | hits answered by the local tier (counted as `hit` too) |
//! | `cache_lease_waits_total` | `function` | calls that waited for another process's fill |
//! | `cache_computations_total` | `function` | runs of the body |
//! | `cache_stores_total` | `function` | values written |
//! | `cache_refreshes_total` | `function` | refreshes (grace, `refresh_ahead`) |
//! | `cache_refresh_errors_total` | `function` | failed refreshes, the grace value served |
//! | `cache_refresh_timeouts_total` | `function` | callers that stopped waiting after `timeout` |
//! | `cache_invalidated_reads_total` | `function` | entries found but invalidated |
//! | `cache_decode_errors_total` | `function` | stored values that did not decode |
//! | `cache_backend_errors_total` | `function` | failed backend operations (timeouts included) |
//! | `cache_backend_timeouts_total` | `function` | backend operations that timed out |
//! | `cache_oversized_total` | `function` | values over `max_value_bytes`, not stored |
//! | `cache_body_duration_seconds` | `function` | histogram: how long the body ran |
//! | `cache_lease_wait_seconds` | `function` | histogram: how long a call waited for another process's fill |
//! | `cache_redis_round_trip_seconds` | | histogram: round trips to Redis, one in 16 sampled |
//!
//! The hit ratio of a function is
//! `rate(cache_requests_total{outcome="hit"}[5m]) / rate(cache_requests_total{outcome=~"hit|miss"}[5m])`.
//!
//! Handles are registered with the recorder installed when a function is
//! first called with a cache (and when a Redis cache is built): install
//! the recorder before that, as exporters ask anyway.

use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};

use crate::stats::Stat;

/// The metric (and outcome) of a counter, if it is one of a function's.
fn metric(stat: Stat) -> Option<(&'static str, Option<&'static str>)> {
    const REQUESTS: &str = "cache_requests_total";
    Some(match stat {
        Stat::hits => (REQUESTS, Some("hit")),
        Stat::misses => (REQUESTS, Some("miss")),
        Stat::grace_hits => (REQUESTS, Some("grace")),
        Stat::coalesced => (REQUESTS, Some("coalesced")),
        Stat::skipped => (REQUESTS, Some("skipped")),
        Stat::bypassed => (REQUESTS, Some("bypass")),
        Stat::local_hits => ("cache_local_hits_total", None),
        Stat::lease_waits => ("cache_lease_waits_total", None),
        Stat::computations => ("cache_computations_total", None),
        Stat::stores => ("cache_stores_total", None),
        Stat::refreshes => ("cache_refreshes_total", None),
        Stat::grace_on_error => ("cache_refresh_errors_total", None),
        Stat::body_timeouts => ("cache_refresh_timeouts_total", None),
        Stat::stale => ("cache_invalidated_reads_total", None),
        Stat::decode_errors => ("cache_decode_errors_total", None),
        Stat::errors => ("cache_backend_errors_total", None),
        Stat::timeouts => ("cache_backend_timeouts_total", None),
        Stat::oversized => ("cache_oversized_total", None),
        Stat::value_tags_changed => ("cache_value_tags_changed_total", None),
        Stat::round_trips | Stat::invalidations => return None,
    })
}

/// One function's metric handles.
pub(crate) struct FunctionMetrics {
    counters: Vec<Option<Counter>>,
    body: Histogram,
    lease_wait: Histogram,
}

impl std::fmt::Debug for FunctionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionMetrics").finish_non_exhaustive()
    }
}

impl FunctionMetrics {
    pub fn new(function: &'static str) -> Self {
        let counters = Stat::ALL
            .iter()
            .map(|&stat| {
                metric(stat).map(|(name, outcome)| match outcome {
                    Some(outcome) => counter!(name, "function" => function, "outcome" => outcome),
                    None => counter!(name, "function" => function),
                })
            })
            .collect();
        FunctionMetrics {
            counters,
            body: histogram!("cache_body_duration_seconds", "function" => function),
            lease_wait: histogram!("cache_lease_wait_seconds", "function" => function),
        }
    }

    pub fn count(&self, stat: Stat) {
        if let Some(Some(counter)) = self.counters.get(stat as usize) {
            counter.increment(1);
        }
    }

    pub fn body(&self, took: Duration) {
        self.body.record(took.as_secs_f64());
    }

    pub fn lease_wait(&self, took: Duration) {
        self.lease_wait.record(took.as_secs_f64());
    }
}

/// The histogram of Redis round trips.
pub(crate) fn round_trips() -> Histogram {
    histogram!("cache_redis_round_trip_seconds")
}
