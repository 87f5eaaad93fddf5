use cache_runtime::cached;

#[cached(crate = "cache runtime")]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
