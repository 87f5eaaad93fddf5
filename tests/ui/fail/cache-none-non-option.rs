use cache_runtime::cached;

#[cached(cache_none = true)]
async fn f(id: u32) -> Result<u32, String> {
    Ok(id)
}

fn main() {}
