// `skip(...)`: arguments left out of the key need not be `Serialize`, and
// may be `&mut` or `impl Trait`.
use cache_runtime::cached;

pub struct Pool;
pub struct Connection;

pub trait Client {
    fn get(&self) -> u32;
}

#[cached(skip(pool))]
pub async fn by_pool(pool: &Pool, id: u32) -> u32 {
    let _ = pool;
    id
}

#[cached(skip(conn, client))]
pub async fn by_connection(conn: &mut Connection, client: impl Client, id: u32) -> u32 {
    let _ = conn;
    client.get() + id
}

#[cached(skip(pool, conn))]
pub async fn only_skipped(pool: &Pool, conn: &mut Connection) -> u32 {
    let _ = (pool, conn);
    1
}

pub async fn use_them(pool: &Pool, conn: &mut Connection) {
    by_pool(pool, 1).await;
    by_pool_invalidate(&1).await.ok();
    only_skipped(pool, conn).await;
    only_skipped_invalidate().await.ok();
    by_connection_invalidate(&1).await.ok();
    let _ = conn;
}

fn main() {}
