use cache_runtime::cached;

#[cached(tags = ["category:{categroy}"])]
async fn f(category: String) -> u32 {
    category.len() as u32
}

fn main() {}
