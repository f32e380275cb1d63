//! Certificates for TLS tests, made at run time with `rcgen`: nothing is
//! checked in, so nothing expires in the repository, and every run has keys
//! no other run has.

use std::{
    fs,
    path::{Path, PathBuf},
};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// How a Redis started in TLS mode treats its clients, and which
/// certificate it shows them. In every mode the server listens for TLS only
/// (`--port 0 --tls-port …`): a plain-text client gets no answer it can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisTls {
    /// Clients check the server against [`TlsFiles::ca_cert`]; the server
    /// asks for no client certificate (`--tls-auth-clients no`).
    Server,
    /// Mutual TLS: every client must also show a certificate that the same CA
    /// signed, [`TlsFiles::client_cert`] and [`TlsFiles::client_key`]
    /// (`--tls-auth-clients yes`).
    Mutual,
    /// As [`Server`](Self::Server), but the server shows a certificate,
    /// signed by the right CA, that expired at the end of 2020: for tests of
    /// a client's refusal.
    ExpiredCertificate,
}

impl RedisTls {
    /// `--tls-auth-clients`'s value.
    pub(crate) fn auth_clients(self) -> &'static str {
        match self {
            Self::Mutual => "yes",
            Self::Server | Self::ExpiredCertificate => "no",
        }
    }
}

/// Where one server's certificates are: PEM files in the `tls` folder of its
/// temporary folder. Servers of one group (a cluster, a Sentinel group)
/// share one CA, so each trusts the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    folder: PathBuf,
}

impl TlsFiles {
    /// The files in `folder`.
    pub(crate) fn in_folder(folder: &Path) -> Self {
        Self {
            folder: folder.to_owned(),
        }
    }

    /// The CA that signed the servers' and the client's certificates: what a
    /// client trusts.
    #[must_use]
    pub fn ca_cert(&self) -> PathBuf {
        self.folder.join("ca.crt")
    }

    /// A client certificate the CA signed, for mutual TLS.
    #[must_use]
    pub fn client_cert(&self) -> PathBuf {
        self.folder.join("client.crt")
    }

    /// The client certificate's private key (PKCS#8).
    #[must_use]
    pub fn client_key(&self) -> PathBuf {
        self.folder.join("client.key")
    }

    /// Another CA, which signed none of the servers' certificates: a client
    /// that trusts only it must refuse every server of the kit.
    #[must_use]
    pub fn other_ca_cert(&self) -> PathBuf {
        self.folder.join("other-ca.crt")
    }

    /// A certificate and key that `other_ca_cert` signed: a client
    /// certificate a mutual-TLS server must refuse.
    #[must_use]
    pub fn other_client_cert_and_key(&self) -> (PathBuf, PathBuf) {
        (
            self.folder.join("other-client.crt"),
            self.folder.join("other-client.key"),
        )
    }

    /// The certificate and key the server shows in `mode`.
    pub(crate) fn server_cert_and_key(&self, mode: RedisTls) -> (PathBuf, PathBuf) {
        let name = match mode {
            RedisTls::ExpiredCertificate => "expired-server",
            RedisTls::Server | RedisTls::Mutual => "server",
        };
        (
            self.folder.join(format!("{name}.crt")),
            self.folder.join(format!("{name}.key")),
        )
    }
}

/// One set of certificates: a CA; a server certificate for `127.0.0.1` and
/// `localhost`, also good as a client certificate (a replica or a sentinel
/// shows it to the master); a client certificate; an expired server
/// certificate; and another CA with a client certificate of its own.
#[derive(Debug, Clone)]
pub(crate) struct TestCertificates {
    /// `(file name, PEM)` for every file [`TlsFiles`] names.
    files: Vec<(&'static str, String)>,
}

impl TestCertificates {
    /// Generates a fresh set (ECDSA P-256 keys: a few milliseconds).
    ///
    /// # Panics
    /// When rcgen fails, which it does only on invalid parameters.
    pub(crate) fn generate() -> Self {
        let (ca_pem, ca) = certificate_authority("session-kit test CA");
        let (other_ca_pem, other_ca) = certificate_authority("session-kit other CA");
        let server = leaf(
            &ca,
            "session-kit test server",
            Validity::Current,
            &BOTH_USES,
        );
        let expired = leaf(
            &ca,
            "session-kit expired server",
            Validity::Expired,
            &BOTH_USES,
        );
        let client = leaf(
            &ca,
            "session-kit test client",
            Validity::Current,
            &CLIENT_USE,
        );
        let other_client = leaf(
            &other_ca,
            "session-kit stranger",
            Validity::Current,
            &CLIENT_USE,
        );
        Self {
            files: vec![
                ("ca.crt", ca_pem),
                ("other-ca.crt", other_ca_pem),
                ("server.crt", server.0),
                ("server.key", server.1),
                ("expired-server.crt", expired.0),
                ("expired-server.key", expired.1),
                ("client.crt", client.0),
                ("client.key", client.1),
                ("other-client.crt", other_client.0),
                ("other-client.key", other_client.1),
            ],
        }
    }

    /// Writes every file into `folder/tls` and says where they are. Writing
    /// again (a restart) rewrites the same contents.
    ///
    /// # Panics
    /// When the files cannot be written.
    pub(crate) fn write(&self, folder: &Path) -> TlsFiles {
        let tls = folder.join("tls");
        fs::create_dir_all(&tls)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", tls.display()));
        for (name, pem) in &self.files {
            let path = tls.join(name);
            fs::write(&path, pem)
                .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        }
        TlsFiles { folder: tls }
    }
}

/// The extended key uses of a server certificate that replicas and
/// sentinels also show as clients: OpenSSL refuses a client certificate
/// that names only `serverAuth`.
const BOTH_USES: [ExtendedKeyUsagePurpose; 2] = [
    ExtendedKeyUsagePurpose::ServerAuth,
    ExtendedKeyUsagePurpose::ClientAuth,
];
const CLIENT_USE: [ExtendedKeyUsagePurpose; 1] = [ExtendedKeyUsagePurpose::ClientAuth];

#[derive(Clone, Copy)]
enum Validity {
    /// From the start of last year to ten years on: wide, since the year is
    /// reckoned roughly from the clock, and nothing else needs it exact.
    Current,
    /// All of 2020.
    Expired,
}

fn certificate_authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to check");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("rcgen generates a P-256 key");
    let pem = params.self_signed(&key).expect("rcgen signs").pem();
    (pem, Issuer::new(params, key))
}

/// A certificate for `127.0.0.1` and `localhost` that `issuer` signed, and
/// its key, both PEM.
fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    name: &str,
    validity: Validity,
    uses: &[ExtendedKeyUsagePurpose],
) -> (String, String) {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let mut params = CertificateParams::new(names).expect("valid names");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = uses.to_vec();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let year = i32::try_from(1970 + now / (365 * 24 * 3600)).unwrap_or(2026);
    (params.not_before, params.not_after) = match validity {
        Validity::Current => (
            date_time_ymd(year - 1, 1, 1),
            date_time_ymd(year + 10, 1, 1),
        ),
        Validity::Expired => (date_time_ymd(2020, 1, 1), date_time_ymd(2020, 12, 31)),
    };
    let key = KeyPair::generate().expect("rcgen generates a P-256 key");
    let cert = params.signed_by(&key, issuer).expect("rcgen signs");
    (cert.pem(), key.serialize_pem())
}
