// `cache = expr`: a `Cache`, a reference to one, an `Arc` of one, from a
// static or from an argument (which the companions then take too).
use cache_runtime::{Cache, cached};
use std::sync::{Arc, LazyLock};

static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().memory().build().unwrap());

pub struct AppState {
    pub cache: Arc<Cache>,
}

#[cached(cache = *CACHE)]
pub async fn from_static(id: u32) -> u32 {
    id
}

#[cached(cache = &*CACHE)]
pub async fn from_reference(id: u32) -> u32 {
    id
}

#[cached(cache = state.cache, skip(state))]
pub async fn from_argument(state: &AppState, id: u32) -> u32 {
    let _ = state;
    id
}

pub async fn use_them(state: &AppState) {
    from_static(1).await;
    from_reference(1).await;
    from_argument(state, 1).await;
    from_argument_invalidate(state, &1).await.ok();
    from_argument_invalidate_all(state).await.ok();
}

fn main() {}
