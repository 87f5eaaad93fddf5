use cache_runtime::cached;

#[cached(tags = "products")]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
