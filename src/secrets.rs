//! The three secrets of a CutX deployment: sessions (user JWTs), the mesh (service tokens) and
//! media (signed URLs). Taken from `CUTX_*_SECRET` when set; `cutx dev` otherwise makes them once
//! and keeps them in its data folder (mode 0600), so sessions survive a restart.

use std::path::Path;

use anyhow::Context;
use cutx_platform::secret::Secret;
use serde::{Deserialize, Serialize};

/// As kept on disk. No `Debug`: these are the plain values.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    session: String,
    mesh: String,
    media: String,
}

#[derive(Clone, Debug)]
pub struct Secrets {
    pub session: Secret,
    pub mesh: Secret,
    pub media: Secret,
}

fn from_env(name: &str) -> anyhow::Result<Option<Secret>> {
    match std::env::var(name) {
        Ok(v) if v.len() >= 16 => Ok(Some(Secret::new(v))),
        Ok(_) => anyhow::bail!("{name} must be at least 16 characters"),
        Err(_) => Ok(None),
    }
}

impl Secrets {
    /// The environment's secrets, the rest from (or new into) `dir/secrets.json`.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("secrets.json");
        let stored: Stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let fresh = Stored {
                    session: Secret::random().expose().to_string(),
                    mesh: Secret::random().expose().to_string(),
                    media: Secret::random().expose().to_string(),
                };
                write_private(&path, &serde_json::to_vec_pretty(&fresh)?)?;
                fresh
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Self {
            session: from_env("CUTX_SESSION_SECRET")?.unwrap_or(Secret::new(stored.session)),
            mesh: from_env("CUTX_MESH_SECRET")?.unwrap_or(Secret::new(stored.mesh)),
            media: from_env("CUTX_MEDIA_SECRET")?.unwrap_or(Secret::new(stored.media)),
        })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}
