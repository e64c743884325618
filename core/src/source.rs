//! YAML source files parsed into a tree whose every node keeps its position.
//!
//! The lab format is YAML, but serde's YAML crates lose positions once a value is
//! deserialized. cloudlet parses YAML events itself (with `saphyr-parser`) into a
//! [`Node`] tree: every scalar, sequence, mapping *and mapping key* records the file,
//! line and column it came from. Deserialization then runs over that tree
//! ([`crate::de`]), and validation resolves model paths back to positions through
//! [`SourceMap`].

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// A position in a lab file: 1-based line and column.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Location {
    /// The file, as given to the loader (relative paths stay relative).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Where a node starts, as an index into the [`Sources`] table plus line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mark {
    /// Index of the file in [`Sources`].
    pub file: u32,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

/// The text of every file a lab was loaded from, so positions can be shown with their line.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<(PathBuf, Arc<str>)>,
}

impl Sources {
    /// Registers a file and returns its index.
    pub fn add(&mut self, path: PathBuf, text: Arc<str>) -> u32 {
        self.files.push((path, text));
        u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX)
    }

    /// Turns a [`Mark`] into a [`Location`].
    pub fn location(&self, mark: Mark) -> Location {
        let file = self
            .files
            .get(mark.file as usize)
            .map(|(p, _)| p.clone())
            .unwrap_or_default();
        Location {
            file,
            line: mark.line as usize,
            column: mark.column as usize,
        }
    }

    /// The text of line `line` (1-based) of `file`, if known.
    pub fn line_text(&self, file: &Path, line: usize) -> Option<&str> {
        let (_, text) = self.files.iter().find(|(p, _)| p == file)?;
        text.lines().nth(line.checked_sub(1)?)
    }

    /// Where the token at `loc` ends on its line (see [`token_end`]), when its file is known.
    pub fn end_of(&self, loc: &Location) -> Option<usize> {
        token_end(self.line_text(&loc.file, loc.line)?, loc.column)
    }

    /// The files loaded, in order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }

    /// The files loaded with their texts, in order.
    pub fn files(&self) -> impl Iterator<Item = (&Path, &str)> {
        self.files.iter().map(|(p, t)| (p.as_path(), &**t))
    }
}

/// A scalar as written, before any type is imposed on it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// `~`, `null` or an empty value.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// Any other text (quoted scalars are always text).
    Str(String),
}

/// The shape of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar value.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping with string keys, in file order. Each key keeps its own mark.
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key text.
    pub name: String,
    /// Where the key is written.
    pub mark: Mark,
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What the node is.
    pub kind: NodeKind,
    /// Where the node starts.
    pub mark: Mark,
}

impl Node {
    /// A short name of the node's type for messages ("a mapping", "a string" ...).
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(Scalar::Null) => "nothing (null)",
            NodeKind::Scalar(Scalar::Bool(_)) => "a boolean",
            NodeKind::Scalar(Scalar::Int(_)) => "an integer",
            NodeKind::Scalar(Scalar::Float(_)) => "a number",
            NodeKind::Scalar(Scalar::Str(_)) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// Looks up a key of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Where the YAML token that starts at `column` (1-based, in characters) of the line `src`
/// ends: the column just after its last character. A quoted scalar ends
/// at its closing quote, a flow collection at its closing bracket, a plain scalar or key
/// before `: `, ` #` or the end of its line (and, inside a flow collection, before `,` `]`
/// `}`); a block scalar's header, a sequence's `- ` and what spans lines end at the end of the
/// line they start on.
pub fn token_end(src: &str, column: usize) -> Option<usize> {
    let chars: Vec<char> = src.chars().collect();
    let start = column.checked_sub(1)?;
    if start > chars.len() {
        return None;
    }
    let rest = &chars[start..];
    let trimmed_end = |mut i: usize| {
        while i > start && chars[i - 1].is_whitespace() {
            i -= 1;
        }
        i
    };
    let eol = trimmed_end(chars.len());
    let end = match rest.first() {
        None => start,
        Some('"') => {
            let mut i = 1;
            loop {
                match rest.get(i) {
                    None => break eol,
                    Some('\\') => i += 2,
                    Some('"') => break start + i + 1,
                    Some(_) => i += 1,
                }
            }
        }
        Some('\'') => {
            let mut i = 1;
            loop {
                match (rest.get(i), rest.get(i + 1)) {
                    (None, _) => break eol,
                    (Some('\''), Some('\'')) => i += 2,
                    (Some('\''), _) => break start + i + 1,
                    _ => i += 1,
                }
            }
        }
        Some('[' | '{') => {
            let mut depth = 0usize;
            let mut quote: Option<char> = None;
            let mut found = None;
            for (i, &c) in rest.iter().enumerate() {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '"' | '\'') => quote = Some(c),
                    (None, '[' | '{') => depth += 1,
                    (None, ']' | '}') => {
                        depth -= 1;
                        if depth == 0 {
                            found = Some(start + i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            found.unwrap_or(eol)
        }
        Some('|' | '>') => eol,
        Some('-') if rest.get(1).is_none_or(|c| c.is_whitespace()) => eol,
        Some(_) => {
            // Inside a flow collection opened earlier on the line?
            let (mut depth, mut quote) = (0i32, None::<char>);
            for &c in &chars[..start] {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '"' | '\'') => quote = Some(c),
                    (None, '[' | '{') => depth += 1,
                    (None, ']' | '}') => depth -= 1,
                    _ => {}
                }
            }
            let flow = depth > 0;
            let mut i = 0;
            while let Some(&c) = rest.get(i) {
                let next = rest.get(i + 1);
                if (c == ':' && next.is_none_or(|n| n.is_whitespace()))
                    || (c == '#' && i > 0 && rest[i - 1].is_whitespace())
                    || (flow && matches!(c, ',' | ']' | '}'))
                {
                    break;
                }
                i += 1;
            }
            trimmed_end(start + i)
        }
    };
    Some(end + 1)
}

/// A YAML syntax problem, or a structural one the loader refuses (duplicate keys, non-string keys).
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// Where.
    pub mark: Mark,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl SyntaxError {
    /// The error as a diagnostic at its position in `sources`.
    pub fn diagnostic(self, sources: &Sources) -> crate::diag::Diagnostic {
        let mut d = crate::diag::Diagnostic::at_location(
            crate::diag::Severity::Error,
            "yaml",
            Some(sources.location(self.mark)),
            self.message,
        );
        d.help = self.help;
        d
    }
}

/// Parses one YAML file into its documents (a lab file normally holds one; `---` separates more).
pub fn parse_yaml(file: u32, text: &str) -> Result<Vec<Node>, Vec<SyntaxError>> {
    let mut builder = Builder {
        stack: Vec::new(),
        docs: Vec::new(),
        anchors: HashMap::new(),
        errors: Vec::new(),
        expanded: 0,
        alias_budget: alias_budget(text.len()),
        fatal: false,
    };
    let parser = Parser::new_from_str(text);
    for item in parser {
        match item {
            Ok((event, span)) => {
                let mark = Mark {
                    file,
                    line: u32::try_from(span.start.line()).unwrap_or(u32::MAX),
                    column: u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX),
                };
                builder.event(event, mark);
                if builder.fatal {
                    return Err(builder.errors);
                }
            }
            Err(e) => {
                let m = e.marker();
                builder.errors.push(SyntaxError {
                    mark: Mark {
                        file,
                        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
                        column: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
                    },
                    message: format!("invalid YAML: {}", e.info()),
                    help: Some(
                        "check the indentation and quoting around this position".to_string(),
                    ),
                });
                return Err(builder.errors);
            }
        }
    }
    if builder.errors.is_empty() {
        Ok(builder.docs)
    } else {
        Err(builder.errors)
    }
}

/// How many nodes aliases may add to a file in all: `*anchor` copies the anchored node, so
/// nested aliases grow a small file exponentially (the "billion laughs" shape). A file may
/// expand to 100,000 nodes or 64 per byte of its text, whichever is more; past that the
/// alias is refused at its position.
fn alias_budget(text_len: usize) -> usize {
    text_len.saturating_mul(64).max(100_000)
}

/// The number of nodes in a tree.
fn count_nodes(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Scalar(_) => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(_, v)| 1 + count_nodes(v))
                .sum::<usize>()
        }
    }
}

enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<(Key, Node)>,
        pending_key: Option<Key>,
        /// Key -> first position, built only for large mappings (duplicate detection).
        index: HashMap<String, usize>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    /// Each anchor's node and its size in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    errors: Vec<SyntaxError>,
    /// Nodes added by aliases so far.
    expanded: usize,
    /// At most this many nodes may be added by aliases.
    alias_budget: usize,
    /// Parsing cannot go on (nesting too deep).
    fatal: bool,
}

/// How deep lists and mappings may nest. A lab needs about ten levels; the limit keeps the
/// recursive walks over the tree (deserialization, merging, dropping) off the stack's end.
pub const MAX_DEPTH: usize = 128;

impl Builder {
    fn event(&mut self, event: Event<'_>, mark: Mark) {
        match event {
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => {}
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((node, size)) => {
                    self.expanded = self.expanded.saturating_add(*size);
                    if self.expanded > self.alias_budget {
                        // Reported once; later aliases add nothing, so memory stays bounded.
                        if !self
                            .errors
                            .iter()
                            .any(|e| e.message.starts_with("aliases expand"))
                        {
                            self.errors.push(SyntaxError {
                                mark,
                                message: format!(
                                    "aliases expand this file to more than {} nodes",
                                    self.alias_budget
                                ),
                                help: Some(
                                    "nested aliases copy their anchors again and again; write the repeated parts out or use fewer levels of aliases".into(),
                                ),
                            });
                        }
                        self.push(Node {
                            kind: NodeKind::Scalar(Scalar::Null),
                            mark,
                        });
                        return;
                    }
                    let mut node = node.clone();
                    node.mark = mark;
                    self.push(node);
                }
                None => self.errors.push(SyntaxError {
                    mark,
                    message: "alias refers to an unknown anchor".into(),
                    help: None,
                }),
            },
            Event::Scalar(value, style, anchor, tag) => {
                let scalar = if style != ScalarStyle::Plain
                    || tag.as_ref().is_some_and(|t| t.suffix == "str")
                {
                    Scalar::Str(value.into_owned())
                } else {
                    plain_scalar(&value)
                };
                let node = Node {
                    kind: NodeKind::Scalar(scalar),
                    mark,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, (node.clone(), 1));
                }
                self.push(node);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.errors.push(SyntaxError {
                    mark,
                    message: format!("lists and mappings nest deeper than {MAX_DEPTH} levels here"),
                    help: Some(
                        "a lab needs only a few levels; check for unclosed `[` or `{`".into(),
                    ),
                });
                self.fatal = true;
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                mark,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                mark,
                anchor,
                entries: Vec::new(),
                pending_key: None,
                index: HashMap::new(),
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        mark,
                        anchor,
                        items,
                    }) => (
                        Node {
                            kind: NodeKind::Seq(items),
                            mark,
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        mark,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            kind: NodeKind::Map(merge_keys(entries)),
                            mark,
                        },
                        anchor,
                    ),
                    None => return,
                };
                if anchor > 0 {
                    let size = count_nodes(&node);
                    self.anchors.insert(anchor, (node.clone(), size));
                }
                self.push(node);
            }
        }
    }

    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                index,
                ..
            }) => match pending_key.take() {
                None => {
                    let name = match &node.kind {
                        NodeKind::Scalar(Scalar::Str(s)) => s.clone(),
                        NodeKind::Scalar(Scalar::Int(i)) => i.to_string(),
                        NodeKind::Scalar(Scalar::Bool(b)) => b.to_string(),
                        NodeKind::Scalar(Scalar::Float(f)) => f.to_string(),
                        NodeKind::Scalar(Scalar::Null) => "null".into(),
                        _ => {
                            self.errors.push(SyntaxError {
                                mark: node.mark,
                                message: format!(
                                    "a mapping key must be a string, found {}",
                                    node.describe()
                                ),
                                help: None,
                            });
                            String::new()
                        }
                    };
                    let dup = if name == "<<" {
                        None
                    } else if entries.len() < 16 {
                        entries.iter().position(|(k, _)| k.name == name)
                    } else {
                        if index.len() < entries.len() {
                            for (i, (k, _)) in entries.iter().enumerate().skip(index.len()) {
                                index.entry(k.name.clone()).or_insert(i);
                            }
                        }
                        index.get(&name).copied()
                    };
                    if let Some((first, _)) = dup.and_then(|i| entries.get(i)) {
                        self.errors.push(SyntaxError {
                            mark: node.mark,
                            message: format!(
                                "duplicate key `{name}` (first defined at line {}, column {})",
                                first.mark.line, first.mark.column
                            ),
                            help: Some("remove one of the two entries or merge them".into()),
                        });
                    }
                    *pending_key = Some(Key {
                        name,
                        mark: node.mark,
                    });
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

/// Applies YAML merge keys (`<<: *anchor`): keys of the merged mapping that the mapping
/// does not set itself are added.
fn merge_keys(entries: Vec<(Key, Node)>) -> Vec<(Key, Node)> {
    if !entries.iter().any(|(k, _)| k.name == "<<") {
        return entries;
    }
    let mut own: Vec<(Key, Node)> = Vec::new();
    let mut merged: Vec<(Key, Node)> = Vec::new();
    for (k, v) in entries {
        if k.name == "<<" {
            let sources = match v.kind {
                NodeKind::Seq(items) => items,
                other => vec![Node {
                    kind: other,
                    mark: v.mark,
                }],
            };
            for src in sources {
                if let NodeKind::Map(m) = src.kind {
                    for (mk, mv) in m {
                        if !merged.iter().any(|(x, _)| x.name == mk.name) {
                            merged.push((mk, mv));
                        }
                    }
                }
            }
        } else {
            own.push((k, v));
        }
    }
    for (k, v) in merged {
        if !own.iter().any(|(x, _)| x.name == k.name) {
            own.push((k, v));
        }
    }
    own
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn plain_scalar(s: &str) -> Scalar {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = s.parse::<i64>()
    {
        return Scalar::Int(i);
    }
    if let Some(hex) = s.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Scalar::Int(i);
    }
    let looks_float = digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit())
        && digits.contains('.')
        && digits.matches('.').count() == 1;
    if looks_float && let Ok(f) = s.parse::<f64>() {
        return Scalar::Float(f);
    }
    match s {
        ".inf" | ".Inf" | "+.inf" => Scalar::Float(f64::INFINITY),
        "-.inf" | "-.Inf" => Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" => Scalar::Float(f64::NAN),
        _ => Scalar::Str(s.to_string()),
    }
}

/// One step of a path into the lab tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_string())
    }
}
impl From<String> for Seg {
    fn from(s: String) -> Self {
        Seg::Key(s)
    }
}
impl From<&String> for Seg {
    fn from(s: &String) -> Self {
        Seg::Key(s.clone())
    }
}
impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// A path into the lab tree, such as `machines.pfsense.nics[0].ip`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TreePath(pub Vec<Seg>);

impl TreePath {
    /// The path extended by one segment.
    #[must_use]
    pub fn join(&self, seg: impl Into<Seg>) -> TreePath {
        let mut v = self.0.clone();
        v.push(seg.into());
        TreePath(v)
    }
}

impl fmt::Display for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Builds a [`TreePath`] from segments: `path!["machines", name, "nics", 0usize]`.
#[macro_export]
macro_rules! path {
    ($($seg:expr),* $(,)?) => {
        $crate::source::TreePath(vec![$($crate::source::Seg::from($seg)),*])
    };
}

/// The merged tree of a whole lab plus the texts it came from: resolves model paths to positions.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    /// The files' texts.
    pub sources: Sources,
    /// The merged lab tree.
    pub root: Option<Node>,
}

impl SourceMap {
    fn walk(&self, path: &TreePath) -> (Option<&Node>, Option<&Key>) {
        let Some(mut node) = self.root.as_ref() else {
            return (None, None);
        };
        let mut key = None;
        for seg in &path.0 {
            match (seg, &node.kind) {
                (Seg::Key(k), NodeKind::Map(entries)) => {
                    match entries.iter().find(|(ek, _)| &ek.name == k) {
                        Some((ek, v)) => {
                            key = Some(ek);
                            node = v;
                        }
                        None => return (Some(node), None),
                    }
                }
                (Seg::Index(i), NodeKind::Seq(items)) => match items.get(*i) {
                    Some(v) => {
                        key = None;
                        node = v;
                    }
                    None => return (Some(node), None),
                },
                _ => return (Some(node), None),
            }
        }
        (Some(node), key)
    }

    /// The position of the value at `path`, or of its nearest existing ancestor.
    pub fn value(&self, path: &TreePath) -> Option<Location> {
        let (node, _) = self.walk(path);
        node.map(|n| self.sources.location(n.mark))
    }

    /// The position of the key that names the value at `path` (falls back to the value).
    pub fn key(&self, path: &TreePath) -> Option<Location> {
        match self.walk(path) {
            (_, Some(k)) => Some(self.sources.location(k.mark)),
            (Some(n), None) => Some(self.sources.location(n.mark)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_and_values() {
        let docs = parse_yaml(0, "a:\n  b: 1\n  c: [x, 'y']\n").unwrap();
        let root = &docs[0];
        let a = root.get("a").unwrap();
        assert_eq!((a.mark.line, a.mark.column), (2, 3));
        let c = a.get("c").unwrap();
        let NodeKind::Seq(items) = &c.kind else {
            panic!("not a seq")
        };
        assert_eq!((items[1].mark.line, items[1].mark.column), (3, 10));
        assert_eq!(items[1].kind, NodeKind::Scalar(Scalar::Str("y".into())));
    }

    #[test]
    fn duplicate_key_is_refused_with_both_positions() {
        let errs = parse_yaml(0, "a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].mark.line, errs[0].mark.column), (3, 1));
        assert!(errs[0].message.contains("duplicate key `a`"));
        assert!(errs[0].message.contains("line 1, column 1"));
    }

    #[test]
    fn syntax_error_has_position() {
        let errs = parse_yaml(0, "a:\n  - b\n c: [\n").unwrap_err();
        assert!(errs[0].message.starts_with("invalid YAML"));
        assert!(errs[0].mark.line >= 2);
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        assert_eq!(plain_scalar("42"), Scalar::Int(42));
        assert_eq!(plain_scalar("-7"), Scalar::Int(-7));
        assert_eq!(plain_scalar("1.5"), Scalar::Float(1.5));
        assert_eq!(plain_scalar("10.0.20.1"), Scalar::Str("10.0.20.1".into()));
        assert_eq!(plain_scalar("yes"), Scalar::Str("yes".into()));
        assert_eq!(plain_scalar("~"), Scalar::Null);
    }

    #[test]
    fn nested_aliases_are_bounded_and_refused_at_the_alias() {
        // Nine levels of ten aliases each: 10^9 nodes if expanded.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let errs = parse_yaml(0, &text).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].message.starts_with("aliases expand"), "{errs:?}");
        // The first alias past the budget of 100,000 nodes is one of a4's (11,111 nodes each).
        assert_eq!(errs[0].mark.line, 5, "{errs:?}");
        // What was built stays within the budget.
        assert!(alias_budget(text.len()) <= 100_000);
    }

    #[test]
    fn deep_nesting_is_refused_at_its_position() {
        // Flow collections: the parser's own limit.
        let text = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let errs = parse_yaml(0, &text).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].mark.line, 1);
        // Block mappings, one level per line: ours.
        let text: String = (0..1000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let errs = parse_yaml(0, &text).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("nest deeper"), "{errs:?}");
        assert_eq!(errs[0].mark.line as usize, MAX_DEPTH + 1, "{errs:?}");
    }

    #[test]
    fn ordinary_aliases_still_expand() {
        let docs = parse_yaml(0, "a: &x [1, 2]\nb: *x\nc: *x\n").unwrap();
        assert_eq!(
            docs[0].get("c").unwrap().kind,
            docs[0].get("a").unwrap().kind
        );
    }

    #[test]
    fn anchors_and_merge_keys() {
        let docs = parse_yaml(0, "base: &b {x: 1, y: 2}\nthing:\n  <<: *b\n  y: 3\n").unwrap();
        let t = docs[0].get("thing").unwrap();
        assert_eq!(t.get("x").unwrap().kind, NodeKind::Scalar(Scalar::Int(1)));
        assert_eq!(t.get("y").unwrap().kind, NodeKind::Scalar(Scalar::Int(3)));
    }
}

#[cfg(test)]
mod token_tests {
    use super::token_end;

    /// The token that starts at the first `at` in `line`, as text.
    fn token<'a>(line: &'a str, at: &str) -> &'a str {
        let col = line.find(at).unwrap() + 1;
        let end = token_end(line, col).unwrap();
        &line[col - 1..end - 1]
    }

    #[test]
    fn tokens_end_where_yaml_ends_them() {
        let l = "  a: {cpus: 1, memroy: 1GiB}  # note";
        assert_eq!(token(l, "memroy"), "memroy");
        assert_eq!(token(l, "1GiB"), "1GiB");
        assert_eq!(token(l, "{"), "{cpus: 1, memroy: 1GiB}");
        assert_eq!(token(l, "a:"), "a");
        let l = r#"  host: "blog.example.com" # the \"site"#;
        assert_eq!(token(l, "\"blog"), "\"blog.example.com\"");
        let l = "  name: it's a, b  # comment";
        assert_eq!(token(l, "it's"), "it's a, b");
        let l = "  note: 'don''t' # x";
        assert_eq!(token(l, "'don"), "'don''t'");
        let l = "  - {port: 51820, protocol: udp, to: wireguard}";
        assert_eq!(
            token(l, "- "),
            "- {port: 51820, protocol: udp, to: wireguard}"
        );
        assert_eq!(token(l, "udp"), "udp");
        assert_eq!(token(l, "wireguard"), "wireguard");
        let l = "  ranges: [10.0.20.100-10.0.20.150, \"x,y\"]";
        assert_eq!(token(l, "10.0"), "10.0.20.100-10.0.20.150");
        assert_eq!(token(l, "[10"), "[10.0.20.100-10.0.20.150, \"x,y\"]");
        let l = "  script: |";
        assert_eq!(token(l, "|"), "|");
        // A URL's colon is not a key's.
        let l = "  endpoint: https://vc.home.lan:443/sdk";
        assert_eq!(token(l, "https"), "https://vc.home.lan:443/sdk");
        // An unclosed quote or bracket ends with its line.
        let l = "  a: \"open";
        assert_eq!(token(l, "\"open"), "\"open");
        assert_eq!(token_end("ab", 9), None);
    }
}
