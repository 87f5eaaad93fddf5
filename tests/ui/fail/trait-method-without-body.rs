use cache_runtime::cached;

pub trait Repository {
    #[cached]
    async fn get(&self, id: u32) -> Option<String>;
}

fn main() {}
