use cache_runtime::cached;

#[cached(tags = ["products", 42])]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
