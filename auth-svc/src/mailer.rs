//! Where sign-in links go. `cutx dev` writes them to the log and keeps them in a mailbox that
//! `GET /api/dev/mailbox` lists; SMTP delivery comes with its own issue.

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

/// Logs every link and keeps the last 500 for the dev mailbox.
#[derive(Clone, Default)]
pub struct DevMailbox {
    mail: Arc<Mutex<Vec<Mail>>>,
}

const KEEP: usize = 500;

impl DevMailbox {
    /// Everything caught, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        self.mail.lock().clone()
    }
}

#[async_trait]
impl Mailer for DevMailbox {
    async fn send(&self, mail: Mail) -> anyhow::Result<()> {
        tracing::info!(to = %mail.to, link = %mail.link, "sign-in link (dev mailbox: GET /api/dev/mailbox)");
        let mut all = self.mail.lock();
        all.push(mail);
        if all.len() > KEEP {
            let extra = all.len() - KEEP;
            all.drain(..extra);
        }
        Ok(())
    }
}
