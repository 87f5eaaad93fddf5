use cache_runtime::cached;

#[cached(ttl = "10 minutes")]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
