use cache_runtime::cached;

#[cached(codec = "msgpak")]
async fn f(id: u32) -> u32 {
    id
}

#[cached(codec = "xml")]
async fn g(id: u32) -> u32 {
    id
}

#[cached(codec = msgpack)]
async fn h(id: u32) -> u32 {
    id
}

fn main() {}
