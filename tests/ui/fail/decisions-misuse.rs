use std::time::Duration;

use cache_runtime::cached;

fn short(_: &u32) -> Option<Duration> {
    Some(Duration::from_secs(5))
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn wrong_value(_: &String) -> bool {
    false
}

// Not a path: a closure.
#[cached(ttl = 60, unless = |n: &u32| *n == 0)]
async fn a(id: u32) -> u32 {
    id
}

// The wrong signature: `unless` where `ttl_from` is meant.
#[cached(ttl = 60, ttl_from = is_zero)]
async fn b(id: u32) -> u32 {
    id
}

// The wrong value type.
#[cached(ttl = 60, unless = wrong_value)]
async fn c(id: u32) -> Result<u32, ()> {
    Ok(id)
}

// Twice.
#[cached(ttl = 60, ttl_from = short, ttl_from = short)]
async fn d(id: u32) -> u32 {
    id
}

fn main() {}
