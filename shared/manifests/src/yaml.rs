//! Strict YAML plumbing shared by the YAML formats.

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
pub use serde_saphyr::Spanned;

use crate::error::ManifestError;

/// The largest manifest file Ferry reads. The real k8s.io `images.yaml` files are under 2 MiB.
pub(crate) const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// At most this many problems are reported per file; past that the rest are noise.
pub(crate) const MAX_PROBLEMS: usize = 50;

/// Parses `text` (the contents of `path`) strictly: duplicate keys are errors (serde-saphyr's
/// default), unknown fields are errors (`deny_unknown_fields` on every struct), and the node
/// budget is raised to fit k8s.io-scale files while still bounding pathological input.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ManifestError> {
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 8_000_000;
    budget.max_events = 32_000_000;
    // Real manifests reuse one anchored tag list for hundreds of digests; the ratio of aliases
    // to anchors says nothing about harm. What an alias expands to is still bounded, by the
    // alias count and the retained-event and node budgets.
    budget.enforce_alias_anchor_ratio = false;
    options.budget = Some(budget);
    options.with_snippet = false;
    serde_saphyr::from_str_with_options(text, options).map_err(|e| syntax_error(path, &e))
}

fn syntax_error(path: &Path, error: &serde_saphyr::Error) -> ManifestError {
    let (line, column) = error.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    let mut message = error.without_snippet().to_string();
    // The rendered message repeats the location ("error: line 4 column 5: ...") and may carry
    // a hint about library options that means nothing to a user; keep the substance.
    if let Some(rest) = message.strip_prefix("error: ") {
        message = rest.to_owned();
    }
    if let Some(at) = message.find(": ").filter(|_| message.starts_with("line ")) {
        message = message[at + 2..].to_owned();
    }
    if let Some(at) = message.find(", set DuplicateKeyPolicy") {
        message.truncate(at);
    }
    let mut message = message.lines().next().unwrap_or_default().to_owned();
    if let Some(breach) = message.strip_prefix("budget breached: ") {
        // The library renders its limit as a Rust value; name it for a person instead.
        let limit = breach.split([' ', '{', '(']).next().unwrap_or(breach);
        let what = match limit {
            "Aliases" | "Anchors" | "RecordedAnchorEvents" | "RecordedAnchorBytes" | "AliasAnchorRatio" => {
                "its anchors and aliases expand to more than Ferry reads"
            }
            "Nodes" | "Events" | "Depth" | "ScalarBytes" | "InputBytes" => {
                "it is larger or deeper than Ferry reads"
            }
            _ => "it exceeds a limit Ferry sets on YAML input",
        };
        message = format!("the YAML is refused: {what} (limit: {limit})");
    }
    ManifestError::Syntax { path: path.to_owned(), line, column, message }
}

/// Whether `text` can be written as a plain YAML scalar and read back as the same string, as
/// go-yaml (image-mirror's writers) decides: not if it would read as a number (`1.10`, `2`,
/// `1e3`, `0x1f`), a boolean or null, starts with an indicator or a space, ends with a space, or
/// holds `: ` or ` #`. `2.0.52` is not a number and stays plain.
pub fn plain_scalar(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let keyword =
        ["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"].contains(&lower.as_str());
    let digits = |rest: &str| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit() || c == '_');
    let number = text.parse::<f64>().is_ok()
        || ["0x", "0o", "0b"].iter().any(|p| text.strip_prefix(p).is_some_and(digits))
        || (text.chars().all(|c| c.is_ascii_digit() || c == '_') && text.chars().any(|c| c.is_ascii_digit()));
    let indicator = text.starts_with([
        '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`', ' ',
    ]);
    !(text.is_empty()
        || keyword
        || number
        || indicator
        || text.ends_with(' ')
        || text.contains(": ")
        || text.contains(" #"))
}

/// Reads a regular file, refusing symlinks and oversized files.
pub fn read_file(path: &Path) -> Result<String, ManifestError> {
    let read_err = |source| ManifestError::Read { path: path.to_owned(), source };
    let meta = std::fs::symlink_metadata(path).map_err(read_err)?;
    if meta.file_type().is_symlink() {
        return Err(ManifestError::Layout {
            path: path.to_owned(),
            message: "is a symbolic link; Ferry only reads regular files".into(),
        });
    }
    if !meta.is_file() {
        return Err(ManifestError::Layout { path: path.to_owned(), message: "is not a regular file".into() });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ManifestError::Layout {
            path: path.to_owned(),
            message: format!("is {} bytes; the limit is {MAX_FILE_BYTES}", meta.len()),
        });
    }
    std::fs::read_to_string(path).map_err(read_err)
}

/// A YAML mapping kept in document order as key/value pairs. Duplicate keys never reach it:
/// the deserializer rejects them first.
#[derive(Debug)]
pub struct Pairs<K, V>(pub Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Pairs<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<K, V> {
            type Value = Pairs<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor(PhantomData))
    }
}

/// Collects per-field problems for one file, capped at [`MAX_PROBLEMS`]: fatal ones (the file
/// cannot be read as a whole), and notices (an invalid entry left out, a warning), which never
/// stop the rest of the file.
pub(crate) struct Problems<'p> {
    path: &'p Path,
    pub(crate) list: Vec<ManifestError>,
    pub(crate) notices: Vec<ferry_model::Notice>,
}

impl<'p> Problems<'p> {
    pub(crate) fn new(path: &'p Path) -> Self {
        Self { path, list: Vec::new(), notices: Vec::new() }
    }

    fn notice(&mut self, kind: ferry_model::NoticeKind, line: u64, field: &str, message: impl fmt::Display) {
        self.notices.push(ferry_model::Notice {
            kind,
            origin: ferry_model::Origin::new(
                self.path.display().to_string(),
                u32::try_from(line).unwrap_or(u32::MAX),
            ),
            field: field.into(),
            message: message.to_string(),
        });
    }

    /// An entry that cannot be valid: it is left out, and reported with action `invalid`.
    pub(crate) fn invalid(&mut self, line: u64, field: &str, message: impl fmt::Display) {
        self.notice(ferry_model::NoticeKind::Invalid, line, field, message);
    }

    /// Tolerated as the tool a user migrates from tolerates it, and reported.
    pub(crate) fn warn(&mut self, line: u64, field: &str, message: impl fmt::Display) {
        self.notice(ferry_model::NoticeKind::Warning, line, field, message);
    }

    /// The fatal problems as an error, or the notices.
    pub(crate) fn finish_with_notices(self) -> Result<Vec<ferry_model::Notice>, ManifestError> {
        ManifestError::from_problems(self.list)?;
        Ok(self.notices)
    }

    pub(crate) fn field(&mut self, line: u64, field: &'static str, message: impl fmt::Display) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(ManifestError::Field {
                path: self.path.to_owned(),
                line,
                field,
                message: message.to_string(),
            });
        }
    }

    pub(crate) fn finish(self) -> Result<(), ManifestError> {
        ManifestError::from_problems(self.list)
    }
}

pub fn line_of<T>(spanned: &Spanned<T>) -> u64 {
    spanned.referenced.line()
}
