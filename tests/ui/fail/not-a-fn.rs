use cache_runtime::cached;

#[cached]
struct Product {
    id: u32,
}

fn main() {
    let _ = Product { id: 1 }.id;
}
