// `Option<T>`: `Some` is cached, and `None` with `cache_none = true`.
use cache_runtime::cached;

#[cached]
async fn some_only(id: u32) -> Option<u32> {
    Some(id)
}

#[cached(cache_none = true)]
async fn also_none(id: u32) -> Option<u32> {
    None.filter(|_| id > 0)
}

#[cached(cache_none = false)]
async fn explicit_default(id: u32) -> std::option::Option<Vec<u32>> {
    Some(vec![id])
}

async fn use_them() {
    some_only(1).await;
    also_none(1).await;
    explicit_default(1).await;
}

fn main() {
    let _ = use_them;
}
