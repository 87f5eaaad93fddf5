use cache_runtime::cached;

#[cached(ttl = 10m)]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
