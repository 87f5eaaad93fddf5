use cache_runtime::cached;

#[cached(key = "item:{id}")]
async fn f<T: serde::Serialize + serde::de::DeserializeOwned + Default>(id: u32) -> T {
    let _ = id;
    T::default()
}

fn main() {}
