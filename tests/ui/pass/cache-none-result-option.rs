use cache_runtime::cached;

#[derive(Debug)]
pub struct DbError;

/// `Ok(None)` (a missing row) is cached too.
#[cached(ttl = 60, cache_none = true)]
async fn find(id: u64) -> Result<Option<String>, DbError> {
    Ok((id < 10).then(|| format!("row {id}")))
}

fn main() {
    let _ = find(1);
}
