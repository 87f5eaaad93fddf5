use cache_runtime::cached;
use serde::Serialize;

#[derive(Serialize)]
pub struct Report {
    pub total: u64,
}

#[cached]
async fn f(id: u32) -> Option<Report> {
    Some(Report {
        total: u64::from(id),
    })
}

fn main() {}
