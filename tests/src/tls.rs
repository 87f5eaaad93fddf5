//! Certificates made at test time with `openssl`, and `redis-server`s that
//! speak TLS with them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{RedisServer, free_port};

/// A CA, a server certificate it signed (for `127.0.0.1` and `localhost`;
/// also a client certificate, as cluster nodes present it to each other)
/// and a client certificate it signed, as PEM files in a directory of
/// their own (removed on drop).
pub struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    /// Makes a new CA and the certificates it signs.
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cache-tests-tls-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("cannot create the certificates' directory");
        let certs = Certificates { dir };
        certs.openssl(&[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=cache-tests CA",
        ]);
        certs.sign(
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        certs.sign("client", "extendedKeyUsage=clientAuth\n");
        certs
    }

    fn sign(&self, name: &str, extensions: &str) {
        let ext = format!("{name}.ext");
        std::fs::write(self.dir.join(&ext), extensions).expect("cannot write extensions");
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        self.openssl(&[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("cannot run openssl: is it installed? (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The path of one of the files: `ca.crt`, `server.crt`, `server.key`,
    /// `client.crt`, `client.key`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The contents of one of the files.
    pub fn pem(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).expect("cannot read a certificate")
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` with a TLS port beside its plain one (the plain one is
/// for the test's own assertions).
pub struct TlsRedis {
    /// The server; its plain port is [`RedisServer::port`].
    pub server: RedisServer,
    tls_port: u16,
}

/// The arguments that give a server a TLS port with `certs`' server
/// certificate.
pub fn tls_args(certs: &Certificates, tls_port: u16, client_auth: bool) -> Vec<String> {
    let path = |f: &str| certs.path(f).to_string_lossy().into_owned();
    [
        "--tls-port".to_owned(),
        tls_port.to_string(),
        "--tls-cert-file".to_owned(),
        path("server.crt"),
        "--tls-key-file".to_owned(),
        path("server.key"),
        "--tls-ca-cert-file".to_owned(),
        path("ca.crt"),
        "--tls-auth-clients".to_owned(),
        if client_auth { "yes" } else { "no" }.to_owned(),
    ]
    .to_vec()
}

/// A 3-node cluster whose nodes also listen with TLS (and talk to each
/// other over it); TLS clients are told the nodes' TLS ports.
pub struct TlsCluster {
    /// The cluster, joined over the plain ports.
    pub cluster: crate::RedisCluster,
    tls_ports: Vec<u16>,
}

impl TlsCluster {
    /// Starts the nodes with `certs`.
    pub fn start(certs: &Certificates) -> Self {
        let tls_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let cluster = crate::RedisCluster::start_with(|i| {
            let mut args = tls_args(certs, tls_ports[i], false);
            args.extend(["--tls-cluster", "yes"].map(String::from));
            args
        });
        TlsCluster { cluster, tls_ports }
    }

    /// `rediss://127.0.0.1:{tls port}/` of each node.
    pub fn urls(&self) -> Vec<String> {
        self.tls_ports
            .iter()
            .map(|p| format!("rediss://127.0.0.1:{p}/"))
            .collect()
    }
}

impl TlsRedis {
    /// Starts a server whose TLS port presents `certs`' server
    /// certificate; with `client_auth`, it requires a client certificate
    /// signed by the CA.
    pub fn start(certs: &Certificates, client_auth: bool) -> Self {
        let tls_port = free_port();
        let args = tls_args(certs, tls_port, client_auth);
        let server = RedisServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
        TlsRedis { server, tls_port }
    }

    /// `rediss://127.0.0.1:{tls port}/`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.tls_port)
    }
}
