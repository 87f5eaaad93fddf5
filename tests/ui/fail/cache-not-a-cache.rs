use cache_runtime::cached;

pub struct State {
    pub redis_url: String,
}

#[cached(cache = state.redis_url, skip(state))]
async fn f(state: &State, id: u32) -> u32 {
    let _ = state;
    id
}

fn main() {}
