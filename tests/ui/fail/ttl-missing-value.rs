use cache_runtime::cached;

#[cached(ttl, tags = ["a"])]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
