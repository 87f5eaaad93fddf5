use cache_runtime::cached;

#[cached(tll = 60)]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
