use cache_runtime::cached;

pub trait Repository {
    fn get(&self, id: u32) -> impl std::future::Future<Output = Option<String>> + Send;
}

pub struct Postgres;

impl Repository for Postgres {
    #[cached]
    async fn get(&self, id: u32) -> Option<String> {
        Some(id.to_string())
    }
}

fn main() {}
