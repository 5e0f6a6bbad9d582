//! A real SMTP server for the sign-in mail tests: aiosmtpd (scripts/install-test-tools.sh
//! installs it) on a loopback port, requiring STARTTLS with a certificate for `localhost` that a
//! test CA of its own signs (made here with the `openssl` command), and keeping every mail it
//! accepts in a Maildir.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

pub struct SmtpServer {
    pub port: u16,
    /// The test CA's certificate (PEM), for `CUTX_SMTP_CA_FILE`.
    pub ca_file: PathBuf,
    maildir: PathBuf,
    _child: Child,
    _dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("openssl").current_dir(dir).args(args).output().context("running openssl")?;
    anyhow::ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// A CA, and a `localhost` / 127.0.0.1 server certificate it signs (rustls refuses a CA
/// certificate as a server's own, so a bare self-signed one will not do).
fn certificates(dir: &Path) -> anyhow::Result<()> {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=cutx-test-ca"],
        ]
        .concat(),
    )?;
    openssl(dir, &[&["req"][..], &ec, &["-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=localhost"]].concat())?;
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    )
}

impl SmtpServer {
    /// `None` (after saying so) without aiosmtpd, unless `CUTX_REQUIRE_TOOLS=1`.
    pub async fn start() -> Option<Self> {
        let has = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd.controller"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has {
            assert!(
                !std::env::var("CUTX_REQUIRE_TOOLS").is_ok_and(|v| v == "1"),
                "aiosmtpd is not installed (scripts/install-test-tools.sh installs it)"
            );
            eprintln!("aiosmtpd not installed: skipped");
            return None;
        }
        Some(Self::try_start().await.expect("starting aiosmtpd"))
    }

    async fn try_start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        certificates(dir.path())?;
        let maildir = dir.path().join("mail");
        let port = crate::server::free_port();
        let child = Command::new("python3")
            .current_dir(dir.path())
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .args(["--tlscert", "cert.pem", "--tlskey", "key.pem"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "aiosmtpd did not listen on {port} within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { port, ca_file: dir.path().join("ca.pem"), maildir, _child: child, _dir: dir })
    }

    /// Every mail accepted so far, as received (headers and body).
    pub fn messages(&self) -> Vec<String> {
        let mut all = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else { continue };
            for entry in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    all.push(text);
                }
            }
        }
        all
    }
}
