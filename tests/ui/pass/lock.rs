// Stampede protection options.
use cache_runtime::cached;

#[cached(lock = false)]
async fn unlocked(id: u32) -> u32 {
    id
}

#[cached(lock = true, lock_ttl = "10s")]
async fn lease_seconds(id: u32) -> u32 {
    id
}

#[cached(lock_ttl = 30)]
async fn lease_integer(id: u32) -> u32 {
    id
}

#[cached(lock_ttl = "500ms")]
async fn lease_millis(id: u32) -> u32 {
    id
}

async fn use_them() -> u32 {
    unlocked(1).await + lease_seconds(1).await + lease_integer(1).await + lease_millis(1).await
}

fn main() {
    let _ = use_them;
}
