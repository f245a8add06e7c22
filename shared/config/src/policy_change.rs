//! What a change does to the policy it would be checked with.
//!
//! When the config file lives in the repository a pull request changes, the pull request can
//! change its own policy: delete `allowed-sources`, swap a key. `ferry check` therefore reads
//! the policy from the base, and reports any difference between the base's config (and every
//! file it names) and the head's as a `policy-change` problem that fails the check: a human
//! approves a policy change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use crate::{Config, Files};

/// One changed rule of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyChange {
    /// The setting that changed, as a path in the config file: `check.allowed-sources`,
    /// `trust.sources[staging.example].keys`; or a file the config names.
    pub rule: String,
    pub message: String,
    /// Its line in the head's config file, when it is there (0 otherwise).
    pub line: u32,
}

/// Records every file a config load reads.
struct Recording<'a> {
    inner: &'a dyn Files,
    read: Mutex<BTreeSet<PathBuf>>,
}

impl Files for Recording<'_> {
    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        self.read.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_owned());
        self.inner.read(path)
    }
}

/// Every difference between the policy in `path` as `base` has it and as `head` has it: the
/// settings of the config file, and the bytes of each file it names (keys, trusted roots). A
/// config file added or removed is a change too.
pub fn policy_changes(path: &Path, base: &dyn Files, head: &dyn Files) -> Vec<PolicyChange> {
    let shown = path.display().to_string();
    let base_text = base.read_text(path).ok();
    let head_text = head.read_text(path).ok();
    let (base_text, head_text) = match (base_text, head_text) {
        (None, None) => return Vec::new(),
        (None, Some(_)) => {
            return vec![PolicyChange {
                rule: shown.clone(),
                message: format!(
                    "{shown} is new in this change; the check used the defaults, and a human must approve the new policy"
                ),
                line: 0,
            }];
        }
        (Some(_), None) => {
            return vec![PolicyChange {
                rule: shown.clone(),
                message: format!(
                    "{shown} is removed or unreadable in this change; the check used the base's"
                ),
                line: 0,
            }];
        }
        (Some(base_text), Some(head_text)) => (base_text, head_text),
    };
    let mut changes = Vec::new();
    if base_text != head_text {
        let tree = |text: &str| {
            ferry_manifests::yaml::parse::<Option<Value>>(path, text).map(|v| v.unwrap_or(Value::Null))
        };
        match (tree(&base_text), tree(&head_text)) {
            (Ok(before), Ok(after)) => {
                let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
                flatten(&before, String::new(), &mut old);
                flatten(&after, String::new(), &mut new);
                let rules: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
                for rule in rules {
                    let message = match (old.get(rule), new.get(rule)) {
                        (Some(a), Some(b)) if a == b => continue,
                        (Some(a), Some(b)) => format!("{rule} changes from {a} to {b}"),
                        (Some(a), None) => format!("{rule} ({a}) is removed"),
                        (None, Some(b)) => format!("{rule} is added: {b}"),
                        (None, None) => continue,
                    };
                    changes.push(PolicyChange {
                        rule: rule.clone(),
                        message,
                        line: line_of(&head_text, rule),
                    });
                }
            }
            (_, Err(e)) => changes.push(PolicyChange {
                rule: shown.clone(),
                message: format!("the head's {shown} does not parse ({e}); the check used the base's"),
                line: 0,
            }),
            (Err(_), Ok(_)) => changes.push(PolicyChange {
                rule: shown.clone(),
                message: format!("{shown} changes (the base's does not parse)"),
                line: 0,
            }),
        }
    }
    // Files the base's config names: the same bytes at the head?
    let recording = Recording { inner: base, read: Mutex::new(BTreeSet::new()) };
    if Config::load_from(path, &recording).is_ok() {
        let read = recording.read.into_inner().unwrap_or_else(|p| p.into_inner());
        for file in read.iter().filter(|f| f.as_path() != path) {
            if base.read(file).ok() != head.read(file).ok() {
                let name = file.strip_prefix(path.parent().unwrap_or(Path::new(""))).unwrap_or(file);
                changes.push(PolicyChange {
                    rule: name.display().to_string(),
                    message: format!("{}, which {shown} names, changes", name.display()),
                    line: 0,
                });
            }
        }
    }
    changes
}

/// The settings of a config tree by path. A list of mappings is keyed by each one's
/// `registry` or `source` (`trust.sources[staging.example]`), else its position; any other
/// list, and every scalar, is one setting.
fn flatten(value: &Value, path: String, out: &mut BTreeMap<String, String>) {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                flatten(value, join(key), out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            for (i, item) in items.iter().enumerate() {
                let label = ["registry", "source"]
                    .iter()
                    .find_map(|k| item.get(*k).and_then(Value::as_str))
                    .map(str::to_owned)
                    .unwrap_or_else(|| i.to_string());
                flatten(item, format!("{path}[{label}]"), out);
            }
        }
        other => {
            out.insert(path, other.to_string());
        }
    }
}

/// The line of a rule's last key in `text`, found by its spelling (0 when not found).
fn line_of(text: &str, rule: &str) -> u32 {
    let key = rule.rsplit(['.', ']']).next().unwrap_or(rule);
    if key.is_empty() {
        return 0;
    }
    let wanted = format!("{key}:");
    text.lines()
        .position(|line| line.trim_start().trim_start_matches("- ").starts_with(&wanted))
        .map_or(0, |i| u32::try_from(i + 1).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    /// Files held in memory, by path.
    struct InMemory(BTreeMap<PathBuf, Vec<u8>>);

    impl Files for InMemory {
        fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
            self.0.get(path).cloned().ok_or_else(|| format!("{}: no such file", path.display()))
        }
    }

    fn files(entries: &[(&str, &str)]) -> InMemory {
        InMemory(entries.iter().map(|(p, t)| (PathBuf::from(p), t.as_bytes().to_vec())).collect())
    }

    #[test]
    fn every_changed_rule_is_named() {
        let (_, key_a) = ferry_trust::keys::generate_key_pair(b"pw").unwrap();
        let (_, key_b) = ferry_trust::keys::generate_key_pair(b"pw").unwrap();
        let base_config = "trust:\n  sources:\n  - registry: staging.example\n    signatures: required\n    keys: [staging.pub]\ncheck:\n  allowed-sources: [staging.example]\n  multi-arch: required\n";
        let base = files(&[("/repo/ferry.yaml", base_config), ("/repo/staging.pub", &key_a)]);
        let path = Path::new("/repo/ferry.yaml");
        // Identical, or only a comment changed: no change.
        assert_eq!(policy_changes(path, &base, &base), vec![]);
        let commented = files(&[
            ("/repo/ferry.yaml", &format!("# a comment\n{base_config}")),
            ("/repo/staging.pub", &key_a),
        ]);
        assert_eq!(policy_changes(path, &base, &commented), vec![]);
        // The attack: allowed-sources deleted, signatures relaxed, the key swapped.
        let head_config = "trust:\n  sources:\n  - registry: staging.example\n    signatures: if-present\n    keys: [staging.pub]\ncheck:\n  multi-arch: required\n";
        let head = files(&[("/repo/ferry.yaml", head_config), ("/repo/staging.pub", &key_b)]);
        let changes = policy_changes(path, &base, &head);
        let rules: Vec<&str> = changes.iter().map(|c| c.rule.as_str()).collect();
        assert_eq!(
            rules,
            vec!["check.allowed-sources", "trust.sources[staging.example].signatures", "staging.pub"]
        );
        assert_eq!(changes[0].message, "check.allowed-sources ([\"staging.example\"]) is removed");
        assert_eq!(
            changes[1].message,
            "trust.sources[staging.example].signatures changes from \"required\" to \"if-present\""
        );
        assert_eq!(changes[1].line, 4);
        assert_eq!(changes[2].message, "staging.pub, which /repo/ferry.yaml names, changes");
        // Added, removed, unparseable.
        let none = files(&[]);
        assert!(policy_changes(path, &none, &base)[0].message.contains("is new in this change"));
        assert!(policy_changes(path, &base, &none)[0].message.contains("is removed or unreadable"));
        let broken = files(&[("/repo/ferry.yaml", "check: [\n"), ("/repo/staging.pub", &key_a)]);
        assert!(policy_changes(path, &base, &broken)[0].message.contains("does not parse"));
    }
}
