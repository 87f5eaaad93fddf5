use cache_runtime::cached;

#[cached]
async fn f(label: impl AsRef<str>) -> usize {
    label.as_ref().len()
}

fn main() {}
