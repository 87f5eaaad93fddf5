use cache_runtime::cached;

#[cached(tags = ["product:{product_id}"])]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
