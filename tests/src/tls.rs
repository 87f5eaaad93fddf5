//! Certificates made at test time with `openssl`, and `redis-server`s that
//! speak TLS with them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{RedisServer, free_port};

/// A CA, a server certificate it signed (for `127.0.0.1` and `localhost`)
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
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
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

impl TlsRedis {
    /// Starts a server whose TLS port presents `certs`' server
    /// certificate; with `client_auth`, it requires a client certificate
    /// signed by the CA.
    pub fn start(certs: &Certificates, client_auth: bool) -> Self {
        let tls_port = free_port();
        let path = |f: &str| certs.path(f).to_string_lossy().into_owned();
        let server = RedisServer::start_with(&[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &path("server.crt"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.crt"),
            "--tls-auth-clients",
            if client_auth { "yes" } else { "no" },
        ]);
        TlsRedis { server, tls_port }
    }

    /// `rediss://127.0.0.1:{tls port}/`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.tls_port)
    }
}
