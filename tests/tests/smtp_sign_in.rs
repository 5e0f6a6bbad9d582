//! Sign-in links in distributed mode go by mail: `cutx auth` sends them through a real SMTP
//! server (aiosmtpd, requiring STARTTLS, with a certificate from a CA the test makes and
//! `CUTX_SMTP_CA_FILE` trusts), and no process of the mesh writes a link to its log. With
//! neither SMTP nor an explicit dev mailbox, `cutx auth` refuses to start.

use std::time::Duration;

use cutx_tests::smtp::SmtpServer;
use cutx_tests::{Client, Infra, Server, Transport, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_arrives_by_smtp_over_starttls_and_in_no_log_line() {
    let Some(infra) = Infra::from_env() else { return };
    let Some(smtp) = SmtpServer::start().await else { return };
    let url = format!("smtp://localhost:{}", smtp.port);
    let ca = smtp.ca_file.to_str().unwrap().to_string();
    let env = [
        ("CUTX_DEV_MAILBOX", "false"),
        ("CUTX_SMTP_URL", url.as_str()),
        ("CUTX_SMTP_FROM", "CutX <login@cutx.test>"),
        ("CUTX_SMTP_CA_FILE", ca.as_str()),
        // Everything an operator might log at, so that a logged link would show.
        ("CUTX_LOG", "info"),
    ];
    let server = Server::spawn_distributed_with(&infra, &env).await;
    let mut client = Client::new(&server, Transport::Rest);
    client.request_magic_link("mailed@example.com").await.expect("a link is sent");

    let mail = eventually("the sign-in mail", Duration::from_secs(20), || async {
        smtp.messages().into_iter().find(|m| m.contains("mailed@example.com"))
    })
    .await;
    assert!(mail.contains("From: CutX <login@cutx.test>"), "{mail}");
    assert!(mail.contains("Subject: Your CutX sign-in link"), "{mail}");
    assert!(mail.contains("Content-Transfer-Encoding: quoted-printable"), "{mail}");
    // As a mail reader shows it: soft line breaks joined, `=3D` back to `=`.
    let text = mail.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let prefix = format!("{}/api/auth/verify?token=", server.base);
    let at = text.find(&prefix).unwrap_or_else(|| panic!("no link in {mail}")) + prefix.len();
    let token: String = text[at..].chars().take_while(char::is_ascii_hexdigit).collect();
    assert_eq!(token.len(), 64, "{mail}");

    let verified = client.verify(&token).await.expect("the mailed link signs in");
    client.set_token(Some(verified.token));
    assert_eq!(client.me().await.unwrap().email, "mailed@example.com");
    // There is no mailbox to read links from.
    let mailbox = cutx_tests::http().get(format!("{}/api/dev/mailbox", server.base)).send().await.unwrap();
    assert_eq!(mailbox.status(), 404);

    let lines = server.log_lines();
    assert!(!lines.is_empty(), "the processes' logs were captured");
    let leaked: Vec<_> = lines.iter().filter(|l| l.contains(&token) || l.contains("/api/auth/verify?")).collect();
    assert!(leaked.is_empty(), "a sign-in link in the logs: {leaked:?}");
    server.stop().await;
}

#[tokio::test]
async fn distributed_auth_with_neither_smtp_nor_a_dev_mailbox_refuses_to_start() {
    let base = [
        ("CUTX_BILLING_ADDR", "http://127.0.0.1:9"),
        ("CUTX_PUBLIC_URL", "https://cutx.example.com"),
        ("CUTX_DATABASE_URL", "postgres://nobody@127.0.0.1:9/none"),
        ("CUTX_SESSION_SECRET", "a-session-secret-of-32-characters"),
        ("CUTX_MESH_SECRET", "a-mesh-secret-of-32-characters-x"),
        ("CUTX_LISTEN", "127.0.0.1:0"),
    ];
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "CUTX_SMTP_URL"),
        (&[("CUTX_SMTP_URL", "smtp://localhost:2525")], "CUTX_SMTP_FROM is required"),
        (
            &[("CUTX_SMTP_URL", "smtp://localhost:2525"), ("CUTX_SMTP_FROM", "a@b.test"), ("CUTX_DEV_MAILBOX", "true")],
            "both set",
        ),
    ];
    for (extra, said) in cases {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new(cutx_tests::server::binary().unwrap())
                .arg("auth")
                .env_clear()
                .envs(base.iter().chain(extra).copied())
                .output(),
        )
        .await
        .expect("cutx auth exits at once")
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?}: started");
        assert!(stderr.contains(said), "{extra:?}: {stderr}");
    }
}
