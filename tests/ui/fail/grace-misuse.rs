use cache_runtime::cached;

// `timeout` without `grace`.
#[cached(ttl = 60, timeout = "300ms")]
async fn a(id: u32) -> u32 {
    id
}

// `grace` in whole seconds at least.
#[cached(ttl = 60, grace = "500ms")]
async fn b(id: u32) -> u32 {
    id
}

// `refresh_ahead` and `timeout` need arguments that move into a task.
#[cached(ttl = 60, refresh_ahead = true)]
async fn c(name: &str) -> usize {
    name.len()
}

struct Api;

impl Api {
    #[cached(ttl = 60, grace = "1h", timeout = "1s")]
    async fn d(&self, id: u32) -> u32 {
        id
    }

    // `grace` alone is fine on a method: the caller refreshes.
    #[cached(ttl = 60, grace = "1h")]
    async fn e(&self, id: u32) -> u32 {
        id
    }
}

fn main() {}
