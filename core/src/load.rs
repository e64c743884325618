//! Loading a lab from one YAML file or a directory of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::de::{DeError, from_node};
use crate::diag::{Diagnostic, Severity, did_you_mean, sort};
use crate::error::LoadError;
use crate::model::Lab;
use crate::source::{Key, Mark, Node, NodeKind, SourceMap, Sources, parse_yaml};

/// A lab as loaded: the typed model, the tree it came from, and where it lives.
#[derive(Debug, Clone)]
pub struct LoadedLab {
    /// The typed model.
    pub lab: Lab,
    /// Positions of every node, for diagnostics.
    pub source: SourceMap,
    /// The directory relative paths in the lab are resolved against.
    pub base_dir: PathBuf,
}

/// Paths whose mappings may be split across files; any other key set twice is an error.
const MERGEABLE: &[&str] = &[
    "",
    "targets",
    "hosts",
    "networks",
    "machines",
    "pxe",
    "pxe.profiles",
    "storage",
    "storage.exports",
    "cluster",
    "cluster.apps",
];

/// The largest lab file read. Labs of thousands of apps stay far below it; past it a file is
/// refused before it is read, so a stray file cannot take the loader's memory.
pub const MAX_LAB_FILE: u64 = 32 << 20;

/// Whether a YAML text in a lab directory is not a lab file but one the lab references: a
/// Kubernetes manifest (top-level `apiVersion` and `kind`) or a docker-compose file (top-level
/// `services`). Those are read through `cluster.manifests` and `cluster.compose`.
fn foreign(text: &str) -> bool {
    let mut keys = Vec::new();
    for line in text.lines() {
        if line.starts_with("---") && !keys.is_empty() {
            break;
        }
        if line.starts_with('{') {
            // A JSON document: its keys are quoted.
            return line.contains("\"apiVersion\"") && line.contains("\"kind\"");
        }
        if line.starts_with(|c: char| c.is_ascii_alphabetic())
            && let Some((k, _)) = line.split_once(':')
        {
            keys.push(k.trim());
        }
    }
    (keys.contains(&"apiVersion") && keys.contains(&"kind")) || keys.contains(&"services")
}

/// Reads a file the lab names, refusing what is not a regular file (a FIFO or a device would
/// block or never end) and anything larger than `limit` bytes, before reading it.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    use std::io::Read as _;
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(LoadError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > limit {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit,
        });
    }
    let file = open_nonblocking(path).map_err(io)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// A text file the lab references (a compose file, a manifest), read like a lab file:
/// regular files only, at most [`MAX_LAB_FILE`] bytes, UTF-8.
pub fn read_text(path: &Path) -> Result<String, LoadError> {
    let bytes = read_regular(path, MAX_LAB_FILE)?;
    String::from_utf8(bytes).map_err(|e| LoadError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

/// Opens for reading without blocking on a FIFO that was swapped in after the check.
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// A lab file as text, or a diagnostic at the first byte that is not UTF-8.
fn decode(path: &Path, bytes: Vec<u8>) -> Result<String, Box<Diagnostic>> {
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // Valid by construction: the prefix before the first invalid byte.
        let before = std::str::from_utf8(good).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let bad = e.as_bytes()[good.len()];
        Diagnostic::at_location(
            Severity::Error,
            "encoding",
            Some(crate::source::Location {
                file: path.to_path_buf(),
                line,
                column,
            }),
            format!("byte 0x{bad:02x} is not UTF-8: lab files are UTF-8 text"),
        )
        .help("save the file as UTF-8 (for example `iconv -f latin1 -t utf-8`)")
        .into()
    })
}

/// The lab files under `path`: `*.yaml` / `*.yml`, recursively, hidden entries and
/// referenced manifests and compose files left out; links to directories are followed once
/// (a link back into the tree is an error).
pub fn lab_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut seen = std::collections::HashSet::new();
    seen.insert((meta.dev(), meta.ino()));
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| LoadError::Io {
            path: dir.clone(),
            source,
        })?;
        for e in entries {
            let e = e.map_err(|source| LoadError::Io {
                path: dir.clone(),
                source,
            })?;
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            // Follows links; a dangling link is left to the read below to report.
            let Ok(m) = std::fs::metadata(&p) else {
                if name.ends_with(".yaml") || name.ends_with(".yml") {
                    out.push(p);
                }
                continue;
            };
            if m.is_dir() {
                if !seen.insert((m.dev(), m.ino())) {
                    return Err(LoadError::DirectoryLoop { path: p });
                }
                stack.push(p);
            } else if (name.ends_with(".yaml") || name.ends_with(".yml"))
                && !read_regular(&p, MAX_LAB_FILE)
                    .is_ok_and(|b| foreign(&String::from_utf8_lossy(&b)))
            {
                // What cannot be read stays in the list: reading it again reports why.
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(LoadError::NoLabFiles {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// Loads a lab from a file or a directory.
pub fn load(path: &Path) -> Result<LoadedLab, LoadError> {
    let files = lab_files(path)?;
    let mut texts = Vec::with_capacity(files.len());
    let mut diags = Vec::new();
    for f in &files {
        let bytes = read_regular(f, MAX_LAB_FILE)?;
        match decode(f, bytes) {
            Ok(text) => texts.push((f.clone(), text)),
            Err(d) => diags.push(*d),
        }
    }
    if !diags.is_empty() {
        return Err(LoadError::invalid(diags, Sources::default()));
    }
    let base_dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    load_texts(texts, base_dir)
}

/// Loads a lab from in-memory texts (file name, text), as if read from those files.
pub fn load_texts(
    texts: Vec<(PathBuf, String)>,
    base_dir: PathBuf,
) -> Result<LoadedLab, LoadError> {
    let mut sources = Sources::default();
    let mut diags = Vec::new();
    let mut root: Option<Node> = None;
    for (path, text) in texts {
        let text: Arc<str> = Arc::from(text);
        let id = sources.add(path, text.clone());
        match parse_yaml(id, &text) {
            Err(errs) => diags.extend(errs.into_iter().map(|e| e.diagnostic(&sources))),
            Ok(docs) => {
                for doc in docs {
                    if let NodeKind::Scalar(crate::source::Scalar::Null) = doc.kind {
                        continue;
                    }
                    if !matches!(doc.kind, NodeKind::Map(_)) {
                        diags.push(
                            Diagnostic::at_location(
                                Severity::Error,
                                "type",
                                Some(sources.location(doc.mark)),
                                format!("a lab file holds a mapping, found {}", doc.describe()),
                            )
                            .help("start the file with keys such as `name:`, `machines:` or `cluster:`"),
                        );
                        continue;
                    }
                    root = Some(match root.take() {
                        None => doc,
                        Some(prev) => merge(prev, doc, "", &sources, &mut diags),
                    });
                }
            }
        }
    }
    let map = SourceMap { sources, root };
    if !diags.is_empty() {
        sort(&mut diags);
        return Err(LoadError::invalid(diags, map.sources));
    }
    let Some(root) = map.root.as_ref() else {
        return Err(LoadError::Invalid {
            diagnostics: vec![
                Diagnostic::at_location(Severity::Error, "empty", None, "the lab is empty")
                    .help("a lab needs at least `name:` and `site:`"),
            ],
            sources: map.sources,
        });
    };
    match from_node::<Lab>(root) {
        Ok(lab) => Ok(LoadedLab {
            lab,
            source: map,
            base_dir,
        }),
        Err(first) => {
            let mut errors = collect_entry_errors(root);
            if !errors
                .iter()
                .any(|e| e.mark == first.mark && e.message == first.message)
            {
                errors.push(first);
            }
            let mut diags: Vec<Diagnostic> =
                errors.into_iter().map(|e| de_diagnostic(e, &map)).collect();
            sort(&mut diags);
            diags.dedup_by(|a, b| a.location == b.location && a.message == b.message);
            Err(LoadError::invalid(diags, map.sources))
        }
    }
}

/// Deserializes each named entry on its own so that one run reports the mistakes of every
/// entry, not only the first.
fn collect_entry_errors(root: &Node) -> Vec<DeError> {
    use crate::model as m;
    fn each<T: serde::de::DeserializeOwned>(node: Option<&Node>, out: &mut Vec<DeError>) {
        if let Some(Node {
            kind: NodeKind::Map(entries),
            ..
        }) = node
        {
            for (_, v) in entries {
                if let Err(e) = from_node::<T>(v) {
                    out.push(e);
                }
            }
        }
    }
    let mut out = Vec::new();
    each::<m::Host>(root.get("hosts"), &mut out);
    each::<m::Network>(root.get("networks"), &mut out);
    each::<m::Machine>(root.get("machines"), &mut out);
    each::<m::Profile>(root.get("pxe").and_then(|p| p.get("profiles")), &mut out);
    each::<m::Export>(root.get("storage").and_then(|p| p.get("exports")), &mut out);
    each::<m::App>(root.get("cluster").and_then(|p| p.get("apps")), &mut out);
    out
}

fn de_diagnostic(e: DeError, map: &SourceMap) -> Diagnostic {
    let mut d = de_diagnostic_text(&e, map);
    if e.secret {
        d.redact = true;
        d.help = Some("write where the secret is read from: `{env: VARIABLE}` or `{file: PATH}` (relative to the lab directory)".into());
    }
    d
}

fn de_diagnostic_text(e: &DeError, map: &SourceMap) -> Diagnostic {
    let location = e.mark.map(|m| map.sources.location(m));
    match &e.unknown_key {
        Some((key, expected)) => {
            let mut msg = format!("unknown key `{}`", crate::de::clean_message(key));
            if let Some(s) = did_you_mean(key, expected.iter().copied()) {
                msg.push_str(&format!("; did you mean `{s}`?"));
            }
            Diagnostic::at_location(Severity::Error, "unknown-key", location, msg)
                .help(format!("keys allowed here: {}", expected.join(", ")))
        }
        None => {
            let help = if e.message.contains("missing field") {
                Some("add the key to this mapping".to_string())
            } else if e.message.contains("invalid type") {
                Some("change the value to the expected type".to_string())
            } else {
                None
            };
            let message = e.message.replace("missing field", "missing key");
            let mut d = Diagnostic::at_location(Severity::Error, "type", location, message);
            d.help = help;
            d
        }
    }
}

fn merge(a: Node, b: Node, path: &str, sources: &Sources, diags: &mut Vec<Diagnostic>) -> Node {
    match (a.kind, b.kind) {
        (NodeKind::Map(mut left), NodeKind::Map(right)) if MERGEABLE.contains(&path) => {
            for (k, v) in right {
                match left.iter().position(|(lk, _)| lk.name == k.name) {
                    None => left.push((k, v)),
                    Some(i) => {
                        let child = if path.is_empty() {
                            k.name.clone()
                        } else {
                            format!("{path}.{}", k.name)
                        };
                        let (lk, lv) = left.remove(i);
                        if MERGEABLE.contains(&child.as_str())
                            && matches!(lv.kind, NodeKind::Map(_))
                            && matches!(v.kind, NodeKind::Map(_))
                        {
                            let merged = merge(lv, v, &child, sources, diags);
                            left.insert(i, (lk, merged));
                        } else {
                            diags.push(defined_twice(&child, &lk, &k, sources));
                            left.insert(i, (lk, lv));
                        }
                    }
                }
            }
            Node {
                kind: NodeKind::Map(left),
                mark: a.mark,
            }
        }
        (ak, _) => Node {
            kind: ak,
            mark: a.mark,
        },
    }
}

fn defined_twice(path: &str, first: &Key, second: &Key, sources: &Sources) -> Diagnostic {
    let loc = |m: Mark| sources.location(m);
    let mut d = Diagnostic::at_location(
        Severity::Error,
        "defined-twice",
        Some(loc(second.mark)),
        format!("`{path}` is defined in two places"),
    )
    .help("keep one definition; named entries may be spread over files but each name only once");
    d.related.push(crate::diag::Related::at(
        Some(loc(first.mark)),
        path,
        "first defined here",
    ));
    d
}
