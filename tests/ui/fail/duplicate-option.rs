use cache_runtime::cached;

#[cached(ttl = 60, ttl = 120)]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
