use cache_runtime::cached;

#[cached(expiry = 60)]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
