//! The local provider: renders each resource to a file under an output directory.
//!
//! It is the default target of every domain: `cloudlet apply` on a lab with no real
//! backend writes the lab's desired state as files (`DOMAIN/KIND/NAME.json`), which the
//! embedded services and the `render` command use. Each file carries an ownership marker
//! (`managed_by: cloudlet` and the lab's name); files without it are never read as ours,
//! changed or deleted. Writes are atomic: a temporary file in the same directory, synced,
//! then renamed over the target.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ProviderError;
use crate::plan::FieldChange;
use crate::provider::Provider;
use crate::resource::{Body, Data, Domain, Resource, ResourceId};

/// The ownership marker written into every file.
pub const MANAGED_BY: &str = "cloudlet";

#[derive(Serialize, Deserialize)]
struct Envelope {
    managed_by: String,
    lab: String,
    id: ResourceId,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    depends_on: Vec<ResourceId>,
    #[serde(default, skip_serializing_if = "Data::is_none")]
    data: Data,
    body: Body,
}

/// Renders resources to files.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    root: PathBuf,
    lab: String,
}

fn safe_segment(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b':'))
}

impl LocalProvider {
    /// A provider writing under `root` for the lab `lab`.
    pub fn new(root: impl Into<PathBuf>, lab: impl Into<String>) -> Self {
        LocalProvider {
            root: root.into(),
            lab: lab.into(),
        }
    }

    /// The output directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file a resource is rendered to.
    pub fn path_of(&self, id: &ResourceId) -> Result<PathBuf, ProviderError> {
        if !safe_segment(&id.kind) || !safe_segment(&id.name) {
            return Err(ProviderError::InvalidData {
                what: id.to_string(),
                message: "kind and name must be plain file names".into(),
            });
        }
        let p = self
            .root
            .join(id.domain.as_str())
            .join(&*id.kind)
            .join(format!("{}.json", id.name));
        debug_assert!(p.components().all(|c| !matches!(c, Component::ParentDir)));
        Ok(p)
    }

    /// The file's content for a resource: the envelope with the body pretty-printed for
    /// people; reading canonicalizes it again.
    pub fn render(&self, r: &Resource) -> Vec<u8> {
        #[derive(Serialize)]
        struct Out<'a> {
            managed_by: &'a str,
            lab: &'a str,
            id: &'a ResourceId,
            #[serde(skip_serializing_if = "<[ResourceId]>::is_empty")]
            depends_on: &'a [ResourceId],
            #[serde(skip_serializing_if = "Data::is_none")]
            data: Data,
            body: serde_json::Value,
        }
        let out = Out {
            managed_by: MANAGED_BY,
            lab: &self.lab,
            id: &r.id,
            depends_on: &r.depends_on,
            data: r.data,
            body: r.body.value(),
        };
        let mut v = serde_json::to_vec_pretty(&out).unwrap_or_default();
        v.push(b'\n');
        v
    }

    async fn read_ours(&self, path: &Path) -> Result<Option<Resource>, ProviderError> {
        let bytes = match tokio::fs::read(path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ProviderError::Io {
                    op: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let Ok(env) = serde_json::from_slice::<Envelope>(&bytes) else {
            return Ok(None);
        };
        if env.managed_by != MANAGED_BY || env.lab != self.lab {
            return Ok(None);
        }
        Ok(Some(Resource {
            id: env.id,
            body: env.body,
            depends_on: env.depends_on,
            held: Vec::new(),
            data: env.data,
            grow_only: Vec::new(),
        }))
    }

    async fn write(&self, r: &Resource, must_be_ours: bool) -> Result<(), ProviderError> {
        let path = self.path_of(&r.id)?;
        let io = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| ProviderError::Io {
                op,
                path: p,
                source,
            }
        };
        if must_be_ours || tokio::fs::try_exists(&path).await.unwrap_or(false) {
            match self.read_ours(&path).await? {
                Some(_) => {}
                None if tokio::fs::try_exists(&path).await.unwrap_or(false) => {
                    return Err(ProviderError::NotOwned { id: r.id.clone() });
                }
                None => {}
            }
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io("create directory", &dir))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{file_name}.tmp"));
        let data = self.render(r);
        {
            use tokio::io::AsyncWriteExt;
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(io("create", &tmp))?;
            f.write_all(&data).await.map_err(io("write", &tmp))?;
            f.sync_all().await.map_err(io("sync", &tmp))?;
        }
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(io("rename", &path))?;
        Ok(())
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        let base = self.root.join(domain.as_str());
        let mut out = Vec::new();
        let mut kinds = match tokio::fs::read_dir(&base).await {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => {
                return Err(ProviderError::Io {
                    op: "list",
                    path: base,
                    source,
                });
            }
        };
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| ProviderError::Io {
                op: "list",
                path: p,
                source,
            }
        };
        while let Some(kind) = kinds.next_entry().await.map_err(io(&base))? {
            if !kind.file_type().await.map_err(io(&kind.path()))?.is_dir() {
                continue;
            }
            let kdir = kind.path();
            let mut files = tokio::fs::read_dir(&kdir).await.map_err(io(&kdir))?;
            while let Some(f) = files.next_entry().await.map_err(io(&kdir))? {
                let name = f.file_name();
                let name = name.to_string_lossy();
                // Temporary files of an interrupted write are not resources.
                if name.starts_with('.') || !name.ends_with(".json") {
                    continue;
                }
                let p = f.path();
                if let Some(r) = self.read_ours(&p).await? {
                    // A file whose id disagrees with its place is not trusted as ours.
                    if r.id.domain == domain
                        && self.path_of(&r.id).ok().as_deref() == Some(p.as_path())
                    {
                        out.push(r);
                    }
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn create(&self, resource: &Resource) -> Result<(), ProviderError> {
        self.write(resource, false).await
    }

    async fn update(
        &self,
        resource: &Resource,
        _changes: &[FieldChange],
    ) -> Result<(), ProviderError> {
        self.write(resource, true).await
    }

    async fn delete(&self, resource: &Resource) -> Result<(), ProviderError> {
        let path = self.path_of(&resource.id)?;
        match self.read_ours(&path).await? {
            Some(_) => tokio::fs::remove_file(&path)
                .await
                .map_err(|source| ProviderError::Io {
                    op: "remove",
                    path: path.clone(),
                    source,
                }),
            None if tokio::fs::try_exists(&path).await.unwrap_or(false) => {
                Err(ProviderError::NotOwned {
                    id: resource.id.clone(),
                })
            }
            None => Ok(()),
        }?;
        if let Some(dir) = path.parent() {
            let tmp = dir.join(format!(
                ".{}.tmp",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            let _ = tokio::fs::remove_file(tmp).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(name: &str, v: i64) -> Resource {
        Resource::new(ResourceId::new(Domain::Pxe, "menu", name), json!({"v": v}))
    }

    #[tokio::test]
    async fn round_trip_and_ownership() {
        let dir = tempfile::tempdir().unwrap();
        let p = LocalProvider::new(dir.path(), "lab1");
        p.create(&res("a", 1)).await.unwrap();
        p.update(&res("a", 2), &[]).await.unwrap();
        let seen = p.observe(Domain::Pxe).await.unwrap();
        assert_eq!(seen, vec![res("a", 2)]);

        // Another lab's file and a hand-made file are invisible and untouchable.
        let other = LocalProvider::new(dir.path(), "lab2");
        assert!(other.observe(Domain::Pxe).await.unwrap().is_empty());
        assert!(matches!(
            other.delete(&res("a", 2)).await,
            Err(ProviderError::NotOwned { .. })
        ));
        assert!(matches!(
            other.create(&res("a", 3)).await,
            Err(ProviderError::NotOwned { .. })
        ));
        let hand = dir.path().join("pxe/menu/hand.json");
        std::fs::write(&hand, "{\"mine\": true}").unwrap();
        assert_eq!(p.observe(Domain::Pxe).await.unwrap().len(), 1);
        assert!(matches!(
            p.delete(&res("hand", 0)).await,
            Err(ProviderError::NotOwned { .. })
        ));
        assert!(hand.exists());

        p.delete(&res("a", 2)).await.unwrap();
        assert!(p.observe(Domain::Pxe).await.unwrap().is_empty());
    }

    #[test]
    fn unsafe_names_are_refused() {
        let p = LocalProvider::new("/nonexistent", "l");
        for bad in ["../x", "a/b", ".hidden", ""] {
            assert!(
                p.path_of(&ResourceId::new(Domain::Pxe, "menu", bad))
                    .is_err(),
                "{bad}"
            );
        }
    }
}
