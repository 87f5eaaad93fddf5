use cache_runtime::cached;

#[cached]
async fn f(id: u32) -> &'static str {
    if id > 0 { "yes" } else { "no" }
}

fn main() {}
