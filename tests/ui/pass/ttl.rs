// Every form of `ttl`.
use cache_runtime::cached;

#[cached(ttl = 1)]
async fn seconds(x: u32) -> u32 {
    x
}

#[cached(ttl = "90s")]
async fn with_seconds_unit(x: u32) -> u32 {
    x
}

#[cached(ttl = "10m")]
async fn minutes(x: u32) -> u32 {
    x
}

#[cached(ttl = "1h")]
async fn hours(x: u32) -> u32 {
    x
}

#[cached(ttl = "1d")]
async fn days(x: u32) -> u32 {
    x
}

#[cached]
async fn default_ttl(x: u32) -> u32 {
    x
}

#[cached()]
async fn empty_parentheses(x: u32) -> u32 {
    x
}

async fn use_them() -> u32 {
    seconds(1).await
        + with_seconds_unit(1).await
        + minutes(1).await
        + hours(1).await
        + days(1).await
        + default_ttl(1).await
        + empty_parentheses(1).await
}

fn main() {
    let _ = use_them;
}
