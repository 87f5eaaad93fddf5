use cache_runtime::cached;

#[derive(Debug)]
pub struct ApiError;

/// An application's own alias: still a `Result`, so `Err` is not cached and
/// `ApiError` needs no serde.
pub type AppResult<T> = Result<T, ApiError>;

#[cached(ttl = 60)]
async fn user_name(id: u64) -> AppResult<String> {
    if id == 0 { Err(ApiError) } else { Ok(format!("user {id}")) }
}

fn main() {
    let _ = user_name(1);
}
