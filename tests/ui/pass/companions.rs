// The companions: same visibility, generics and `where` clause; the key
// arguments by reference; `companions = false` to go without them, as in
// a trait impl.
use cache_runtime::{Error, cached};

mod shop {
    use cache_runtime::cached;

    #[cached(tags = ["products"])]
    pub async fn product(id: u64, locale: String) -> Option<String> {
        Some(format!("{id}{locale}"))
    }

    #[cached(companions = false)]
    pub async fn no_companions(id: u64) -> u64 {
        id
    }

    pub async fn no_companions_invalidate() {}
}

pub trait Repository {
    fn get(&self, id: u32) -> impl std::future::Future<Output = Option<String>> + Send;
}

pub struct Postgres;

impl Repository for Postgres {
    #[cached(companions = false)]
    async fn get(&self, id: u32) -> Option<String> {
        Some(id.to_string())
    }
}

#[allow(async_fn_in_trait)]
pub trait WithDefault {
    #[cached(key = "default:{id}")]
    async fn fetch(&self, id: u32) -> Option<String> {
        Some(id.to_string())
    }
}

pub async fn use_them() -> Result<(), Error> {
    shop::product(1, "en".to_owned()).await;
    shop::product_invalidate(&1, &"en".to_owned()).await?;
    shop::product_invalidate_all().await?;
    shop::no_companions(1).await;
    shop::no_companions_invalidate().await;
    Postgres.get(1).await;
    Ok(())
}

fn main() {}

/// Arguments that already are references are taken as they are.
pub mod by_reference {
    use cache_runtime::cached;

    #[cached]
    pub async fn greet(name: &str, times: u8) -> String {
        name.repeat(usize::from(times))
    }

    pub async fn invalidate() -> Result<(), cache_runtime::Error> {
        greet_invalidate("ann", &2).await
    }
}
