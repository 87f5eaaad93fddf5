//! Turns the builder's URLs and certificates into redis-rs clients: TCP
//! keepalive on every socket, TLS (rustls) for `rediss://` URLs with the
//! system's roots or a private CA, and client certificates for mutual TLS.
//! Nothing here connects; a URL that does not parse is an error that never
//! shows its password.

use redis::cluster::ClusterClient;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use super::credentials::Credentials;
use super::link;
use crate::error::{Error, redact};

/// Certificates for TLS connections, from the builder.
#[derive(Clone, Default)]
pub(crate) struct Tls {
    /// A private CA (PEM) that replaces the system's roots.
    pub root_cert: Option<Vec<u8>>,
    /// The client's certificate chain and key (PEM), for mutual TLS.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    fn is_set(&self) -> bool {
        self.root_cert.is_some() || self.client_cert.is_some()
    }

    #[cfg(feature = "tls")]
    fn certificates(&self) -> Option<redis::TlsCertificates> {
        self.is_set().then(|| redis::TlsCertificates {
            client_tls: self
                .client_cert
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.root_cert.clone(),
        })
    }
}

/// Parses `url`, with our TCP settings.
fn parse(url: &str) -> Result<ConnectionInfo, Error> {
    let info = url
        .into_connection_info()
        .map_err(|source| Error::InvalidUrl {
            url: redact(url),
            source,
        })?;
    Ok(info.set_tcp_settings(link::tcp_settings()))
}

/// Parses every URL of a cluster or of sentinels, and checks that the
/// certificates go with them.
fn parse_all(urls: &[String], tls: &Tls) -> Result<Vec<ConnectionInfo>, Error> {
    let infos = urls
        .iter()
        .map(|u| parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    check_tls(&infos, tls)?;
    Ok(infos)
}

/// The error of a client that rejected `urls`, with their passwords hidden.
fn invalid(urls: &[String]) -> impl Fn(redis::RedisError) -> Error + Copy + '_ {
    move |source| Error::InvalidUrl {
        url: urls.iter().map(|u| redact(u)).collect::<Vec<_>>().join(","),
        source,
    }
}

fn is_tls(info: &ConnectionInfo) -> bool {
    matches!(info.addr(), ConnectionAddr::TcpTls { .. })
}

/// Checks that certificates go with TLS URLs only, and makes sure rustls
/// has a crypto provider (ring, unless the program installed another).
fn check_tls(infos: &[ConnectionInfo], tls: &Tls) -> Result<(), Error> {
    if tls.is_set() && !infos.iter().all(is_tls) {
        return Err(Error::InvalidConfig(
            "`tls_root_cert` and `tls_client_cert` need `rediss://` URLs",
        ));
    }
    #[cfg(feature = "tls")]
    if infos.iter().any(is_tls) {
        // An error means a provider is installed already: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    Ok(())
}

/// The client of a single node.
pub(crate) fn single(url: &str, tls: &Tls) -> Result<redis::Client, Error> {
    let info = parse(url)?;
    check_tls(std::slice::from_ref(&info), tls)?;
    #[cfg(feature = "tls")]
    let client = match tls.certificates() {
        Some(certificates) => redis::Client::build_with_tls(info, certificates),
        None => redis::Client::open(info),
    };
    #[cfg(not(feature = "tls"))]
    let client = redis::Client::open(info);
    client.map_err(|source| Error::InvalidUrl {
        url: redact(url),
        source,
    })
}

/// The client of a cluster reached through any of `urls`.
pub(crate) fn cluster(
    urls: &[String],
    tls: &Tls,
    op_timeout: std::time::Duration,
    credentials: Option<&Credentials>,
) -> Result<ClusterClient, Error> {
    cluster_builder(urls, tls, op_timeout, credentials)?
        .build()
        .map_err(invalid(urls))
}

/// The client of a cluster's shard subscriptions: RESP3, with the
/// messages and the connections' events (pushes) sent to `pushes`. The
/// credentials provider, if any, is asked by each connection it makes.
pub(crate) fn cluster_subscriber(
    urls: &[String],
    tls: &Tls,
    op_timeout: std::time::Duration,
    credentials: Option<&Credentials>,
    pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
) -> Result<ClusterClient, Error> {
    cluster_builder(urls, tls, op_timeout, credentials)?
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes)
        .build()
        .map_err(invalid(urls))
}

fn cluster_builder(
    urls: &[String],
    tls: &Tls,
    op_timeout: std::time::Duration,
    credentials: Option<&Credentials>,
) -> Result<redis::cluster::ClusterClientBuilder, Error> {
    let infos = parse_all(urls, tls)?;
    let builder = ClusterClient::builder(infos)
        .tcp_settings(link::tcp_settings())
        .connection_timeout(op_timeout)
        .response_timeout(op_timeout)
        .retries(1);
    // Asked by each connection to each node, reconnections included.
    let builder = match credentials {
        Some(credentials) => builder.set_credentials_provider(credentials.clone()),
        None => builder,
    };
    #[cfg(feature = "tls")]
    let builder = match tls.certificates() {
        Some(certificates) => builder.certs(certificates),
        None => builder,
    };
    Ok(builder)
}

/// A client of the sentinels at `urls`, which names the primary of
/// `master_name`. The user name, password and database of the first URL
/// are used for the sentinels and for the primary alike; a `rediss://` URL
/// means TLS to both, with the same certificates.
pub(crate) fn sentinel(
    urls: &[String],
    master_name: &str,
    tls: &Tls,
) -> Result<SentinelClient, Error> {
    let infos = parse_all(urls, tls)?;
    let Some(first) = infos.first() else {
        return Err(Error::InvalidConfig("`sentinel` needs at least one URL"));
    };
    let settings = first.redis_settings().clone();
    let invalid = invalid(urls);
    let mut builder = SentinelClientBuilder::new(
        infos.iter().map(|i| i.addr().clone()),
        master_name,
        SentinelServerType::Master,
    )
    .map_err(invalid)?
    .set_client_to_redis_db(settings.db())
    .set_client_to_redis_tcp_settings(link::tcp_settings())
    .set_client_to_sentinel_tcp_settings(link::tcp_settings());
    if let Some(user) = settings.username() {
        builder = builder
            .set_client_to_redis_username(user)
            .set_client_to_sentinel_username(user);
    }
    if let Some(password) = settings.password() {
        builder = builder
            .set_client_to_redis_password(password)
            .set_client_to_sentinel_password(password);
    }
    if is_tls(first) {
        builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
    }
    #[cfg(feature = "tls")]
    if let Some(certificates) = tls.certificates() {
        builder = builder
            .set_client_to_redis_certificates(certificates.clone())
            .set_client_to_sentinel_certificates(certificates);
    }
    builder.build().map_err(invalid)
}
