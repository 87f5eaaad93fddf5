use cache_runtime::cached;

#[cached(ttl = 0)]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
