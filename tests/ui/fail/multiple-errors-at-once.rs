use cache_runtime::cached;

pub struct Db;

#[cached(ttl = 0, tll = 5, tags = ["user:{user}"], skip(dbb), lock = "no")]
fn f(db: &Db, id: u32) {
    let _ = (db, id);
}

fn main() {}
