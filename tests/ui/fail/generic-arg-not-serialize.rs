use cache_runtime::cached;

#[cached]
async fn f<T: Send>(value: T) -> u32 {
    let _ = value;
    1
}

fn main() {}
