use cache_runtime::cached;

#[cached(key = "user:{org}-{name}")]
async fn f(org: String, name: String) -> String {
    format!("{org}/{name}")
}

#[cached(tags = ["pair:{a}{b}"])]
async fn g(a: u32, b: u32) -> u32 {
    a + b
}

fn main() {}
