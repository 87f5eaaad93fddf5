use cache_runtime::cached;

#[cached]
fn not_async(id: u32) -> u32 {
    id
}

fn main() {}
