use std::time::Duration;

use cache_runtime::cached;

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    expires_in: u64,
}

fn token_ttl(token: &Token) -> Option<Duration> {
    Some(Duration::from_secs(token.expires_in))
}

mod rules {
    pub fn is_empty(v: &Vec<u32>) -> bool {
        v.is_empty()
    }
}

#[cached(ttl = 600, ttl_from = token_ttl)]
async fn token(user: u32) -> Result<Token, String> {
    Ok(Token { expires_in: u64::from(user) })
}

#[cached(ttl = 600, unless = rules::is_empty, ttl_from = self::listing_ttl)]
async fn listing(page: u32) -> Vec<u32> {
    vec![page]
}

fn listing_ttl(_: &Vec<u32>) -> Option<Duration> {
    None
}

// On an `Option`, the decisions see the `Some` value.
#[cached(ttl = 600, unless = rules::is_empty, cache_none = true)]
async fn maybe(page: u32) -> Option<Vec<u32>> {
    Some(vec![page])
}

struct Api;

impl Api {
    #[cached(ttl = 600, ttl_from = Self::ttl, grace = "1h")]
    async fn get(&self, id: u32) -> Result<Option<u32>, String> {
        Ok(Some(id))
    }

    fn ttl(_: &u32) -> Option<Duration> {
        None
    }
}

fn main() {}
