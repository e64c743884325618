//! Diagnostics: what is wrong, where (file:line:column), and how to fix it.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use crate::source::{Location, SourceMap, Sources, TreePath};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The lab cannot be planned.
    Error,
    /// The lab can be planned but is probably not what was meant.
    Warning,
}

/// What a diagnostic points at before it is resolved to a position.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Anchor {
    /// The key that names the value at this path.
    Key(TreePath),
    /// The value at this path.
    Value(TreePath),
}

impl Anchor {
    fn path(&self) -> &TreePath {
        match self {
            Anchor::Key(p) | Anchor::Value(p) => p,
        }
    }
}

/// A secondary position of a diagnostic ("first used here").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Related {
    /// Where.
    pub location: Option<Location>,
    /// The model path, such as `machines.k8s-node1.nics[0].ip`.
    pub path: Option<String>,
    /// What is there.
    pub message: String,
    #[serde(skip)]
    anchor: Option<Anchor>,
}

impl Related {
    /// A related place with a known location.
    pub fn at(location: Option<Location>, path: &str, message: impl Into<String>) -> Self {
        Related {
            location,
            path: Some(path.to_string()),
            message: message.into(),
            anchor: None,
        }
    }
}

/// A line and the column in it, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// Fills in where each finding's token ends, from the texts.
pub fn fill_ends(diags: &mut [Diagnostic], sources: &Sources) {
    for d in diags {
        if d.end.is_none()
            && let Some(loc) = &d.location
        {
            d.end = sources.end_of(loc).map(|column| Position {
                line: loc.line,
                column,
            });
        }
    }
}

/// One problem in a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable identifier of the rule (`address-reused`, `unknown-key` ...).
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// Where, when the problem has a position.
    pub location: Option<Location>,
    /// Where the token at `location` ends: its line and the column just after it (an
    /// editor's range is `location`..`end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Position>,
    /// The model path, such as `cluster.apps.blog.ingress[0].host`.
    pub path: Option<String>,
    /// How to fix it.
    pub help: Option<String>,
    /// Other places involved.
    pub related: Vec<Related>,
    #[serde(skip)]
    anchor: Option<Anchor>,
    /// The line at the position may hold a secret written in the clear: its excerpt shows
    /// nothing from the position on.
    #[serde(skip)]
    pub redact: bool,
    /// The finding and its one related place are alike (`used twice`): it points at the later.
    #[serde(skip)]
    symmetric: bool,
}

impl Diagnostic {
    /// An error about the value at `path`.
    pub fn error(code: &str, path: TreePath, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, Some(Anchor::Value(path)), message)
    }

    /// An error about the key naming the value at `path` (names, unknown keys).
    pub fn error_at_key(code: &str, path: TreePath, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, Some(Anchor::Key(path)), message)
    }

    /// A warning about the value at `path`.
    pub fn warning(code: &str, path: TreePath, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, Some(Anchor::Value(path)), message)
    }

    /// A diagnostic with a known location.
    pub fn at_location(
        severity: Severity,
        code: &str,
        location: Option<Location>,
        message: impl Into<String>,
    ) -> Self {
        let mut d = Self::new(severity, code, None, message);
        d.location = location;
        d
    }

    fn new(
        severity: Severity,
        code: &str,
        anchor: Option<Anchor>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity,
            code: code.to_string(),
            message: message.into(),
            location: None,
            end: None,
            path: anchor.as_ref().map(|a| a.path().to_string()),
            help: None,
            related: Vec::new(),
            anchor,
            redact: false,
            symmetric: false,
        }
    }

    /// Hides the value at the position in excerpts: it may be a secret written in the clear.
    #[must_use]
    pub fn redacted(mut self) -> Self {
        self.redact = true;
        self
    }

    /// Adds the fix.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds another place involved.
    #[must_use]
    pub fn related(mut self, path: TreePath, message: impl Into<String>) -> Self {
        self.related.push(Related {
            location: None,
            path: Some(path.to_string()),
            message: message.into(),
            anchor: Some(Anchor::Value(path)),
        });
        self
    }

    /// Adds the other place of a finding about two equal things ("used twice"): once both
    /// are resolved, the finding points at the later of the two, the one just written.
    #[must_use]
    pub fn also_used(self, path: TreePath) -> Self {
        self.alike(path, "also used")
    }

    /// Adds the other place of a finding that reads the same from either place: once both
    /// are resolved, the finding points at the later of the two.
    #[must_use]
    pub fn alike(mut self, path: TreePath, message: impl Into<String>) -> Self {
        self.symmetric = true;
        self.related(path, message)
    }

    /// Fills in the positions from the source map.
    pub fn resolve(&mut self, map: &SourceMap) {
        if self.location.is_none() {
            self.location = match &self.anchor {
                Some(Anchor::Key(p)) => map.key(p),
                Some(Anchor::Value(p)) => map.value(p),
                None => None,
            };
        }
        for r in &mut self.related {
            if r.location.is_none() {
                r.location = match &r.anchor {
                    Some(Anchor::Key(p)) => map.key(p),
                    Some(Anchor::Value(p)) => map.value(p),
                    None => None,
                };
            }
        }
        if self.symmetric
            && let [r] = self.related.as_mut_slice()
            && r.location.is_some()
            && r.location > self.location
        {
            std::mem::swap(&mut self.location, &mut r.location);
            std::mem::swap(&mut self.path, &mut r.path);
        }
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic like a compiler does, with the source line when known.
    pub fn render(&self, sources: &Sources) -> String {
        let mut s = String::new();
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(s, "{sev}[{}]: {}", self.code, printable(&self.message));
        if let Some(loc) = &self.location {
            let _ = writeln!(s, "  --> {}", printable(&loc.to_string()));
            if let Some(text) = sources.line_text(&loc.file, loc.line) {
                let num = loc.line.to_string();
                let pad = " ".repeat(num.len());
                let (text, caret) = excerpt(text, loc.column, self.redact);
                let _ = writeln!(s, "{pad} |");
                let _ = writeln!(s, "{num} | {text}");
                let _ = writeln!(s, "{pad} | {}^", " ".repeat(caret));
            }
        } else if let Some(p) = &self.path {
            let _ = writeln!(s, "  --> {}", printable(p));
        }
        for r in &self.related {
            match &r.location {
                Some(l) => {
                    let _ = writeln!(
                        s,
                        "  = note: {} at {}",
                        printable(&r.message),
                        printable(&l.to_string())
                    );
                }
                None => {
                    let _ = writeln!(s, "  = note: {}", printable(&r.message));
                }
            }
        }
        if let Some(h) = &self.help {
            let _ = writeln!(s, "  = help: {}", printable(h));
        }
        s
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{l}: [{}] {}", self.code, self.message),
            None => write!(f, "[{}] {}", self.code, self.message),
        }
    }
}

/// Text safe to print on a terminal: control characters (escape sequences, carriage
/// returns) are shown escaped instead of being obeyed.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect(),
    )
}

/// How many characters of a source line an excerpt shows at most.
const EXCERPT: usize = 120;

/// The part of a source line shown under a diagnostic, and the caret's offset in it: at
/// most [`EXCERPT`] characters around the column, control characters (tabs included) shown
/// as one space each, and nothing from the column on when the value may be a secret.
fn excerpt(line: &str, column: usize, redact: bool) -> (String, usize) {
    let col = column.saturating_sub(1);
    // Anchored at a key (`password: ...`), the value starts after its `: `.
    let hide_from = if redact {
        line.chars()
            .skip(col)
            .take(EXCERPT)
            .collect::<String>()
            .split_once(": ")
            .filter(|(key, _)| !key.contains([' ', '{', '[', ',']))
            .map_or(col, |(key, _)| col + key.chars().count() + 2)
    } else {
        col
    };
    let start = col.saturating_sub(EXCERPT / 3);
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let caret = usize::from(start > 0) + (col - start);
    for (i, c) in line.chars().enumerate().skip(start) {
        if redact && i >= hide_from {
            out.push_str("<redacted>");
            break;
        }
        if i >= start + EXCERPT {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    (out, caret)
}

/// Sorts diagnostics by file, line, column, then code, so output is deterministic.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (&a.location, &a.code, &a.message).cmp(&(&b.location, &b.code, &b.message))
    });
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_bounded_escaped_and_redacted() {
        let long = format!("key: {}", "x".repeat(1_000_000));
        let (text, caret) = excerpt(&long, 6, false);
        assert!(text.chars().count() <= EXCERPT + 2, "{}", text.len());
        assert_eq!(caret, 5);
        let (text, caret) = excerpt(&long, 500_000, false);
        assert!(text.starts_with('…') && text.chars().count() <= EXCERPT + 2);
        assert_eq!(text.chars().nth(caret), Some('x'));
        let (text, _) = excerpt("password: hunter2", 11, true);
        assert_eq!(text, "password: <redacted>");
        let (text, _) = excerpt("  password: hunter2", 3, true);
        assert_eq!(text, "  password: <redacted>");
        let (text, _) = excerpt("creds: {value: hunter2}", 8, true);
        assert_eq!(text, "creds: <redacted>");
        let (text, _) = excerpt("name: \u{1b}[31mred", 7, false);
        assert!(!text.contains('\u{1b}'));
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("nmae", ["name", "port"]), Some("name"));
        assert_eq!(
            did_you_mean("replcias", ["replicas", "image"]),
            Some("replicas")
        );
        assert_eq!(did_you_mean("zzz", ["name", "port"]), None);
    }
}
