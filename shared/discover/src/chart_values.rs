//! The images a Helm chart's values name, found by reading the values as data (no templating):
//! what `ferry charts scan` and `ferry discover`'s chart fallback use. Pure.
//!
//! Forms recognised, at any depth:
//! - a mapping with `repository` and a `tag` and/or `digest`, optionally `registry` (the form
//!   Rancher's charts use, which charts-build-scripts scans; also Bitnami's
//!   `image: {registry, repository, tag, digest}`);
//! - a mapping with `image: "<repository>"` and a sibling `tag`;
//! - `image: "<repository>:<tag>"`, `"<repository>@<digest>"` or both (what image-mirror's
//!   HelmLatest finds in rendered templates).
//!
//! A tag that YAML reads as a number (`tag: 1.10`) is left out with the reason: Helm renders it
//! as `1.1`, not as written. An empty tag (the chart's templates fill it in, usually from
//! `appVersion`) is left out with a warning. A scalar's text is taken as written.

use std::path::Path;

use ferry_model::{Notice, NoticeKind, Origin};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

use ferry_manifests::ManifestError;
use ferry_manifests::yaml::{self, Spanned};

/// One image a values file names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUse {
    /// `registry/repository` when a registry is named, else the repository as written.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub line: u64,
}

/// A YAML node with each scalar's text as written.
#[derive(Debug)]
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    /// A string scalar (its value), or another scalar (`raw` set: number, bool).
    Scalar {
        text: String,
        raw: bool,
    },
    Null,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Scalar { text: v.to_owned(), raw: false })
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Scalar { text: v, raw: false })
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Scalar { text: v.to_string(), raw: true })
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Scalar { text: v.to_string(), raw: true })
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Scalar { text: v.to_string(), raw: true })
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Scalar { text: v.to_string(), raw: true })
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Node>>()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut pairs = Vec::new();
                while let Some((key, value)) = map.next_entry::<KeyText, Spanned<Node>>()? {
                    pairs.push((key.0, value));
                }
                Ok(Node::Map(pairs))
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// A mapping key as text, whatever scalar it is.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Node::deserialize(deserializer)? {
            Node::Scalar { text, .. } => Ok(KeyText(text)),
            Node::Null => Ok(KeyText(String::new())),
            _ => Ok(KeyText("<complex key>".to_owned())),
        }
    }
}

fn line(node: &Spanned<Node>) -> u64 {
    node.referenced.line()
}

/// The text of a scalar as written in `source` (for numbers, whose parsed value loses it).
fn written(source: &str, node: &Spanned<Node>) -> Option<String> {
    let span = node.referenced.span();
    let (start, len) = (usize::try_from(span.byte_offset()?).ok()?, usize::try_from(span.byte_len()?).ok()?);
    source.get(start..start + len).map(|s| s.trim().to_owned())
}

struct Scan<'a> {
    path: &'a Path,
    source: &'a str,
    found: Vec<ImageUse>,
    notices: Vec<Notice>,
}

impl Scan<'_> {
    fn notice(&mut self, kind: NoticeKind, line: u64, field: &str, message: String) {
        self.notices.push(Notice {
            kind,
            origin: Origin::new(self.path.display().to_string(), u32::try_from(line).unwrap_or(u32::MAX)),
            field: field.into(),
            message,
        });
    }

    /// A string scalar's text, or `None` (with a notice for a number where a tag belongs).
    fn text(&mut self, node: &Spanned<Node>, field: &str) -> Option<String> {
        match &node.value {
            Node::Scalar { text, raw: false } => Some(text.clone()),
            Node::Scalar { text, raw: true } => {
                let as_written = written(self.source, node).unwrap_or_else(|| text.clone());
                if field == "tag" && as_written != *text {
                    self.notice(
                        NoticeKind::Invalid,
                        line(node),
                        field,
                        format!("tag {as_written} is a YAML number, which Helm renders as {text}; quote it. Left out"),
                    );
                    return None;
                }
                Some(as_written)
            }
            _ => None,
        }
    }

    fn walk(&mut self, node: &Spanned<Node>) {
        match &node.value {
            Node::Map(pairs) => {
                let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v);
                let repository = get("repository").filter(|v| matches!(v.value, Node::Scalar { .. }));
                let image = get("image").filter(|v| matches!(v.value, Node::Scalar { .. }));
                if let Some(repo_node) = repository.or(image) {
                    let field = if repository.is_some() { "repository" } else { "image" };
                    if let Some(repo) = self.text(repo_node, field).filter(|r| !r.is_empty()) {
                        let tag_node = get("tag");
                        let digest_node = get("digest");
                        let tag = tag_node.and_then(|t| self.text(t, "tag")).filter(|t| !t.is_empty());
                        let digest =
                            digest_node.and_then(|d| self.text(d, "digest")).filter(|d| !d.is_empty());
                        let registry =
                            get("registry").and_then(|r| self.text(r, "registry")).filter(|r| !r.is_empty());
                        let (repo, inline_tag, inline_digest) = split_reference(&repo);
                        let tag = tag.or(inline_tag);
                        let digest = digest.or(inline_digest);
                        let repository = match registry {
                            Some(registry) => format!("{}/{repo}", registry.trim_end_matches('/')),
                            None => repo,
                        };
                        if tag.is_some() || digest.is_some() {
                            self.found.push(ImageUse { repository, tag, digest, line: line(repo_node) });
                            // A complete image: its own keys are not read again.
                            for (key, value) in pairs {
                                if !["repository", "image", "tag", "digest", "registry"]
                                    .contains(&key.as_str())
                                {
                                    self.walk(value);
                                }
                            }
                            return;
                        } else if tag_node.is_some_and(
                            |t| matches!(&t.value, Node::Scalar { text, raw: false } if text.is_empty()),
                        ) {
                            self.notice(
                                NoticeKind::Warning,
                                line(repo_node),
                                "tag",
                                format!("{repository} has an empty tag (the chart's templates fill it in); left out"),
                            );
                        }
                    }
                }
                for (_, value) in pairs {
                    self.walk(value);
                }
            }
            Node::Seq(items) => {
                for item in items {
                    self.walk(item);
                }
            }
            _ => {}
        }
    }
}

/// `repo:tag@digest` into its parts; a `:` before the last `/` is a registry port.
pub fn split_reference(text: &str) -> (String, Option<String>, Option<String>) {
    let (name, digest) = match text.split_once('@') {
        Some((name, digest)) => (name, Some(digest.to_owned())),
        None => (text, None),
    };
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(colon) => {
            let at = slash + colon;
            (name[..at].to_owned(), Some(name[at + 1..].to_owned()), digest)
        }
        None => (name.to_owned(), None, digest),
    }
}

/// Every image `text` (a values file at `path`) names, with notices for what is left out.
pub fn images(path: &Path, text: &str) -> Result<(Vec<ImageUse>, Vec<Notice>), ManifestError> {
    let root: Option<Spanned<Node>> = yaml::parse(path, text)?;
    let mut scan = Scan { path, source: text, found: Vec::new(), notices: Vec::new() };
    if let Some(root) = &root {
        scan.walk(root);
    }
    Ok((scan.found, scan.notices))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn every_form_at_any_depth() {
        let text = format!(
            "global:\n  cattle:\n    systemDefaultRegistry: \"\"\n\
             image:\n  repository: rancher/fleet\n  tag: v0.13.8\n\
             agent:\n  image:\n    registry: docker.io\n    repository: rancher/fleet-agent\n    tag: \"v0.13.8\"\n\
             helper:\n  image: rancher/kubectl\n  tag: v1.32.2\n\
             sidecars:\n- name: a\n  image: rancher/mirrored-a:1.2.3\n- name: b\n  image: quay.io/b/c@{D}\n\
             pinned:\n  repository: rancher/pinned\n  digest: {D}\n\
             numeric:\n  repository: rancher/num\n  tag: 1.10\n\
             integer:\n  repository: rancher/int\n  tag: 2\n\
             templated:\n  repository: rancher/tmpl\n  tag: \"\"\n\
             port:\n  image: localhost:5000/x/y:1.0\n"
        );
        let (found, notices) = images(Path::new("values.yaml"), &text).unwrap();
        let got: Vec<(String, Option<String>, Option<String>, u64)> =
            found.into_iter().map(|i| (i.repository, i.tag, i.digest, i.line)).collect();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            got,
            [
                ("rancher/fleet".into(), s("v0.13.8"), None, 5),
                ("docker.io/rancher/fleet-agent".into(), s("v0.13.8"), None, 10),
                ("rancher/kubectl".into(), s("v1.32.2"), None, 13),
                ("rancher/mirrored-a".into(), s("1.2.3"), None, 17),
                ("quay.io/b/c".into(), None, s(D), 19),
                ("rancher/pinned".into(), None, s(D), 21),
                ("rancher/int".into(), s("2"), None, 27),
                ("localhost:5000/x/y".into(), s("1.0"), None, 33),
            ]
        );
        let notices: Vec<(NoticeKind, u32, String)> =
            notices.iter().map(|n| (n.kind, n.origin.line, n.message.clone())).collect();
        assert_eq!(notices.len(), 2, "{notices:#?}");
        assert_eq!((notices[0].0, notices[0].1), (NoticeKind::Invalid, 25));
        assert!(
            notices[0].2.contains("tag 1.10 is a YAML number, which Helm renders as 1.1"),
            "{notices:#?}"
        );
        assert_eq!((notices[1].0, notices[1].1), (NoticeKind::Warning, 30));
    }

    #[test]
    fn references_split_at_the_right_colon() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(split_reference("a/b:1"), ("a/b".into(), s("1"), None));
        assert_eq!(split_reference("host:5000/a/b"), ("host:5000/a/b".into(), None, None));
        assert_eq!(split_reference(&format!("a:1@{D}")), ("a".into(), s("1"), s(D)));
    }
}
