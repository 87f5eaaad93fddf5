use cache_runtime::cached;

pub struct Report {
    pub total: u64,
}

#[cached]
async fn f(id: u32) -> Result<Report, String> {
    Ok(Report {
        total: u64::from(id),
    })
}

fn main() {}
