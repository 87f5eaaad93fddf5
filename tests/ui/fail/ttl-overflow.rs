use cache_runtime::cached;

#[cached(ttl = 99999999999999999999)]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
