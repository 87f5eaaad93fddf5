use cache_runtime::cached;

pub struct Repo;

impl Repo {
    #[cached(tags = ["repo:{self}"])]
    pub async fn get(&self, id: u32) -> u32 {
        id
    }
}

fn main() {}
