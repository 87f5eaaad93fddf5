use cache_runtime::cached;

#[cached]
async fn f(id: u32) {
    let _ = id;
}

fn main() {}
