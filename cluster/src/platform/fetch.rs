//! Release manifests fetched once: from upstream, the lab's mirror or a file of the lab, into
//! a cache addressed by their SHA-256, refused when the checksum differs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cloudlet_transport::download::{self, DownloadError, Limits};
use sha2::{Digest, Sha256};

use super::{Pin, Pinned};

/// The largest manifest file accepted (Calico's, the largest, is about 350 KB).
pub const MAX_BYTES: usize = 16 << 20;
/// How long one download may take.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Where release files come from and go.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The cache directory (`~/.cache/cloudlet/releases` by default).
    pub cache: PathBuf,
    /// The lab's directory: relative file paths and a relative mirror resolve against it.
    pub base_dir: PathBuf,
    /// A mirror standing in for upstream (`cluster.platform.mirror`).
    pub mirror: Option<String>,
    /// A CA to trust for an https mirror.
    pub mirror_ca: Option<PathBuf>,
}

/// Why a release file could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The download failed.
    #[error("fetching {release}: {source}")]
    Download {
        /// The component and release (`metallb v0.16.1`).
        release: Box<str>,
        /// Why.
        #[source]
        source: Box<DownloadError>,
    },
    /// A file of the lab or the mirror cannot be read.
    #[error("reading {} ({release}): {source}", path.display())]
    Read {
        /// The component and release.
        release: Box<str>,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The content is not what the checksum says.
    #[error(
        "{from} ({release}) has SHA-256 {got}, not the pinned {want}: refused (a changed or tampered release; if the new file is the one you want, pin its checksum)"
    )]
    Checksum {
        /// The component and release.
        release: Box<str>,
        /// Where it came from.
        from: String,
        /// What it hashes to.
        got: String,
        /// What was pinned.
        want: String,
    },
    /// Not UTF-8 text.
    #[error("{from} ({release}) is not UTF-8 text")]
    NotText {
        /// The component and release.
        release: Box<str>,
        /// Where it came from.
        from: String,
    },
    /// The cache cannot be written.
    #[error("writing the release cache {}: {source}", path.display())]
    Cache {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The default cache: `$CLOUDLET_CACHE_DIR`, else `$XDG_CACHE_HOME/cloudlet`, else
/// `~/.cache/cloudlet`, with `releases` below it.
pub fn default_cache() -> PathBuf {
    let base = std::env::var_os("CLOUDLET_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("cloudlet")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cloudlet")))
        .unwrap_or_else(|| std::env::temp_dir().join("cloudlet-cache"));
    base.join("releases")
}

/// The SHA-256 of `bytes`, hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Where a file is fetched from: the lab's file, the mirror's copy or upstream.
pub fn location(src: &Sources, pin: &Pin, file: &Pinned) -> String {
    if !file.url.contains("://") {
        return src.base_dir.join(&file.url).display().to_string();
    }
    let Some(mirror) = &src.mirror else {
        return file.url.clone();
    };
    let name = file
        .url
        .rsplit('/')
        .next()
        .unwrap_or(&file.url)
        .split(['?', '#'])
        .next()
        .unwrap_or_default();
    let rel = format!("{}/{}/{name}", pin.key, pin.version);
    if mirror.contains("://") {
        format!("{}/{rel}", mirror.trim_end_matches('/'))
    } else {
        src.base_dir.join(mirror).join(rel).display().to_string()
    }
}

/// The texts of `pin`'s files: from the cache when there, else fetched, checked and cached.
pub async fn fetch(src: &Sources, pin: &Pin) -> Result<Vec<Arc<str>>, FetchError> {
    let release = || Box::<str>::from(format!("{} {}", pin.key, pin.version));
    let mut out = Vec::with_capacity(pin.files.len());
    for f in &pin.files {
        let cached = src.cache.join("sha256").join(&f.sha256);
        if let Ok(bytes) = std::fs::read(&cached)
            && hex(&bytes) == f.sha256
            && let Ok(text) = String::from_utf8(bytes)
        {
            out.push(Arc::from(text));
            continue;
        }
        let from = location(src, pin, f);
        let bytes = if from.contains("://") {
            let ca = src
                .mirror_ca
                .as_ref()
                .filter(|_| src.mirror.is_some() && from != f.url)
                .map(|p| src.base_dir.join(p));
            download::get(
                &from,
                ca.as_deref(),
                Limits {
                    max_bytes: MAX_BYTES,
                    timeout: TIMEOUT,
                },
            )
            .await
            .map_err(|source| FetchError::Download {
                release: release(),
                source: Box::new(source),
            })?
            .to_vec()
        } else {
            cloudlet_core::load::read_regular(Path::new(&from), MAX_BYTES as u64).map_err(|e| {
                FetchError::Read {
                    release: release(),
                    path: PathBuf::from(&from),
                    source: std::io::Error::other(cloudlet_core::error::chain(&e)),
                }
            })?
        };
        let got = hex(&bytes);
        if got != f.sha256 {
            return Err(FetchError::Checksum {
                release: release(),
                from,
                got,
                want: f.sha256.clone(),
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| FetchError::NotText {
            release: release(),
            from: from.clone(),
        })?;
        store(&cached, text.as_bytes())?;
        out.push(Arc::from(text));
    }
    Ok(out)
}

/// Writes a cache entry whole or not at all.
fn store(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let err = |source| FetchError::Cache {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(
        ".{}.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
