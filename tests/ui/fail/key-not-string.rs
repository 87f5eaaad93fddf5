use cache_runtime::cached;

#[cached(key = id)]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
