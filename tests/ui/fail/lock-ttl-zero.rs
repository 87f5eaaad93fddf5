use cache_runtime::cached;

#[cached(lock_ttl = "0s")]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
