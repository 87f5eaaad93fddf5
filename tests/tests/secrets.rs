//! No password in any error, `Debug` output or log event: with a bad URL,
//! a refused connection, a server that rejects the password (from the URL
//! or from a credentials provider), and a provider that fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::logs::Logs;
use cache_tests::{RedisServer, free_port};

const SECRET: &str = "s3cret-pw";

struct Api {
    cache: Cache,
    runs: AtomicU64,
}

impl Api {
    #[cached(cache = self.cache, tags = ["t"])]
    async fn get(&self, id: u32) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        id
    }
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the password: {text}");
}

#[tokio::test]
async fn no_password_in_errors_debug_output_or_logs() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // A URL that does not parse, with a password in it.
    for url in [
        format!("redis://user:{SECRET}@host:notaport/"),
        format!("redis://host:6379/?password={SECRET}&db=x"),
    ] {
        let builder = Cache::builder().redis(url);
        assert_no_secret("the builder", &format!("{builder:?}"));
        if let Err(e) = builder.build() {
            assert_no_secret("an invalid URL's error", &format!("{e} {e:?}"));
        }
    }
    let cluster = Cache::builder()
        .redis_cluster([format!("redis://user:{SECRET}@host:notaport/")])
        .build()
        .unwrap_err();
    assert_no_secret("a cluster URL's error", &format!("{cluster} {cluster:?}"));
    let sentinel = Cache::builder()
        .sentinel(
            [format!("redis://user:{SECRET}@host:notaport/")],
            "mymaster",
        )
        .build()
        .unwrap_err();
    assert_no_secret(
        "a sentinel URL's error",
        &format!("{sentinel} {sentinel:?}"),
    );

    // A refused connection, and a server that rejects the password.
    let server = RedisServer::start();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("another-pw")
        .query(&mut server.conn())
        .unwrap();
    let wrong = server
        .url()
        .replacen("redis://", &format!("redis://default:{SECRET}@"), 1);
    // The same through a sentinel that is not there, and over TLS to a
    // server that does not speak it.
    for builder in [
        Cache::builder().redis(format!("redis://user:{SECRET}@127.0.0.1:{}/", free_port())),
        Cache::builder().redis(wrong),
        Cache::builder().sentinel(
            [format!("redis://user:{SECRET}@127.0.0.1:{}/", free_port())],
            "mymaster",
        ),
        Cache::builder().redis(format!(
            "rediss://user:{SECRET}@127.0.0.1:{}/",
            server.port()
        )),
        // A credentials provider whose password the server rejects, for
        // operations and for the local tier's subscription; and one that
        // fails.
        Cache::builder()
            .redis(server.url())
            .local_cache(1 << 20)
            .credentials(|| async { Ok(("default".to_owned(), SECRET.to_owned())) }),
        Cache::builder()
            .redis(server.url())
            .credentials(|| async { Err("the token service is down".into()) }),
    ] {
        assert_no_secret("the builder", &format!("{builder:?}"));
        let cache = builder
            .op_timeout(Duration::from_millis(200))
            .circuit_breaker(0, Duration::from_secs(1))
            .build()
            .unwrap();
        assert_no_secret("the cache", &format!("{cache:?}"));
        let api = Api {
            cache: cache.clone(),
            runs: AtomicU64::new(0),
        };
        assert_eq!(api.get(7).await, 7);
        assert_eq!(api.get(7).await, 7);
        let e = cache.invalidate_tag("t").await.unwrap_err();
        assert_no_secret("an invalidation's error", &format!("{e} {e:?}"));
        assert!(cache.stats().errors >= 2, "{:?}", cache.stats());
    }

    let logs = logs.text();
    assert!(
        logs.contains("cache backend failed"),
        "events were captured: {logs}"
    );
    assert_no_secret("the logs", &logs);
}
