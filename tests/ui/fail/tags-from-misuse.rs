use std::collections::HashMap;

use cache_runtime::cached;

fn ids(ids: &Vec<u64>) -> Vec<String> {
    ids.iter().map(|id| format!("product:{id}")).collect()
}

fn borrowed(_: &Vec<u64>) -> Vec<&'static str> {
    vec!["products"]
}

type Listing = Result<Vec<u64>, String>;

// Not a path: a closure.
#[cached(ttl = 60, tags_from = |v: &Vec<u64>| vec![format!("{}", v.len())])]
async fn a(id: u64) -> Vec<u64> {
    vec![id]
}

// The wrong return type: `Vec<&str>`, not `Vec<String>`.
#[cached(ttl = 60, tags_from = borrowed)]
async fn b(id: u64) -> Vec<u64> {
    vec![id]
}

// The wrong value type: the `Ok` of the result is a `String`.
#[cached(ttl = 60, tags_from = ids)]
async fn c(id: u64) -> Result<String, ()> {
    Ok(id.to_string())
}

// An alias hides the value type.
#[cached(ttl = 60, tags_from = ids)]
async fn d(id: u64) -> Listing {
    Ok(vec![id])
}

fn names(_: &HashMap<u64, String>) -> Vec<String> {
    Vec::new()
}

// Not with `batch`.
#[cached(batch = ids, tags_from = names)]
async fn e(ids: Vec<u64>) -> HashMap<u64, String> {
    ids.into_iter().map(|id| (id, id.to_string())).collect()
}

fn main() {}
