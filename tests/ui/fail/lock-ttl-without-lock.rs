use cache_runtime::cached;

#[cached(lock = false, lock_ttl = "10s")]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
