use cache_runtime::cached;

#[cached]
async fn f(id: u32) -> impl serde::Serialize {
    id
}

fn main() {}
