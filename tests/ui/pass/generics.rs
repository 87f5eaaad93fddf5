// Generic functions: type parameters are part of the key, const
// parameters too; lifetimes and `where` clauses are kept.
use cache_runtime::cached;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Display;

#[cached]
pub async fn parse<T>(raw: String) -> Option<T>
where
    T: std::str::FromStr + Serialize + DeserializeOwned,
{
    raw.parse().ok()
}

#[cached(tags = ["by:{name}"])]
pub async fn describe<'a, N: Display + Serialize + Sync>(name: N, prefix: &'a str) -> String {
    format!("{prefix}{name}")
}

#[cached]
pub async fn repeat<const N: usize>(byte: u8) -> Vec<u8> {
    vec![byte; N]
}

pub async fn use_them() {
    let _: Option<u32> = parse::<u32>("1".to_owned()).await;
    parse_invalidate::<u32>(&"1".to_owned()).await.ok();
    parse_invalidate_all().await.ok();
    describe(1, "#").await;
    describe_invalidate(&1, &"#").await.ok();
    repeat::<3>(1).await;
    repeat_invalidate::<3>(&1).await.ok();
}

fn main() {}
