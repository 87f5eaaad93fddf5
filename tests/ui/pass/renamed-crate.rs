// `crate = "..."`: the runtime under another name.
extern crate cache_runtime as renamed;

use renamed::cached;

#[cached(crate = "renamed", ttl = 5)]
pub async fn via_extern_crate(id: u32) -> u32 {
    id
}

#[cached(crate = "::renamed", key = "k:{id}")]
pub async fn absolute(id: u32) -> u32 {
    id
}

mod nested {
    #[renamed::cached(crate = "renamed")]
    pub async fn in_a_module(id: u32) -> Result<u32, String> {
        Ok(id)
    }
}

pub async fn use_them() {
    via_extern_crate(1).await;
    via_extern_crate_invalidate(&1).await.ok();
    absolute(1).await;
    nested::in_a_module(1).await.ok();
    nested::in_a_module_invalidate_all().await.ok();
}

fn main() {}
