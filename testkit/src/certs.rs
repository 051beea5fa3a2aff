//! A throwaway certificate authority made with the `openssl` command line, and certificates it
//! issues for the names a test chooses: real PEM files, as an operator's tooling would write
//! them, for TLS listeners, TLS upstreams and TLS clients in tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// ECDSA P-256 keys: quick to make, and accepted by every TLS stack in the tests.
const CURVE: &str = "ec_paramgen_curve:prime256v1";

/// A CA whose key and certificate live in a directory the caller owns.
pub struct TestCa {
    dir: PathBuf,
    name: String,
    issued: std::cell::Cell<u32>,
}

/// One certificate the CA issued: its PEM files.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The leaf certificate followed by nothing else (the CA signs leaves directly).
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// The certificate and its key in one file, as some servers take them.
    pub bundle: PathBuf,
}

impl TestCa {
    /// Makes a CA called `name` in `dir`, valid for two days.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        TestCa::try_new(dir, name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`TestCa::new`] for callers that report a failure rather than panic (the bench
    /// harness): what went wrong, with what `openssl` said.
    pub fn try_new(dir: &Path, name: &str) -> Result<TestCa, String> {
        let ca = TestCa {
            dir: dir.to_owned(),
            name: name.to_owned(),
            issued: std::cell::Cell::new(0),
        };
        let key = format!("{name}-ca.key");
        let cert = format!("{name}-ca.pem");
        let subject = format!("/CN={name} test CA");
        ca.openssl(&[
            "req", "-x509", "-newkey", "ec", "-pkeyopt", CURVE, "-nodes", "-keyout", &key, "-out",
            &cert, "-days", "2", "-subj", &subject,
        ])?;
        Ok(ca)
    }

    /// The CA's certificate, for clients and upstream verification to trust.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// Issues a server and client certificate for `names`: DNS names, or IP addresses (which
    /// go into the certificate as IP entries). The first name is also its common name.
    pub fn issue(&self, names: &[&str]) -> Issued {
        self.try_issue(names).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`TestCa::issue`], reporting a failure rather than panicking.
    pub fn try_issue(&self, names: &[&str]) -> Result<Issued, String> {
        let n = self.issued.get() + 1;
        self.issued.set(n);
        let stem = format!("{}-{n}", self.name);
        let (key, csr, cert, ext) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.pem"),
            format!("{stem}.ext"),
        );
        let cn = names.first().copied().unwrap_or("latch-test");
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            CURVE,
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ])?;
        let alt: Vec<String> = names
            .iter()
            .map(|n| {
                if n.parse::<std::net::IpAddr>().is_ok() {
                    format!("IP:{n}")
                } else {
                    format!("DNS:{n}")
                }
            })
            .collect();
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n",
                alt.join(",")
            ),
        )
        .map_err(|e| format!("write the certificate's extensions: {e}"))?;
        let ca_cert = format!("{}-ca.pem", self.name);
        let ca_key = format!("{}-ca.key", self.name);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ])?;
        let issued = Issued {
            cert: self.dir.join(&cert),
            key: self.dir.join(&key),
            bundle: self.dir.join(format!("{stem}-bundle.pem")),
        };
        let read = |path: &Path| std::fs::read(path).map_err(|e| format!("read {path:?}: {e}"));
        let mut bundle = read(&issued.cert)?;
        bundle.extend(read(&issued.key)?);
        std::fs::write(&issued.bundle, bundle).map_err(|e| format!("write the bundle: {e}"))?;
        Ok(issued)
    }

    fn openssl(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| format!("cannot run openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_certificate_names_its_hosts_and_verifies_against_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "unit");
        let issued = ca.issue(&["app.example.test", "127.0.0.1"]);
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&issued.cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("DNS:app.example.test"), "{text}");
        assert!(text.contains("IP Address:127.0.0.1"), "{text}");
        let verify = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(ca.cert())
            .arg(&issued.cert)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stderr)
        );
        let bundle = std::fs::read_to_string(&issued.bundle).unwrap();
        assert!(bundle.contains("BEGIN CERTIFICATE") && bundle.contains("PRIVATE KEY"));
    }
}
