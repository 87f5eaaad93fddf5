use cache_runtime::cached;

#[cached]
async fn f(counter: &mut u32) -> u32 {
    *counter += 1;
    *counter
}

fn main() {}
