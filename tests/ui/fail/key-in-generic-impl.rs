use cache_runtime::cached;
use std::marker::PhantomData;

pub struct Repo<T>(PhantomData<T>);

impl<T: serde::Serialize + serde::de::DeserializeOwned + Default> Repo<T> {
    // One key for every `T`: `Repo::<Admin>::get(1)` would get the entry of
    // `Repo::<User>::get(1)`.
    #[cached(key = "repo:{id}")]
    pub async fn get(id: u64) -> Option<T> {
        let _ = id;
        Some(T::default())
    }
}

fn main() {}
