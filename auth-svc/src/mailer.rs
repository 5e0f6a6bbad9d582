//! Where sign-in links go: an SMTP server ([`SmtpMailer`], distributed mode), or a mailbox that
//! `GET /api/dev/mailbox` lists ([`DevMailbox`]; `cutx dev` also writes each link to its log, the
//! only place a link is ever logged).

use std::sync::Arc;

use parking_lot::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub link: String,
    pub sent_at: DateTime<Utc>,
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, mail: Mail) -> anyhow::Result<()>;
}

/// Keeps the last 500 links for the dev mailbox; `cutx dev`'s also logs each one.
#[derive(Clone, Default)]
pub struct DevMailbox {
    mail: Arc<Mutex<Vec<Mail>>>,
    log_links: bool,
}

const KEEP: usize = 500;

impl DevMailbox {
    /// `cutx dev`'s: every link is logged as well, for the developer at the terminal.
    pub fn logging() -> Self {
        Self { log_links: true, ..Self::default() }
    }

    /// Everything caught, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        self.mail.lock().clone()
    }
}

#[async_trait]
impl Mailer for DevMailbox {
    async fn send(&self, mail: Mail) -> anyhow::Result<()> {
        if self.log_links {
            tracing::info!(to = %mail.to, link = %mail.link, "sign-in link (dev mailbox: GET /api/dev/mailbox)");
        }
        let mut all = self.mail.lock();
        all.push(mail);
        if all.len() > KEEP {
            let extra = all.len() - KEEP;
            all.drain(..extra);
        }
        Ok(())
    }
}

/// Where and how to reach the SMTP server.
#[derive(Clone)]
pub struct SmtpConfig {
    /// `smtps://user:pass@host:465` (TLS from the first byte), `smtp://user:pass@host:587`
    /// (STARTTLS, required), or `smtp://host:25?tls=none` (plain: loopback relays only).
    pub url: cutx_platform::secret::Secret,
    /// The sender, `CutX <login@example.com>`.
    pub from: String,
    /// PEM certificates to trust beside the public roots (a relay with a private CA).
    pub extra_roots_pem: Option<Vec<u8>>,
}

/// Why an SMTP configuration was refused. Never shows the URL: it holds the password.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("CUTX_SMTP_URL is not a URL like smtps://user:pass@smtp.example.com:465")]
    Url,
    #[error("CUTX_SMTP_URL must start with smtps:// (TLS) or smtp:// (STARTTLS)")]
    Scheme,
    #[error("CUTX_SMTP_URL: tls must be required (the default) or none")]
    TlsMode,
    #[error("CUTX_SMTP_URL: tls=none is only for a relay on a loopback address")]
    PlainRemote,
    #[error("CUTX_SMTP_FROM is not an address like \"CutX <login@example.com>\"")]
    From(#[source] lettre::address::AddressError),
    #[error("CUTX_SMTP_CA_FILE holds no usable PEM certificate")]
    Roots(#[source] lettre::transport::smtp::Error),
}

/// Sends each link as a plain-text mail through an SMTP server, over TLS or STARTTLS (lettre).
pub struct SmtpMailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl SmtpMailer {
    pub fn new(config: &SmtpConfig) -> Result<Self, SmtpConfigError> {
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        let url = url::Url::parse(config.url.expose()).map_err(|_| SmtpConfigError::Url)?;
        let host = url.host_str().ok_or(SmtpConfigError::Url)?.trim_matches(['[', ']']).to_string();
        let mode = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        let tls_params = || -> Result<TlsParameters, SmtpConfigError> {
            let mut builder = TlsParameters::builder(host.clone());
            if let Some(pem) = &config.extra_roots_pem {
                builder = builder.add_root_certificate(Certificate::from_pem(pem).map_err(SmtpConfigError::Roots)?);
            }
            builder.build_rustls().map_err(SmtpConfigError::Roots)
        };
        let (tls, default_port) = match (url.scheme(), mode.as_deref()) {
            ("smtps", None | Some("required")) => (Tls::Wrapper(tls_params()?), 465),
            ("smtp", None | Some("required")) => (Tls::Required(tls_params()?), 587),
            ("smtp", Some("none")) => {
                let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return Err(SmtpConfigError::PlainRemote);
                }
                (Tls::None, 25)
            }
            ("smtp" | "smtps", Some(_)) => return Err(SmtpConfigError::TlsMode),
            _ => return Err(SmtpConfigError::Scheme),
        };
        let mut builder = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(host.clone())
            .port(url.port().unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(std::time::Duration::from_secs(10)));
        if !url.username().is_empty() {
            let decode = |s: &str| percent_decode(s);
            builder = builder
                .credentials(Credentials::new(decode(url.username()), decode(url.password().unwrap_or_default())));
        }
        let from = config.from.parse().map_err(SmtpConfigError::From)?;
        Ok(Self { transport: builder.build(), from })
    }
}

/// A URL part percent-decoded (`pa%40ss` is `pa@ss`), through the url crate's form decoder
/// with `+` kept literal, rather than a dependency of its own.
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> anyhow::Result<()> {
        use lettre::AsyncTransport;
        let to: lettre::message::Mailbox = mail.to.parse()?;
        let body = format!(
            "Sign in to CutX with this link. It works once, for 15 minutes:\n\n{}\n\nIf you did not ask for it, ignore this mail.\n",
            mail.link
        );
        // lettre picks the transfer encoding: quoted-printable, as the link is longer than a
        // 7bit line may be; every mail reader decodes it.
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(body)?;
        // The error says what failed (connection, TLS, the server's reply), never the link.
        self.transport.send(message).await.map_err(|e| anyhow::anyhow!("SMTP delivery failed: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> SmtpConfig {
        SmtpConfig {
            url: cutx_platform::secret::Secret::new(url.into()),
            from: "CutX <login@example.com>".into(),
            extra_roots_pem: None,
        }
    }

    #[test]
    fn smtp_urls_are_tls_or_starttls_and_plain_only_on_loopback() {
        let table: [(&str, Option<&str>); 10] = [
            ("smtps://user:s3cret%40x@smtp.example.com:465", None),
            ("smtp://user:s3cret@smtp.example.com:587", None),
            ("smtp://smtp.example.com?tls=required", None),
            ("smtp://127.0.0.1:2525?tls=none", None),
            ("smtp://localhost:2525?tls=none", None),
            ("smtp://smtp.example.com:25?tls=none", Some("tls=none is only for a relay on a loopback address")),
            ("smtp://smtp.example.com?tls=opportunistic", Some("tls must be required")),
            ("http://smtp.example.com", Some("must start with smtps://")),
            ("smtp://user:s3cret@ bad", Some("is not a URL")),
            ("smtps://:s3cret@", Some("is not a URL")),
        ];
        for (url, want) in table {
            let got = SmtpMailer::new(&config(url)).err().map(|e| e.to_string());
            match (got, want) {
                (None, None) => {}
                (Some(got), Some(want)) => {
                    assert!(got.contains(want), "{url}: {got}");
                    assert!(!got.contains("s3cret"), "{url}: the error shows the URL");
                }
                (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_bad_sender_is_refused_naming_the_variable() {
        let bad = SmtpConfig { from: "not an address".into(), ..config("smtps://smtp.example.com") };
        let error = SmtpMailer::new(&bad).err().unwrap().to_string();
        assert!(error.contains("CUTX_SMTP_FROM"), "{error}");
    }
}
