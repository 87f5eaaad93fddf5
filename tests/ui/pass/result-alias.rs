// `Result` aliases: only `Ok` is cached, the error type needs no serde.
use cache_runtime::cached;
use std::io;

#[derive(Debug)]
pub struct AppError;

pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[cached]
pub async fn io_result(path: String) -> io::Result<Vec<u8>> {
    Ok(path.into_bytes())
}

#[cached]
pub async fn local_alias(id: u32) -> Result<u32> {
    Ok(id)
}

#[cached]
pub async fn qualified(id: u32) -> std::result::Result<u32, AppError> {
    Ok(id)
}

#[cached]
pub async fn question_mark(raw: String) -> std::result::Result<u32, std::num::ParseIntError> {
    let value: u32 = raw.parse()?;
    if value == 0 {
        return Ok(1);
    }
    Ok(value)
}

pub async fn use_them() {
    io_result(String::new()).await.ok();
    local_alias(1).await.ok();
    qualified(1).await.ok();
    question_mark("1".to_owned()).await.ok();
}

fn main() {}
