// In a generic `impl`, a `key` template names the type with `{Self}`; in
// a plain `impl` it need not.
use cache_runtime::cached;
use std::marker::PhantomData;

pub struct Repo<T>(PhantomData<T>);

impl<T: serde::Serialize + serde::de::DeserializeOwned + Default + Send> Repo<T> {
    #[cached(key = "repo:{Self}:{id}")]
    pub async fn get(id: u64) -> Option<T> {
        let _ = id;
        Some(T::default())
    }

    /// Without a type parameter in the signature, there is nothing to check.
    #[cached(key = "repo-count")]
    pub async fn count() -> u64 {
        0
    }
}

pub struct Plain<'a>(&'a str);

impl<'a> Plain<'a> {
    #[cached(key = "plain:{id}")]
    pub async fn get(id: &'a str, other: Option<Self>) -> Option<String> {
        let _ = other;
        Some(id.to_owned())
    }
}

pub async fn use_them() {
    Repo::<u8>::get(1).await;
    Repo::<u8>::get_invalidate(&1).await.ok();
    Repo::<String>::count().await;
    Plain::get("a", None).await;
}

fn main() {}
