//! The lab's secrets at rest: one directory under the state directory, each secret a file
//! encrypted with age to the lab's key (an X25519 identity, `AGE-SECRET-KEY-1...`, read from
//! an environment variable or a file: never from the lab's text). Nothing secret is written
//! anywhere else, so backing up the directory and escrowing the key is enough to restore
//! them. `vault.json` records the format and the key's public recipient (not a secret), so a
//! wrong key is refused by name before anything is decrypted.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret as _;

/// The format this build writes and reads.
pub const FORMAT: u32 = 1;

/// A vault that cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The key is not an age X25519 identity (its text is never shown).
    #[error(
        "the vault key is not an age identity (`AGE-SECRET-KEY-1...`, as age-keygen or `cloudlet key new` writes it)"
    )]
    Key,
    /// No key was given.
    #[error(
        "no vault key: set ${KEY_ENV} to it, or ${KEY_FILE_ENV} to a file holding it (`cloudlet key new` makes one; keep it outside the lab and its state directory)"
    )]
    NoKey,
    /// The vault was written for another key.
    #[error("the vault at {} was written for the key whose recipient is {expected}; the key given is {given}'s", dir.display())]
    WrongKey {
        /// The vault directory.
        dir: PathBuf,
        /// The recipient it was written for.
        expected: String,
        /// The recipient of the key given.
        given: String,
    },
    /// A format this build does not read.
    #[error("the vault at {} has format {found}; this build reads format {FORMAT}", dir.display())]
    Format {
        /// The vault directory.
        dir: PathBuf,
        /// Its format.
        found: u32,
    },
    /// A secret's name that is not a plain file name.
    #[error("`{0}` is not a secret name (a-z, 0-9, `-`, `_`, `.`; not starting with `.`)")]
    Name(String),
    /// A file could not be read or written.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A secret could not be decrypted (a damaged file, or one written for another key).
    #[error("decrypting {}", path.display())]
    Decrypt {
        /// The file.
        path: PathBuf,
        /// What age said.
        #[source]
        source: Box<age::DecryptError>,
    },
    /// A secret could not be encrypted.
    #[error("encrypting `{name}`")]
    Encrypt {
        /// The secret.
        name: String,
        /// What age said.
        #[source]
        source: Box<age::EncryptError>,
    },
}

/// A new vault key (an age X25519 identity). Keep it outside the lab and the state
/// directory: it is what restores the lab's secrets.
pub fn new_key() -> String {
    age::x25519::Identity::generate()
        .to_string()
        .expose_secret()
        .to_string()
}

/// The environment variable holding the vault key's text.
pub const KEY_ENV: &str = "CLOUDLET_VAULT_KEY";
/// The environment variable naming a file that holds the vault key.
pub const KEY_FILE_ENV: &str = "CLOUDLET_VAULT_KEY_FILE";

/// The vault key: the text of `$CLOUDLET_VAULT_KEY`, or of the file `$CLOUDLET_VAULT_KEY_FILE`
/// names (never the lab's text, never the state directory).
pub fn key_from_env() -> Result<String, VaultError> {
    if let Ok(k) = std::env::var(KEY_ENV)
        && !k.trim().is_empty()
    {
        return Ok(k);
    }
    match std::env::var_os(KEY_FILE_ENV) {
        Some(f) => {
            let path = PathBuf::from(f);
            std::fs::read_to_string(&path).map_err(io("reading", &path))
        }
        None => Err(VaultError::NoKey),
    }
}

/// An open vault.
pub struct Vault {
    dir: PathBuf,
    identity: age::x25519::Identity,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("dir", &self.dir)
            .field("recipient", &self.identity.to_public().to_string())
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Manifest {
    format: u32,
    recipient: String,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VaultError + 'a {
    move |source| VaultError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// Writes `bytes` to `path` through a temporary file renamed into place, readable by the
/// owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("writing", &tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming", &tmp))
}

impl Vault {
    /// Opens the vault in `dir` with `key` (made on first use: the directory with mode 0700
    /// and its manifest). A vault written for another key is refused.
    pub fn open(dir: impl Into<PathBuf>, key: &str) -> Result<Vault, VaultError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = dir.into();
        let identity: age::x25519::Identity = key.trim().parse().map_err(|_| VaultError::Key)?;
        let recipient = identity.to_public().to_string();
        let manifest = dir.join("vault.json");
        match std::fs::read(&manifest) {
            Ok(bytes) => {
                let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| VaultError::Io {
                    op: "reading",
                    path: manifest.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                })?;
                if m.format != FORMAT {
                    return Err(VaultError::Format {
                        dir,
                        found: m.format,
                    });
                }
                if m.recipient != recipient {
                    return Err(VaultError::WrongKey {
                        dir,
                        expected: m.recipient,
                        given: recipient,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(io("creating", &dir))?;
                let m = Manifest {
                    format: FORMAT,
                    recipient,
                };
                let text = serde_json::to_vec_pretty(&m).unwrap_or_default();
                write_private(&manifest, &text)?;
            }
            Err(e) => return Err(io("reading", &manifest)(e)),
        }
        Ok(Vault { dir, identity })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf, VaultError> {
        if !valid_name(name) {
            return Err(VaultError::Name(name.chars().take(64).collect()));
        }
        Ok(self.dir.join(format!("{name}.age")))
    }

    /// Stores `value` as `name`, replacing what was there.
    pub fn put(&self, name: &str, value: &[u8]) -> Result<(), VaultError> {
        let path = self.path(name)?;
        let sealed = age::encrypt(&self.identity.to_public(), value).map_err(|source| {
            VaultError::Encrypt {
                name: name.to_string(),
                source: Box::new(source),
            }
        })?;
        write_private(&path, &sealed)
    }

    /// The secret `name`, `None` when there is none.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, VaultError> {
        let path = self.path(name)?;
        let sealed = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        age::decrypt(&self.identity, &sealed)
            .map(Some)
            .map_err(|source| VaultError::Decrypt {
                path,
                source: Box::new(source),
            })
    }

    /// The names of the secrets stored.
    pub fn names(&self) -> Result<Vec<String>, VaultError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io("reading", &self.dir))? {
            let e = e.map_err(io("reading", &self.dir))?;
            if let Some(n) = e.file_name().to_str().and_then(|n| n.strip_suffix(".age")) {
                out.push(n.to_string());
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_encrypted_and_a_wrong_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let key = new_key();
        let v = Vault::open(dir.path().join("vault"), &key).unwrap();
        v.put("cluster-ca", b"-----BEGIN PRIVATE KEY-----\nsecret\n")
            .unwrap();
        assert_eq!(
            v.get("cluster-ca").unwrap().as_deref(),
            Some(&b"-----BEGIN PRIVATE KEY-----\nsecret\n"[..])
        );
        assert_eq!(v.get("nothing").unwrap(), None);
        assert_eq!(v.names().unwrap(), vec!["cluster-ca".to_string()]);
        // Nothing in the directory holds the secret in the clear, and only the owner reads it.
        for e in std::fs::read_dir(v.dir()).unwrap() {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            assert!(!bytes.windows(6).any(|w| w == b"secret"), "{}", p.display());
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        // Reopened with the same key, it reads; with another, it is refused before decrypting.
        let again = Vault::open(dir.path().join("vault"), &key).unwrap();
        assert!(again.get("cluster-ca").unwrap().is_some());
        let other = new_key();
        let e = Vault::open(dir.path().join("vault"), &other).unwrap_err();
        assert!(matches!(e, VaultError::WrongKey { .. }), "{e}");
        assert!(!e.to_string().contains("AGE-SECRET-KEY"), "{e}");
        // A key that is not one is refused without being echoed.
        let e = Vault::open(dir.path().join("v2"), "hunter2").unwrap_err();
        assert!(matches!(e, VaultError::Key));
        assert!(!format!("{e} {e:?}").contains("hunter2"));
        // Names cannot leave the directory.
        assert!(matches!(v.put("../x", b"y"), Err(VaultError::Name(_))));
    }
}
