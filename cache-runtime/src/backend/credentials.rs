//! The user's credentials provider (`credentials`): asked for a user name
//! and password each time a connection is made, for managed Redis whose
//! passwords are short-lived tokens (IAM). Handed to redis-rs as its
//! [`StreamingCredentialsProvider`] for the connections it makes and
//! remakes itself (a single node's, the primary's through Sentinel, every
//! node's of a cluster), and asked here for the subscription's, which
//! redis-rs makes without one.
//!
//! The password never leaves this module except into the `AUTH` of a new
//! connection: the provider's `Debug` shows nothing of it, and a failure
//! is reported with the provider's error only.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use redis::{BasicAuth, ErrorKind, RedisError, StreamingCredentialsProvider};

/// What a credentials provider returns on failure.
pub(crate) type CredentialsError = Box<dyn std::error::Error + Send + Sync>;

type Fetch = Pin<Box<dyn Future<Output = Result<(String, String), CredentialsError>> + Send>>;

/// The provider given to the builder.
#[derive(Clone)]
pub(crate) struct Credentials {
    fetch: Arc<dyn Fn() -> Fetch + Send + Sync>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<provider>)")
    }
}

impl Credentials {
    pub fn new<F, Fut>(provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(String, String), CredentialsError>> + Send + 'static,
    {
        Credentials {
            fetch: Arc::new(move || Box::pin(provider())),
        }
    }

    /// Asks the provider once. Its failure is a redis-rs authentication
    /// error that carries the provider's message (never a password); so is
    /// its panic, which would otherwise poison the connection's shared
    /// connect future and fail every later call on it.
    pub async fn fetch(&self) -> Result<BasicAuth, RedisError> {
        let asked = AssertUnwindSafe(async { (self.fetch)().await })
            .catch_unwind()
            .await;
        match asked {
            Ok(Ok((user, password))) => Ok(BasicAuth::new(user, password)),
            Ok(Err(error)) => Err(RedisError::from((
                ErrorKind::AuthenticationFailed,
                "the credentials provider failed",
                error.to_string(),
            ))),
            Err(_) => Err(RedisError::from((
                ErrorKind::AuthenticationFailed,
                "the credentials provider panicked",
            ))),
        }
    }

    /// `client` with the provider's current credentials, for a connection
    /// that redis-rs makes without a provider (pub/sub).
    pub async fn apply(&self, client: &redis::Client) -> Result<redis::Client, RedisError> {
        let auth = self.fetch().await?;
        let info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_username(auth.username())
            .set_password(auth.password());
        redis::Client::open(info.set_redis_settings(settings))
    }
}

impl StreamingCredentialsProvider for Credentials {
    /// Each new connection takes the first item; the stream then stays
    /// open without another, so that redis-rs does not log its end.
    fn subscribe(
        &self,
    ) -> Pin<Box<dyn futures_util::Stream<Item = redis::RedisResult<BasicAuth>> + Send + 'static>>
    {
        let this = self.clone();
        Box::pin(
            futures_util::stream::once(async move { this.fetch().await })
                .chain(futures_util::stream::pending()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failure_carries_the_message_and_debug_shows_no_secret() {
        let ok = Credentials::new(|| async { Ok(("u".to_owned(), "s3cret".to_owned())) });
        assert!(!format!("{ok:?}").contains("s3cret"));
        let auth = ok.fetch().await.unwrap();
        assert_eq!((auth.username(), auth.password()), ("u", "s3cret"));
        assert!(!format!("{auth:?}").contains("s3cret"));
        let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
        let applied = ok.apply(&client).await.unwrap();
        let settings = applied.get_connection_info().redis_settings();
        assert_eq!(settings.password(), Some("s3cret"));
        assert_eq!(settings.username(), Some("u"));

        let failing = Credentials::new(|| async { Err("token service down".into()) });
        let error = failing.fetch().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AuthenticationFailed);
        assert!(error.to_string().contains("token service down"), "{error}");
    }
}
