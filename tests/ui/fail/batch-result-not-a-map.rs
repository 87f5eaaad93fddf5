use cache_runtime::cached;

#[cached(batch = ids)]
async fn products(ids: Vec<u64>) -> Result<Vec<String>, std::io::Error> {
    Ok(ids.into_iter().map(|id| id.to_string()).collect())
}

fn main() {}
