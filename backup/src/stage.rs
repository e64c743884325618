//! What a class backs up, staged as one directory: a consistent copy taken at one moment
//! (the source may change while the repository is written) and a manifest of every file's
//! SHA-256, size and mode. The manifest travels inside the snapshot, so a restore anywhere
//! can be checked byte for byte against what was read at backup time (level 3).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::BackupError;

/// The manifest's file name at the top of a staged directory.
pub const MANIFEST: &str = "cloudlet-manifest.json";

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// SHA-256 of its content, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its permission bits.
    pub mode: u32,
}

/// Every file of a staged directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The class (`state`, `cluster`).
    pub class: String,
    /// When the source was read (seconds since the Unix epoch).
    pub taken: u64,
    /// Each file by its path relative to the staged directory (`/`-separated).
    pub files: BTreeMap<String, Entry>,
}

pub(crate) fn io(path: &Path, doing: &'static str) -> impl Fn(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io {
        path: path.clone(),
        doing,
        source,
    }
}

/// SHA-256 and size of the file at `path`, read in chunks.
pub fn hash_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut f = std::fs::File::open(path).map_err(io(path, "reading"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path, "reading"))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex(&h.finalize()), size))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The regular files under `dir` (not following links), relative, `/`-separated, sorted.
fn files_under(dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), dir.to_path_buf())];
    while let Some((rel, d)) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d, "listing"))? {
            let e = e.map_err(io(&d, "listing"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let t = e.file_type().map_err(io(&e.path(), "reading"))?;
            if t.is_dir() {
                stack.push((r, e.path()));
            } else if t.is_file() {
                out.push((r, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Manifest {
    /// The manifest of every file under `dir` but a manifest already there.
    pub fn of(dir: &Path, class: &str, taken: u64) -> Result<Manifest, BackupError> {
        use rayon::prelude::*;
        // Files are hashed on every core: reading them back is the manifest's whole cost.
        let listed: Vec<(String, PathBuf)> = files_under(dir)?
            .into_iter()
            .filter(|(rel, _)| rel != MANIFEST)
            .collect();
        let entries: Vec<(String, Entry)> = listed
            .into_par_iter()
            .map(|(rel, p)| {
                let (sha256, size) = hash_file(&p)?;
                let mode = std::fs::metadata(&p)
                    .map_err(io(&p, "reading"))?
                    .permissions()
                    .mode()
                    & 0o7777;
                Ok((rel, Entry { sha256, size, mode }))
            })
            .collect::<Result<_, BackupError>>()?;
        let files: BTreeMap<String, Entry> = entries.into_iter().collect();
        Ok(Manifest {
            class: class.to_string(),
            taken,
            files,
        })
    }

    /// Writes the manifest into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), BackupError> {
        let p = dir.join(MANIFEST);
        let text = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        std::fs::write(&p, text).map_err(io(&p, "writing"))
    }

    /// The manifest a restored snapshot holds at `dir`.
    pub fn read(dir: &Path, snapshot: &str) -> Result<Manifest, BackupError> {
        let p = dir.join(MANIFEST);
        let bytes = std::fs::read(&p).map_err(|e| BackupError::Manifest {
            snapshot: snapshot.to_string(),
            message: format!("no readable {MANIFEST}: {e}"),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| BackupError::Manifest {
            snapshot: snapshot.to_string(),
            message: format!("{MANIFEST} is not a manifest: {e}"),
        })
    }

    /// How the files under `dir` differ from the manifest (content, size, mode, missing,
    /// extra); empty when they match.
    pub fn differences(&self, dir: &Path) -> Result<Vec<String>, BackupError> {
        let found = Manifest::of(dir, &self.class, self.taken)?;
        Ok(self.compare(&found))
    }

    /// How `found` (the files as restored) differs from this manifest; empty when they match.
    /// The manifest's own file is not compared.
    pub fn compare(&self, found: &Manifest) -> Vec<String> {
        let mut found = found.clone();
        found.files.remove(MANIFEST);
        let mut out = Vec::new();
        for (path, want) in &self.files {
            match found.files.get(path) {
                None => out.push(format!("{path}: missing")),
                Some(got) if got.sha256 != want.sha256 || got.size != want.size => {
                    out.push(format!(
                        "{path}: content differs ({} bytes, expected {})",
                        got.size, want.size
                    ))
                }
                Some(got) if got.mode != want.mode => out.push(format!(
                    "{path}: mode {:o}, expected {:o}",
                    got.mode, want.mode
                )),
                Some(_) => {}
            }
        }
        for path in found.files.keys() {
            if !self.files.contains_key(path) {
                out.push(format!("{path}: not in the manifest"));
            }
        }
        out
    }
}

/// A scratch directory of the system's temporary directory, named `cloudlet-PURPOSE-…`,
/// removed when dropped.
pub fn scratch(purpose: &str) -> Result<tempfile::TempDir, BackupError> {
    scratch_in(&std::env::temp_dir(), purpose)
}

/// [`scratch`] under `parent` (made when missing): on the filesystem its files move to.
pub fn scratch_in(parent: &Path, purpose: &str) -> Result<tempfile::TempDir, BackupError> {
    let io = |source| BackupError::Io {
        path: parent.to_path_buf(),
        doing: "making a scratch directory in",
        source,
    };
    std::fs::create_dir_all(parent).map_err(io)?;
    tempfile::Builder::new()
        .prefix(&format!("cloudlet-{purpose}-"))
        .tempdir_in(parent)
        .map_err(io)
}

/// Copies the regular files under `source` into `staging` (modes kept), but those whose
/// relative path starts with one of `skip`.
pub fn copy_tree(source: &Path, staging: &Path, skip: &[&str]) -> Result<(), BackupError> {
    for (rel, p) in files_under(source)? {
        if skip
            .iter()
            .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
        {
            continue;
        }
        let to = staging.join(&rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent, "making"))?;
        }
        std::fs::copy(&p, &to).map_err(io(&p, "copying"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_byte_a_changed_mode_and_a_missing_file_are_each_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/one"), "one").unwrap();
        std::fs::write(d.path().join("two"), "two").unwrap();
        std::fs::write(d.path().join("three"), "three").unwrap();
        std::fs::set_permissions(d.path().join("two"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let m = Manifest::of(d.path(), "state", 1).unwrap();
        m.write(d.path()).unwrap();
        assert_eq!(m.files.len(), 3);
        assert!(m.differences(d.path()).unwrap().is_empty());
        assert_eq!(Manifest::read(d.path(), "s").unwrap(), m);

        std::fs::write(d.path().join("a/one"), "onE").unwrap();
        std::fs::set_permissions(d.path().join("two"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::remove_file(d.path().join("three")).unwrap();
        std::fs::write(d.path().join("four"), "4").unwrap();
        let diff = m.differences(d.path()).unwrap();
        assert_eq!(
            diff,
            [
                "a/one: content differs (3 bytes, expected 3)",
                "three: missing",
                "two: mode 600, expected 644",
                "four: not in the manifest"
            ]
        );
    }
}
