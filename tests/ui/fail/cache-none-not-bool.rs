use cache_runtime::cached;

#[cached(cache_none = "yes")]
async fn f(id: u32) -> Option<u32> {
    Some(id)
}

fn main() {}
