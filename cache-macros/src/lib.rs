//! The `#[cached]` attribute of `cache-runtime`. Depend on `cache-runtime`,
//! which re-exports it, rather than on this crate.
//!
//! One module per stage: `args` parses the attribute, `item` checks the
//! function against it, `expand` generates the code. Caching itself is in
//! the runtime, which the generated code calls.

mod args;
mod batch;
mod ctxt;
mod expand;
mod item;
mod suggest;
mod template;

use proc_macro::TokenStream;

/// Caches the results of an `async fn`.
///
/// ```
/// use cache_runtime::cached;
/// # use serde::{Deserialize, Serialize};
/// #
/// # #[derive(Debug, Serialize, Deserialize)]
/// # struct Product { id: u64 }
/// #
/// # #[derive(Debug)]
/// # struct DbError;
/// #
/// # mod db {
/// #     pub async fn products_in(_: &str) -> Result<Vec<super::Product>, super::DbError> {
/// #         Ok(vec![super::Product { id: 1 }])
/// #     }
/// # }
///
/// #[cached(ttl = 600, tags = ["products", "category:{category}"])]
/// async fn list_products(category: String) -> Result<Vec<Product>, DbError> {
///     db::products_in(&category).await
/// }
/// #
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_runtime::Error> {
/// # let cache = cache_runtime::Cache::builder().memory().build()?;
/// # cache_runtime::set_default(cache.clone());
/// # list_products("books".into()).await.unwrap(); // miss
/// # list_products("books".into()).await.unwrap(); // hit
/// # cache.invalidate_tag("category:books").await?;
/// # list_products("books".into()).await.unwrap(); // miss
/// # list_products_invalidate(&"books".to_string()).await?;
/// # list_products("books".into()).await.unwrap(); // miss
/// # list_products_invalidate_all().await?;
/// # list_products("books".into()).await.unwrap(); // miss
/// # assert_eq!((cache.stats().hits, cache.stats().computations), (1, 4));
/// # Ok(())
/// # }
/// ```
///
/// A call derives a key from the function and its arguments. On a hit it
/// returns the stored value without running the body. On a miss the body
/// runs once (concurrent callers of the key wait for it, in this process and
/// in others), and its result is stored and returned. When the cache cannot
/// be reached, the body runs and its result is returned: caching never fails
/// a call.
///
/// The function keeps its signature: attributes, documentation, visibility,
/// generics and `where` clause are as written. It may be a free function, a
/// method (`&self`, `self: Arc<Self>`, ...) or an associated function, in an
/// inherent impl, a trait impl or a trait's default method.
///
/// # What is cached
///
/// Chosen from the return type as written (its last path segment):
///
/// | return type | cached | not cached |
/// |---|---|---|
/// | `Result<T, E>`, or an alias such as `io::Result<T>` or `AppResult<T>` (a generic type whose name ends in `Result`) | `Ok` | `Err` (`E` needs no serde) |
/// | `Option<T>` | `Some` | `None`, unless `cache_none = true` |
/// | `Result<Option<T>, E>` | `Ok(Some)` | `Err`; `Ok(None)`, unless `cache_none = true` |
/// | any other type `T` | every value | |
///
/// The cached value type `T` must implement `Serialize` and
/// `DeserializeOwned`: values are stored with serde (as JSON, or as
/// MessagePack with `codec = "msgpack"`) and read back, so they cannot
/// borrow (return `String`, not `&str`). An `Option` is stored as a list of
/// zero or one value (`[x]`, `[]`), so that `Some(())` never reads back as
/// `None`.
///
/// A non-generic alias (`type ApiResult = Result<u32, ApiError>`) is not
/// seen through: it is cached whole, `Err` included, if `ApiError` has
/// serde (and fails to compile otherwise). Write `Result<u32, ApiError>`
/// at the function.
///
/// # The key
///
/// By default a call's key is the function's path (its module, its `impl`
/// type for an associated function, and its name: `app::api::Products::get`)
/// and a hash of, in order: in a generic `impl`, the names of the types it
/// is instantiated with, with or without a receiver (so that
/// `Repo::<User>::get(1)` and `Repo::<Admin>::get(1)` never share a key);
/// for a method, the name of the `Self` type (so that methods of one name
/// on two types of one module never share a key); the names of the generic type parameters and the values of the
/// const parameters (so that `f::<u8>` and `f::<u16>` never share a key);
/// every argument, by its `Serialize` implementation. The receiver is never
/// part of the key. Every argument in the key must implement `Serialize`;
/// leave the others out with `skip(...)`.
///
/// With `key = "..."`, the key is the rendered template instead.
///
/// Maps (`HashMap`, `BTreeMap`) give the same key whatever their order; sets
/// serialize in iteration order, so a `HashSet` argument is rejected (use a
/// `BTreeSet`). The key is what `Serialize` writes: fields marked
/// `#[serde(skip)]` are not part of it. The names of generic types (and of
/// `Self` for methods) come from `std::any::type_name`, whose spelling may
/// change with the compiler: a toolchain upgrade can then start those keys
/// cold, never mix them up.
///
/// # Arguments
///
/// All optional, in any order, separated by commas.
///
/// - **`ttl = 600`**, **`ttl = "10m"`**: how long an entry lives. An integer
///   is seconds; a string is a whole number and a unit, `s`, `m`, `h` or `d`
///   (`"90s"`, `"10m"`, `"1h"`, `"1d"`). Must be positive. Without `ttl` the
///   cache's default applies.
/// - **`tags = ["products", "product:{id}"]`**: tags of the entries, for
///   `Cache::invalidate_tag`. String literals, in which `{name}` is the
///   argument `name` formatted with `Display`, and `{{` and `}}` are literal
///   braces. Skipped arguments may be interpolated too. An argument is
///   written as it is when it has only letters, digits, `-`, `_` and `.`
///   (`product:42`); any other byte is written `%XX` (`a:b` becomes
///   `a%3Ab`), and a value longer than 64 bytes so written becomes `~` and a
///   128-bit hash of it, so that different arguments never render the same
///   key or tag, and no argument makes a long one. Placeholders must be
///   separated by another character (`{org}:{name}`, not `{org}-{name}`).
///   To name such a tag for `Cache::invalidate_tag`, write its arguments
///   with `cache_runtime::template_value`.
/// - **`key = "product:{id}"`**: a readable key instead of the hash, with
///   the grammar of `tags`. Only the arguments it names are part of the key,
///   and they need `Display`, not `Serialize` (nor `skip`). The template
///   alone makes the key (under the cache's namespace), without the
///   function's path: two functions with the same template share entries.
///   Not on a generic function (one key would serve every type), and not
///   empty. In a generic `impl`, name the type with `{Self}` (its
///   `std::any::type_name`, written as an argument is): a template without
///   it, on a function whose signature uses a type parameter of the
///   `impl`, is a compile error (E0401, at that parameter).
/// - **`skip(db, client)`**: arguments left out of the key. They need not
///   implement `Serialize`, and may be `&mut` references or `impl Trait`.
/// - **`cache = expr`**: the cache to use instead of the default (set with
///   `cache_runtime::set_default`). An expression of a type that implements
///   `AsCache`: `Cache`, `&Cache`, `Arc<Cache>`, `Box<Cache>` (write
///   `cache = *CACHE` for a `static CACHE: LazyLock<Cache>`). It is evaluated
///   at each call before the body runs, and may use `self` and the
///   arguments: `cache = self.cache`, `cache = state.cache`.
/// - **`cache_none = true`**: cache `None` (or `Ok(None)`) too. Only for
///   `Option<T>` and `Result<Option<T>, E>` (and with `batch`, where it
///   stores the items the body leaves out).
/// - **`lock = false`**: no stampede protection: concurrent misses of one
///   key each run the body. By default they share one run: in a process,
///   the first caller computes and the others get its value; across
///   processes, a Redis lease lets one process compute while the others
///   wait and are woken by pub/sub when the value is written. When the
///   computing call returns a value that is not cached (`Err`, `None`),
///   panics or is cancelled, nothing is stored and the waiters start again:
///   one of them computes, the others wait on it (each caller gets its own
///   result, so `E` needs no `Clone`). Hits never take the lease.
/// - **`lock_ttl = "10s"`**: how long the lease of a computing process lasts
///   before another process may take over. Seconds, or a string with a unit
///   `ms`, `s`, `m`, `h` or `d`. Not with `lock = false`. Without it the
///   cache's default applies.
/// - **`codec = "msgpack"`**: store values as MessagePack (`rmp-serde`, with
///   field names, so that a struct whose fields changed reads as a miss, not
///   as wrong values): smaller and faster to decode than JSON, but not
///   readable with `redis-cli`. `codec = "json"`, the default, stores the
///   value as `serde_json` writes it. Each entry records its codec: changing
///   a function's codec makes its old entries misses, never garbage.
/// - **`grace = "1h"`**: keep each entry this long past its `ttl` (whole
///   seconds, or `s`, `m`, `h`, `d`), and serve it through expiry and
///   failures. A call that finds its value expired but within grace gets it
///   at once while one refresh runs for the key across all processes
///   (stale-while-revalidate); a refresh whose body fails (`Err` or a
///   panic) leaves the old value serving, logged and counted
///   (stale-if-error) until grace ends. Invalidation ends grace: a value
///   whose tag, function, call or namespace was invalidated is never
///   served. When the function's arguments can move into a task (owned
///   arguments, no `self`, no generics), the refresh runs in one and no
///   caller waits for it; otherwise the caller that takes the refresh runs
///   it (and gets the old value if it fails), the others get the old value.
///
///   ```
///   # use cache_runtime::cached;
///   # #[derive(Debug)] pub struct DbError;
///   #[cached(ttl = "10m", grace = "1h", timeout = "300ms")]
///   async fn top_products(category: String) -> Result<Vec<String>, DbError> {
///       Ok(vec![category])
///   }
///   ```
/// - **`timeout = "300ms"`**: with a grace value at hand, wait at most this
///   long for the refresh, then return the grace value while the refresh
///   finishes and fills the cache in the background. Needs `grace` and
///   arguments that move into a task.
/// - **`refresh_ahead = true`**: refresh a value before it expires, with a
///   probability that grows as its expiry nears and with how long its body
///   took (XFetch), so that a steadily read key never expires under its
///   readers; one refresh per key across processes, in the background.
///   Needs arguments that move into a task.
/// - **`local = false`**: this function skips the cache's local tier
///   ([`CacheBuilder::local_cache`](../cache_runtime/struct.CacheBuilder.html#method.local_cache)):
///   every hit reads Redis. For values that must reflect a write made
///   outside the cache's invalidations.
/// - **`ttl_from = path`**: the entry's TTL from its value, by a
///   `fn(&T) -> Option<Duration>` (a token's expiry, an upstream
///   `max-age`); `None` keeps the `ttl`. `T` is the cached value type: the
///   whole return value, the `Ok` value of a `Result`, the `Some` value of
///   an `Option` (an `Err` or a `None` is never given to it; a `None` stored
///   with `cache_none` takes the `ttl`). A TTL under a millisecond stores
///   nothing (the value is returned, and shared with the callers waiting
///   for it); one over 100 years is cut to 100 years. `grace` comes on top
///   of it, and `refresh_ahead` reckons with it.
/// - **`unless = path`**: a `fn(&T) -> bool` (same `T`); a value it
///   accepts is returned, and shared with the callers waiting for it, but
///   not stored (an empty listing, a partial result).
/// - **`tags_from = path`**: a `fn(&T) -> Vec<String>` (same `T`): tags
///   taken from the value, besides `tags`: a listing tagged with the ids of
///   the products it shows, so that `invalidate_tag("product:7")`
///   invalidates every listing that shows product 7. Race-free like the
///   other tags: the value is stored only if none of its tags' versions was
///   created since the call started (by the server's clock), so an
///   invalidation of one while the body ran leaves it unstored. A value
///   whose tags have no version yet (first seen, evicted, just
///   invalidated) is returned but not stored either; the next call stores
///   it. A hit costs two round trips: the entry with the function's
///   versions, then the versions of the tags the entry records (see the
///   crate docs, "Tags from the value"). Not with `batch`.
///
///   A path to a function, not a closure; a wrong signature is a type error
///   at the path.
///
///   ```
///   # use cache_runtime::{Cache, cached};
///   use std::time::Duration;
///   # #[derive(serde::Serialize, serde::Deserialize)]
///   # struct Token { expires_in: u64 }
///
///   fn token_ttl(token: &Token) -> Option<Duration> {
///       Some(Duration::from_secs(token.expires_in))
///   }
///
///   #[cached(ttl = 3600, ttl_from = token_ttl)]
///   async fn token(user: u32) -> Result<Token, String> {
///       Ok(Token { expires_in: 300 }) // cached for 300 s
///   }
///
///   #[cached(ttl = 600, unless = Vec::is_empty)]
///   async fn listing(page: u32) -> Vec<u32> {
///       Vec::new() // returned, not stored
///   }
///
///   # #[derive(serde::Serialize, serde::Deserialize)]
///   # struct Product { id: u64 }
///   fn product_tags(products: &Vec<Product>) -> Vec<String> {
///       products.iter().map(|p| format!("product:{}", p.id)).collect()
///   }
///
///   #[cached(ttl = 600, tags_from = product_tags)]
///   async fn featured(page: u32) -> Result<Vec<Product>, String> {
///       Ok(vec![Product { id: 7 }]) // tagged `product:7`
///   }
///   # #[tokio::main(flavor = "current_thread")]
///   # async fn main() -> Result<(), cache_runtime::Error> {
///   # let cache = Cache::builder().memory().build()?;
///   # cache_runtime::set_default(cache.clone());
///   # token(1).await.unwrap();
///   # token(1).await.unwrap();
///   # listing(1).await;
///   # listing(1).await;
///   # assert_eq!((cache.stats().hits, cache.stats().computations), (1, 3));
///   # for _ in 0..3 { featured(1).await.unwrap(); }
///   # assert_eq!((cache.stats().hits, cache.stats().computations), (2, 5));
///   # cache.invalidate_tag("product:7").await?;
///   # featured(1).await.unwrap();
///   # assert_eq!(cache.stats().computations, 6);
///   # Ok(()) }
///   ```
/// - **`batch = ids`**: the function takes a collection of items and
///   returns a map from item to value; each item is cached as its own
///   entry. The argument is any owned collection (`Vec<u64>`,
///   `HashSet<u64>`, `BTreeSet<String>`: it is iterated, and the missing
///   items are gathered in another of its type for the body); the result is
///   a `HashMap` or a `BTreeMap` keyed by the item, in a `Result` or not.
///   An item's entry has the key a call with that one item in place of the
///   collection would have (the function, the other arguments, the item),
///   and in `tags` and `key` templates the argument stands for one item:
///   `tags = ["product:{ids}"]` tags each item's entry with its own tag, and
///   `<fn>_invalidate(&item)` invalidates one item. A call reads every
///   item's entry in one round trip (per node on a cluster), runs the body
///   once with the missing items only, stores each value it returns, and
///   returns the merged map. An item the body leaves out of its map is not
///   stored (with `cache_none = true` it is, as absent); an `Err` stores
///   nothing and is returned. Concurrent calls share the items they have in
///   common (one computes each, in process and, with the lease, across
///   processes); a call that waits for another's items runs its body for
///   the rest meanwhile. The body runs at most once per call: an item whose
///   other computation fails after the body started is left out of the
///   map. Not with `grace`, `refresh_ahead`, `timeout`, `ttl_from` or `unless`.
///
///   ```
///   # use std::collections::HashMap;
///   # use cache_runtime::cached;
///   # #[derive(Debug)] pub struct DbError;
///   # static QUERIES: std::sync::Mutex<Vec<Vec<u64>>> = std::sync::Mutex::new(Vec::new());
///   #[cached(ttl = 600, tags = ["product:{ids}"], batch = ids)]
///   async fn products(ids: Vec<u64>) -> Result<HashMap<u64, String>, DbError> {
///       QUERIES.lock().unwrap().push(ids.clone()); // SELECT ... WHERE id = ANY($1)
///       Ok(ids.into_iter().map(|id| (id, format!("product {id}"))).collect())
///   }
///   # #[tokio::main(flavor = "current_thread")]
///   # async fn main() -> Result<(), cache_runtime::Error> {
///   # let cache = cache_runtime::Cache::builder().memory().build()?;
///   # cache_runtime::set_default(cache.clone());
///   products(vec![1, 2]).await.unwrap();
///   let all = products(vec![1, 2, 3]).await.unwrap(); // the body gets [3]
///   assert_eq!(all.len(), 3);
///   cache.invalidate_tag("product:2").await?;
///   products(vec![1, 2, 3]).await.unwrap(); // the body gets [2]
///   assert_eq!(*QUERIES.lock().unwrap(), [vec![1, 2], vec![3], vec![2]]);
///   # Ok(()) }
///   ```
/// - **`crate = "path"`**: where `cache_runtime` is, when it is not a
///   dependency under that name: `crate = "renamed"` after
///   `extern crate cache_runtime as renamed;`, or the path of a re-export
///   (`crate = "my_app::cache_runtime"`).
/// - **`companions = false`**: no companion functions (`_invalidate`,
///   `_invalidate_all`, `_prime`; see below). Needed in trait impls.
///
/// # Companion functions
///
/// Next to `name`, with its visibility, generics and `where` clause:
///
/// ```
/// # use cache_runtime::cached;
/// # pub struct Catalog;
/// impl Catalog {
///     #[cached]
///     pub async fn name(&self, id: u64, lang: &str) -> String {
/// #       format!("{id} {lang}")
///         // ...
///     }
///
///     // Generated:
///     // pub async fn name_invalidate(&self, id: &u64, lang: &str) -> Result<(), cache_runtime::Error>;
///     // pub async fn name_invalidate_all(&self) -> Result<(), cache_runtime::Error>;
///     // pub async fn name_prime(&self, id: u64, lang: &str, value: String) -> bool;
/// }
/// #
/// # async fn check(catalog: &Catalog) -> Result<(), cache_runtime::Error> {
/// #     let (id, lang): (&u64, &str) = (&7, "en");
/// #     assert!(catalog.name_prime(7, "en", "seven".into()).await || true);
/// #     catalog.name_invalidate(id, lang).await?;
/// #     catalog.name_invalidate_all().await
/// # }
/// # fn main() {}
/// ```
///
/// `name_invalidate` removes the entry of one call. It takes the arguments
/// that are part of the key, in order, each by reference (`id: u64` becomes
/// `id: &u64`; an argument that already is a reference, such as
/// `name: &str`, stays as it is); with `key = "..."`, those the template
/// names. Generic
/// parameters that the arguments do not determine are given with a
/// turbofish: `parse_invalidate::<u32>(&raw)`.
///
/// `name_invalidate_all` makes every entry of the function a miss, whatever
/// the arguments and generic parameters.
///
/// Both take `&self` if the function has a receiver, and also the arguments
/// that the `cache = ...` expression uses; they use the function's cache.
/// They return an error when there is no cache or the backend fails.
///
/// `name_prime` stores `value` as what the call with these arguments
/// returns, without running the body: a warm-up, or a value the caller
/// already has (the row it just wrote). It takes the arguments the key,
/// the tags and the `cache = ...` expression use, as the function takes
/// them (by value), then the function's return type (`Ok(v)` for a
/// `Result`, `Some(v)` for an `Option`). It is the function's own call
/// with `async { value }` for a body, so the key, the tags and the rules
/// are the same: the TTL, `ttl_from`, `unless`; an `Err`, or a `None`
/// without `cache_none`, is not stored. It reads the versions of the tags
/// and stores the value under them, without a lookup and without waiting
/// for a computation in progress: an invalidation after that read leaves
/// the value unserved. It returns whether the value was stored: not when
/// Redis failed (fail-open: counted and logged), nor when the rules keep
/// it out. The local tiers of every process drop what they held for the
/// call. A `batch` function has no `_prime` companion: prime its items
/// with [`Cache::entry`](../cache_runtime/struct.Cache.html#method.entry)
/// instead, or call it in a `refresh` scope.
///
/// ```
/// # use cache_runtime::{cached, Cache};
/// #[cached(ttl = 60, tags = ["price:{id}"])]
/// async fn price(id: u64) -> Result<u64, String> {
///     Err("the database is not reached when primed".into())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_runtime::Error> {
/// let cache = Cache::builder().memory().build()?;
/// cache_runtime::set_default(cache.clone());
/// assert!(price_prime(7, Ok(700)).await);
/// assert_eq!(price(7).await, Ok(700)); // no computation
/// cache.invalidate_tag("price:7").await?;
/// assert!(price(7).await.is_err()); // the primed value went with its tag
/// # Ok(()) }
/// ```
///
/// Functions of one name in two `impl` blocks have paths of their own
/// (`app::User::get`, `app::Team::get`): `name_invalidate_all` of one leaves
/// the other's entries alone.
///
/// In a trait impl, a method that is not in the trait is an error ("method
/// `get_invalidate` is not a member of trait"): write `companions = false`
/// there, and invalidate through tags or `Cache::invalidate_function`.
///
/// # Examples
///
/// Each example is a doctest, run against the in-memory backend
/// (`Cache::builder().memory()`).
///
/// A method with its own cache, and tags naming an argument:
///
/// ```
/// use cache_runtime::{cached, Cache};
/// # use serde::{Deserialize, Serialize};
/// #
/// # #[derive(Debug, Serialize, Deserialize)]
/// # struct User { id: u64 }
/// #
/// # #[derive(Debug)]
/// # struct DbError;
/// # impl std::fmt::Display for DbError {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
/// #         f.write_str("database error")
/// #     }
/// # }
/// # impl std::error::Error for DbError {}
/// #
/// # struct Db;
/// # impl Db {
/// #     async fn user(&self, id: u64) -> Result<Option<User>, DbError> {
/// #         Ok(Some(User { id }))
/// #     }
/// # }
///
/// struct Users { cache: Cache, db: Db }
///
/// impl Users {
///     #[cached(cache = self.cache, ttl = "5m", tags = ["users", "user:{id}"])]
///     async fn get(&self, id: u64) -> Result<Option<User>, DbError> {
///         self.db.user(id).await
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let cache = Cache::builder().memory().build()?;
/// # let users = Users { cache: cache.clone(), db: Db };
/// users.get(7).await?;
/// # users.get(7).await?; // hit
/// users.get_invalidate(&7).await?;      // this call only
/// # users.get(7).await?; // miss
/// cache.invalidate_tag("user:7").await?; // every entry tagged `user:7`
/// # users.get(7).await?; // miss
/// # assert_eq!((cache.stats().hits, cache.stats().computations), (1, 3));
/// # Ok(())
/// # }
/// ```
///
/// A readable key, an argument left out, `None` cached too:
///
/// ```
/// # use cache_runtime::cached;
/// # use serde::{Deserialize, Serialize};
/// #
/// # #[derive(Debug, Serialize, Deserialize)]
/// # struct Product { id: u64 }
/// #
/// # struct PgPool;
/// # impl PgPool {
/// #     async fn find_product(&self, _id: u64) -> Option<Product> {
/// #         None
/// #     }
/// # }
/// #
/// #[cached(key = "product:{id}", skip(pool), cache_none = true)]
/// async fn product(pool: &PgPool, id: u64) -> Option<Product> {
///     pool.find_product(id).await
/// }
/// #
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_runtime::Error> {
/// # let cache = cache_runtime::Cache::builder().memory().build()?;
/// # cache_runtime::set_default(cache.clone());
/// # assert!(product(&PgPool, 42).await.is_none()); // miss
/// # assert!(product(&PgPool, 42).await.is_none()); // hit: `None` is cached
/// # assert_eq!((cache.stats().hits, cache.stats().computations), (1, 1));
/// # product_invalidate(&42).await?;
/// # Ok(())
/// # }
/// ```
///
/// No stampede protection, in a trait impl:
///
/// ```
/// # use cache_runtime::cached;
/// #
/// # trait Repository {
/// #     async fn count(&self, table: String) -> u64;
/// # }
/// #
/// # struct Postgres;
/// # impl Postgres {
/// #     async fn count_rows(&self, table: &str) -> u64 {
/// #         table.len() as u64
/// #     }
/// # }
/// #
/// impl Repository for Postgres {
///     #[cached(lock = false, companions = false)]
///     async fn count(&self, table: String) -> u64 {
///         self.count_rows(&table).await
///     }
/// }
/// #
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_runtime::Error> {
/// # let cache = cache_runtime::Cache::builder().memory().build()?;
/// # cache_runtime::set_default(cache.clone());
/// # assert_eq!(Postgres.count("products".into()).await, 8);
/// # assert_eq!(Postgres.count("products".into()).await, 8);
/// # assert_eq!((cache.stats().hits, cache.stats().computations), (1, 1));
/// # Ok(())
/// # }
/// ```
///
/// # Expansion
///
/// The function at the top becomes (with `__private` standing for
/// `::cache_runtime::__private`, items that only the macro may use):
///
/// ```ignore
/// async fn list_products(category: String) -> Result<Vec<Product>, DbError> {
///     // Fails to compile against a runtime of another version.
///     const _: () = __private::VERSION_0_1_0;
///     // Its type name is the function's path: `app::list_products::{{closure}}::__cache_marker`.
///     fn __cache_marker() -> &'static str {
///         __private::type_name_of_val(&__cache_marker)
///     }
///     // The options, and the tags that interpolate no argument.
///     static __CACHE_SPEC: __private::Spec = __private::Spec::new(
///         "list_products",
///         __cache_marker,
///         __private::Options {
///             ttl_secs: __private::Some(600),
///             tags: &["products"],
///             ..__private::Options::DEFAULT
///         },
///     );
///     // Compile-time check, reported at the return type (a key argument
///     // that is not `Serialize` is reported at its type by `ArgsDigest::arg`).
///     __private::assert_cacheable::<Vec<Product>>();
///
///     let __cache_handle = __private::default_cache();
///     let mut __cache_digest = __private::ArgsDigest::new();
///     __cache_digest.impl_scope(&__CACHE_SPEC, __private::type_name_of_val(&|| ()));
///     __private::ArgsDigest::arg::<String>(&mut __cache_digest, &category);
///     let __cache_key: __private::KeyPart = __cache_digest.finish();
///     let __cache_tags: [__private::String; 1] = [__private::format!("category:{}", __private::TemplateValue::new(&category))];
///     __private::execute::<Result<Vec<Product>, DbError>, __private::OkOnly, _>(
///         __cache_handle,
///         &__CACHE_SPEC,
///         __cache_key,
///         &__cache_tags,
///         __private::OkOnly,
///         // How the local tier keeps values: decoded, as `Vec<Product>` is `Clone`.
///         {
///             use __private::{ViaBytes as _, ViaClone as _, ViaCloneResult as _};
///             (&&&__private::LocalProbe::<Result<Vec<Product>, DbError>, __private::OkOnly>::NEW).local_form()
///         },
///         async move { db::products_in(&category).await },
///     )
///     .await
/// }
///
/// /// Invalidates the value that `list_products` cached for these arguments, ...
/// async fn list_products_invalidate(category: &String) -> __private::Result<(), __private::Error> {
///     /* `VERSION_0_1_0`, `__cache_marker` and `__CACHE_SPEC` as above */
///     let __cache_handle = __private::default_cache();
///     let mut __cache_digest = __private::ArgsDigest::new();
///     __cache_digest.impl_scope(&__CACHE_SPEC, __private::type_name_of_val(&|| ()));
///     __private::ArgsDigest::arg::<String>(&mut __cache_digest, category);
///     let __cache_key: __private::KeyPart = __cache_digest.finish();
///     __private::invalidate_call(__cache_handle, &__CACHE_SPEC, __cache_key).await
/// }
///
/// /// Invalidates every value that `list_products` cached, whatever the arguments.
/// async fn list_products_invalidate_all() -> __private::Result<(), __private::Error> {
///     /* `VERSION_0_1_0`, `__cache_marker` and `__CACHE_SPEC` as above */
///     __private::invalidate_function(__private::default_cache(), &__CACHE_SPEC).await
/// }
/// ```
///
/// The key and tags are computed before the body's `async move` block takes
/// the arguments, so nothing is cloned. With `cache = expr` the handle is
/// `Some(Cache::clone(AsCache::as_cache(&(expr))))`; with `key = "..."` the
/// key is `KeyPart::template(format!(...))`; `codec`, `lock` and `lock_ttl`
/// are fields of `Options`. The `__cache_` locals are hygienic: the body
/// cannot see them.
///
/// # Errors
///
/// Every mistake is a compile error at the token at fault, and all of them
/// are reported at once (the function is still emitted as written, so that
/// its callers compile):
///
/// - an unknown option (with the closest valid one suggested), an option
///   given twice, an option without its value or with a value of the wrong
///   kind;
/// - a `ttl` or `lock_ttl` that is zero, negative, fractional, too large, an
///   empty string or has an unknown unit; `lock_ttl` with `lock = false`;
/// - an unknown `codec` (the closest valid one suggested);
/// - `grace` shorter than a second; `timeout` without `grace`; `timeout` or
///   `refresh_ahead` on a function whose arguments cannot move into a task
///   (`self`, a borrowed argument, `impl Trait`, generics);
/// - a template with an unknown argument (the closest is suggested), `{self}`,
///   an unclosed `{`, an unmatched `}`, an empty `{}` or a format spec;
///   two placeholders not separated by a character other than a letter,
///   digit, `-`, `_` or `.`; an interpolated argument that does not
///   implement `Display`; an empty `key`, or `key` on a generic function,
///   or without `{Self}` in a generic `impl` whose type parameters the
///   signature uses;
/// - in `skip`, an unknown argument, an argument named twice, or `self`;
/// - `crate` that is not a path; `cache_none` without an `Option` (or
///   `Result<Option<..>>`) return type;
/// - `#[cached]` on anything but an `async fn` with a body;
/// - an argument that is a pattern (`(a, b): (u8, u8)`, `_`) rather than a
///   name;
/// - an argument in the key that is `&mut`, `impl Trait`, a `HashSet` (no
///   stable order: use a `BTreeSet`), or does not implement `Serialize`
///   (the note suggests `skip`);
/// - no return type, `()`, `!`, `impl Trait`, or a cached value type that
///   borrows or does not implement `Serialize` and `DeserializeOwned`.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(args.into(), item.into()).into()
}
