//! What the TFTP server may serve: a virtual namespace, never a raw directory walk.
//!
//! A name is looked up in the in-memory files first, then under the root directory. Names with
//! `..` or `.` segments, a leading `/`, backslashes, control characters or NUL are refused
//! before anything touches the file system, and a name that resolves (through symlinks)
//! outside the root is refused too.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a name is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The name is malformed or tries to leave the namespace.
    Forbidden(&'static str),
    /// No such file.
    NotFound,
}

/// Something to serve.
#[derive(Debug)]
pub enum Source {
    /// Bytes held in memory (rendered menus and scripts).
    Memory(Arc<[u8]>),
    /// An open file and its length.
    File(File, u64),
}

impl Source {
    /// The length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Source::Memory(b) => b.len() as u64,
            Source::File(_, n) => *n,
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads up to `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        match self {
            Source::Memory(b) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
                let n = buf.len().min(b.len() - start);
                buf[..n].copy_from_slice(&b[start..start + n]);
                Ok(n)
            }
            Source::File(f, _) => {
                use std::os::unix::fs::FileExt;
                let mut done = 0;
                while done < buf.len() {
                    let n = f.read_at(&mut buf[done..], offset + done as u64)?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                Ok(done)
            }
        }
    }
}

/// Files rendered per request: a machine's own boot config, which depends on who asks and
/// on the machine's install state.
pub trait Dynamic: Send + Sync {
    /// The bytes of `name` for the client at `peer`, or `None` when this layer has no such
    /// file (the lookup goes on to the static files). `name` has passed [`check_name`].
    fn open(&self, name: &str, peer: IpAddr) -> Option<Arc<[u8]>>;
}

/// The files a TFTP server serves.
#[derive(Clone, Default)]
pub struct Namespace {
    root: Option<PathBuf>,
    memory: BTreeMap<String, Arc<[u8]>>,
    dynamic: Option<Arc<dyn Dynamic>>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("root", &self.root)
            .field("memory", &self.memory.keys().collect::<Vec<_>>())
            .field("dynamic", &self.dynamic.is_some())
            .finish()
    }
}

/// Checks a requested name; returns it without surprises or says why not. One leading `/`
/// names the namespace's own root, as GRUB and many firmwares ask (`/grub/grub.cfg`) and as
/// tftpd-hpa's `-s` and dnsmasq take it: it is dropped, and what remains is checked like any
/// name (so `//etc` and `/../x` are refused).
pub fn check_name(name: &str) -> Result<&str, Refusal> {
    let name = name.strip_prefix('/').unwrap_or(name);
    if name.is_empty() {
        return Err(Refusal::Forbidden("empty file name"));
    }
    if name.starts_with('/') {
        return Err(Refusal::Forbidden("absolute paths are not served"));
    }
    if name.contains('\\') {
        return Err(Refusal::Forbidden("backslashes are not allowed"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(Refusal::Forbidden("control characters are not allowed"));
    }
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(Refusal::Forbidden(
            "`.`, `..` and empty path segments are not allowed",
        ));
    }
    Ok(name)
}

impl Namespace {
    /// An empty namespace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves files under `root` (read-only).
    pub fn with_root(mut self, root: impl AsRef<Path>) -> std::io::Result<Self> {
        self.root = Some(root.as_ref().canonicalize()?);
        Ok(self)
    }

    /// Serves `bytes` as `name` (takes precedence over the root directory).
    pub fn with_file(mut self, name: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> Self {
        self.memory.insert(name.into(), bytes.into());
        self
    }

    /// Asks `dynamic` first for every name (checked before it sees it).
    #[must_use]
    pub fn with_dynamic(mut self, dynamic: Arc<dyn Dynamic>) -> Self {
        self.dynamic = Some(dynamic);
        self
    }

    /// Opens a requested name (without a client: the dynamic layer is not asked).
    pub fn open(&self, name: &str) -> Result<Source, Refusal> {
        self.open_for(name, None)
    }

    /// Opens a name requested by the client at `peer`.
    pub fn open_for(&self, name: &str, peer: Option<IpAddr>) -> Result<Source, Refusal> {
        let name = check_name(name)?;
        if let (Some(d), Some(peer)) = (&self.dynamic, peer)
            && let Some(b) = d.open(name, peer)
        {
            return Ok(Source::Memory(b));
        }
        if let Some(b) = self.memory.get(name) {
            return Ok(Source::Memory(b.clone()));
        }
        let Some(root) = &self.root else {
            return Err(Refusal::NotFound);
        };
        let path = root.join(name);
        let real = match path.canonicalize() {
            Ok(p) => p,
            Err(_) => return Err(Refusal::NotFound),
        };
        if !real.starts_with(root) {
            return Err(Refusal::Forbidden(
                "the name leads outside the served directory",
            ));
        }
        // Regular files only, opened without blocking: a FIFO or a device in the served
        // directory would otherwise block the open, and with it the whole service.
        if !std::fs::metadata(&real).is_ok_and(|m| m.is_file()) {
            return Err(Refusal::NotFound);
        }
        let file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&real)
                .map_err(|_| Refusal::NotFound)?
        };
        let meta = file.metadata().map_err(|_| Refusal::NotFound)?;
        if !meta.is_file() {
            return Err(Refusal::NotFound);
        }
        Ok(Source::File(file, meta.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_corpus_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("ok.txt"), b"ok").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("ok.txt"), root.join("inside")).unwrap();
        let ns = Namespace::new().with_root(&root).unwrap();
        for bad in [
            "../secret",
            "a/../../secret",
            "//etc/passwd",
            "/../secret",
            "/",
            "..\\secret",
            "ok.txt\0",
            "./ok.txt",
            "a//b",
            "",
            "\u{7f}",
        ] {
            assert!(
                matches!(ns.open(bad), Err(Refusal::Forbidden(_))),
                "{bad:?} was not refused"
            );
        }
        assert!(
            matches!(ns.open("escape"), Err(Refusal::Forbidden(_))),
            "symlink escape"
        );
        assert!(matches!(ns.open("missing"), Err(Refusal::NotFound)));
        // A name from the namespace's root is the same name: never the host's root.
        assert!(matches!(ns.open("/etc/passwd"), Err(Refusal::NotFound)));
        assert_eq!(ns.open("ok.txt").unwrap().len(), 2);
        assert_eq!(ns.open("/ok.txt").unwrap().len(), 2);
        assert_eq!(
            ns.open("inside").unwrap().len(),
            2,
            "a symlink inside the root is fine"
        );
    }

    #[test]
    fn memory_files_win() {
        let ns = Namespace::new().with_file("pxelinux.cfg/default", b"DEFAULT local\n".to_vec());
        let s = ns.open("pxelinux.cfg/default").unwrap();
        let mut buf = [0u8; 64];
        let n = s.read_at(&mut buf, 8).unwrap();
        assert_eq!(&buf[..n], b"local\n");
    }
}
