//! Version ranges as the Go tools Ferry's inputs come from evaluate them: Masterminds/semver v3,
//! which regsync (`tags.semverRange`) and Rancher's image-mirror (`versionConstraint`) use.
//!
//! It differs from Cargo's `semver` crate where it matters for tags:
//! - versions are read loosely: `v1.2`, `1`, `1.2.3-rc.1+build` (missing parts are 0);
//! - a bare version is `=` (Cargo reads `1.2.3` as `^1.2.3`), and `1.2`/`1.x` are `~` ranges;
//! - AND by spaces or commas, OR by `||`, hyphen ranges `1.2 - 1.4.5`, `~>`, `=>`, `=<`;
//! - a prerelease matches only an AND group that names a prerelease itself.
//!
//! Pure; the semantics follow Masterminds/semver's `constraints.go` case for case.

use std::cmp::Ordering;
use std::fmt;
use std::sync::LazyLock;

/// A version as Masterminds' `NewVersion` reads it (coercing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: String,
}

static VERSION: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?$",
    )
    .expect("a valid regex")
});

impl Version {
    /// `None` when `text` is not a version (tags such as `latest`, `edge`, `1.2.3.4`).
    pub fn parse(text: &str) -> Option<Version> {
        let m = VERSION.captures(text)?;
        let part = |i: usize| -> Option<u64> {
            m.get(i).map_or(Some(0), |p| p.as_str().trim_start_matches('.').parse().ok())
        };
        let pre = m.get(5).map_or("", |p| p.as_str()).to_owned();
        // Masterminds rejects a numeric prerelease part with a leading zero.
        if pre.split('.').any(|p| p.len() > 1 && p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        Some(Version { major: part(1)?, minor: part(2)?, patch: part(3)?, pre })
    }

    fn triple(&self) -> (u64, u64, u64) {
        (self.major, self.minor, self.patch)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.triple().cmp(&other.triple()).then_with(|| compare_prerelease(&self.pre, &other.pre))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn compare_prerelease(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    // No prerelease sorts after any prerelease.
    match (a.is_empty(), b.is_empty()) {
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let (pa, pb): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for i in 0..pa.len().max(pb.len()) {
        let ordering = compare_pre_part(pa.get(i).copied().unwrap_or(""), pb.get(i).copied().unwrap_or(""));
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

fn compare_pre_part(s: &str, o: &str) -> Ordering {
    if s == o {
        return Ordering::Equal;
    }
    if s.is_empty() {
        return Ordering::Less;
    }
    if o.is_empty() {
        return Ordering::Greater;
    }
    match (s.parse::<u64>(), o.parse::<u64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => s.cmp(o),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    TildeOrEqual,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Tilde,
    Caret,
}

#[derive(Clone, Debug)]
struct Constraint {
    op: Op,
    version: Version,
    dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
}

/// A parsed range: OR groups of AND constraints.
#[derive(Clone, Debug)]
pub struct Range {
    text: String,
    groups: Vec<(Vec<Constraint>, bool)>,
}

/// A range that does not parse, with Masterminds' wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeError(pub String);

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "improper constraint: {:?}", self.0)
    }
}

const CV: &str = r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";
const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";

static ONE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(&format!(r"^\s*({OPS})\s*({CV})\s*$")).expect("a valid regex"));
static HYPHEN: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(&format!(r"\s*({CV})\s+-\s+({CV})\s*")).expect("a valid regex"));
static FIND: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(&format!(r"({OPS})\s*({CV})")).expect("a valid regex"));
static VALID: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(&format!(r"^(\s*({OPS})\s*({CV})\s*)((?:\s+|,\s*)({OPS})\s*({CV})\s*)*$"))
        .expect("a valid regex")
});

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

impl Range {
    pub fn parse(text: &str) -> Result<Range, RangeError> {
        // Hyphen ranges become `>= a, <= b`.
        let rewritten =
            HYPHEN.replace_all(text, |c: &regex::Captures<'_>| format!(">= {}, <= {} ", &c[1], &c[11]));
        let mut groups = Vec::new();
        for or in rewritten.split("||") {
            // Go's regexp finds the leftmost-first alternative: the ops list puts `=` before
            // `>=`, so Rust's leftmost-first matching of the same pattern agrees.
            if !VALID.is_match(or) {
                return Err(RangeError(or.to_owned()));
            }
            let found: Vec<&str> = FIND.find_iter(or).map(|m| m.as_str()).collect();
            let pieces = if found.is_empty() { vec![or] } else { found };
            let mut group = Vec::new();
            let mut has_pre = false;
            for piece in pieces {
                let c = parse_constraint(piece).ok_or_else(|| RangeError(piece.to_owned()))?;
                has_pre |= !c.version.pre.is_empty();
                group.push(c);
            }
            groups.push((group, has_pre));
        }
        Ok(Range { text: text.to_owned(), groups })
    }

    /// Whether `version` satisfies the range (any OR group, every constraint of it).
    pub fn matches(&self, version: &Version) -> bool {
        self.groups.iter().any(|(group, has_pre)| group.iter().all(|c| c.check(version, *has_pre)))
    }

    /// Whether the tag is a version that satisfies the range; tags that are not versions never
    /// do.
    pub fn matches_tag(&self, tag: &str) -> bool {
        Version::parse(tag).is_some_and(|v| self.matches(&v))
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_constraint(text: &str) -> Option<Constraint> {
    if text.is_empty() {
        return Some(Constraint {
            op: Op::TildeOrEqual,
            version: Version { major: 0, minor: 0, patch: 0, pre: String::new() },
            dirty: true,
            minor_dirty: false,
            patch_dirty: false,
        });
    }
    let m = ONE.captures(text)?;
    let op = match &m[1] {
        "" | "=" => Op::TildeOrEqual,
        "!=" => Op::NotEqual,
        ">" => Op::Greater,
        "<" => Op::Less,
        ">=" | "=>" => Op::GreaterEqual,
        "<=" | "=<" => Op::LessEqual,
        "~" | "~>" => Op::Tilde,
        "^" => Op::Caret,
        _ => return None,
    };
    let group = |i: usize| m.get(i).map_or("", |g| g.as_str());
    let (major, minor, patch) =
        (group(3), group(4).trim_start_matches('.'), group(5).trim_start_matches('.'));
    let pre = group(6);
    let (mut dirty, mut minor_dirty, mut patch_dirty) = (false, false, false);
    let text = if is_x(major) || major.is_empty() {
        dirty = true;
        format!("0.0.0{pre}")
    } else if is_x(minor) || minor.is_empty() {
        dirty = true;
        minor_dirty = true;
        format!("{major}.0.0{pre}")
    } else if is_x(patch) || patch.is_empty() {
        dirty = true;
        patch_dirty = true;
        format!("{major}.{minor}.0{pre}")
    } else {
        group(2).to_owned()
    };
    let version = Version::parse(&text)?;
    Some(Constraint { op, version, dirty, minor_dirty, patch_dirty })
}

impl Constraint {
    fn check(&self, v: &Version, include_pre: bool) -> bool {
        if !v.pre.is_empty() && !include_pre {
            return false;
        }
        let c = &self.version;
        match self.op {
            Op::TildeOrEqual => {
                if self.dirty {
                    self.tilde(v)
                } else {
                    v.cmp(c) == Ordering::Equal
                }
            }
            Op::NotEqual => {
                if self.dirty {
                    if c.major != v.major {
                        return true;
                    }
                    if c.minor != v.minor && !self.minor_dirty {
                        return true;
                    } else if self.minor_dirty {
                        return false;
                    } else if c.patch != v.patch && !self.patch_dirty {
                        return true;
                    } else if self.patch_dirty {
                        if !v.pre.is_empty() || !c.pre.is_empty() {
                            return compare_prerelease(&v.pre, &c.pre) != Ordering::Equal;
                        }
                        return false;
                    }
                }
                v.cmp(c) != Ordering::Equal
            }
            Op::Greater => {
                if !self.dirty {
                    return v > c;
                }
                if v.major > c.major {
                    true
                } else if v.major < c.major || self.minor_dirty {
                    false
                } else if self.patch_dirty {
                    v.minor > c.minor
                } else {
                    v > c
                }
            }
            Op::Less => v < c,
            Op::GreaterEqual => v >= c,
            Op::LessEqual => {
                if !self.dirty {
                    return v <= c;
                }
                !(v.major > c.major || (v.major == c.major && v.minor > c.minor && !self.minor_dirty))
            }
            Op::Tilde => self.tilde(v),
            Op::Caret => {
                if v < c {
                    return false;
                }
                if c.major > 0 || self.minor_dirty {
                    return v.major == c.major;
                }
                if v.major > 0 {
                    return false;
                }
                if c.minor > 0 || self.patch_dirty {
                    return v.minor == c.minor;
                }
                if v.minor > 0 {
                    return false;
                }
                c.patch == v.patch
            }
        }
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.version;
        if v < c {
            return false;
        }
        if c.triple() == (0, 0, 0) && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        if v.major != c.major {
            return false;
        }
        v.minor == c.minor || self.minor_dirty
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    /// Cases from Masterminds/semver's `constraints_test.go` (TestConstraintsCheck and
    /// friends), plus the differences from Cargo's reading that matter for tags.
    #[test]
    fn ranges_as_masterminds_reads_them() {
        let cases: &[(&str, &str, bool)] = &[
            ("=2.0.0", "1.2.3", false),
            ("=2.0.0", "2.0.0", true),
            ("2.0.0", "2.0.1", false),
            ("2.0", "2.0.1", true),
            ("2.0", "2.1.0", false),
            ("1.x", "1.9.3", true),
            ("*", "4.5.6", true),
            ("*", "1.2.3-alpha", false),
            ("!=4.1", "4.1.0", false),
            ("!=4.1", "5.1.0", true),
            ("!=4.x", "4.1.0", false),
            (">1.1", "1.1.5", false),
            (">1.1", "1.2.0", true),
            (">11", "11.1.0", false),
            (">1.0.0-beta", "1.0.1-beta", true),
            (">1.0.0", "1.0.1-beta", false),
            (">= 1.1", "1.1.0", true),
            ("<= 1.1", "1.1.1", true),
            ("<=1.1.0", "1.1.1", false),
            ("<1.1", "1.0.9", true),
            ("~1.2.3", "1.2.4", true),
            ("~1.2.3", "1.3.4", false),
            ("~1", "1.8.0", true),
            ("~0.0.0", "3.1.1", true),
            ("^1.2.3", "1.8.9", true),
            ("^1.2.3", "2.0.0", false),
            ("^0.2.3", "0.2.5", true),
            ("^0.2.3", "0.3.0", false),
            ("^0.0.3", "0.0.4", false),
            ("^0", "0.9.9", true),
            (">=1.1 <2", "1.9.0", true),
            (">=1.1, <2", "2.0.0", false),
            (">=1.1,<2", "1.5.0", true),
            ("1.1 - 3", "4.3.2", false),
            ("1.1 - 3", "2.3.2", true),
            ("1.1 - 3.1", "3.1.9", true),
            (">=1.0.0 <2.0.0 || >=4.0.0", "4.2.0", true),
            (">=1.0.0 <2.0.0 || >=4.0.0", "3.0.0", false),
            (">=1.0.0-0", "1.0.0-rc.1", true),
            (">=1.18", "v1.20.3", true),
            (">=1.18", "1.20", true),
            (">=1.18", "latest", false),
            (">=1.18", "1.20.3.4", false),
            (">=1.0.0", "1.0.0-rc.01", false),
        ];
        for (range, version, want) in cases {
            let r = Range::parse(range).unwrap_or_else(|e| panic!("{range}: {e}"));
            assert_eq!(r.matches_tag(version), *want, "{range} against {version}");
        }
    }

    #[test]
    fn improper_ranges_are_errors() {
        for bad in [">=foo", "1.2.3 ||| 4", ">> 1", "1.2.3.4"] {
            assert!(Range::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn ordering_follows_semver_precedence() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.0.0-alpha.1") < v("1.0.0-alpha.beta"));
        assert!(v("1.0.0-beta.2") < v("1.0.0-beta.11"));
        assert!(v("1.0.0-rc.1") < v("1.0.0"));
        assert_eq!(v("1.0.0+build").cmp(&v("1.0.0")), Ordering::Equal);
        assert_eq!(v("v2"), v("2.0.0"));
    }
}
