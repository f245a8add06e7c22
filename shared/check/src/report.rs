//! What a check found: one row per new digest, and the problems that belong to no digest.

use ferry_model::{CheckName, Digest, Origin, Repository, Tag};
pub use ferry_trust::verify::{Check, Status};

/// The result of checking a change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// One per (source, digest) the change adds, in input order.
    pub digests: Vec<DigestReport>,
    /// Problems that belong to no new digest: lint findings, tags removed or moved, entries
    /// whose source tag cannot be found.
    pub problems: Vec<Problem>,
}

/// Everything checked about one new digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestReport {
    pub source: Repository,
    pub digest: Digest,
    /// The destination tags the change asks for (empty: tagless).
    pub tags: Vec<Tag>,
    /// Where the change asks for it (the first entry that does).
    pub origin: Origin,
    /// Each check, in a fixed order: see [`crate::CHECKS`].
    pub checks: Vec<Check>,
}

/// A problem at a place in the inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The check that found it: `lint`, `immutable-tags`, `source`, `policy`, ...
    pub check: CheckName,
    pub status: Status,
    pub origin: Origin,
    pub message: String,
}

/// The outcome, in GitHub's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conclusion {
    /// Every check passed, was skipped or only warned.
    Success,
    /// A check failed.
    Failure,
    /// Nothing failed, but a registry could not be read, so something went unchecked.
    Neutral,
}

impl Conclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Neutral => "neutral",
        }
    }
}

impl DigestReport {
    /// The worst status among the checks that were made: a skipped check counts for nothing.
    pub fn status(&self) -> Status {
        self.checks.iter().map(|c| c.status).filter(|s| *s != Status::Skip).max().unwrap_or(Status::Pass)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }

    /// `source@digest`.
    pub fn image(&self) -> String {
        format!("{}@{}", self.source, self.digest)
    }
}

/// The reason [`crate::decide`] gives a check it could not make because a registry could not
/// be read. Such a check is a warning, and makes the conclusion neutral rather than success.
pub const UNCHECKED: &str = "could not be checked: ";

impl Report {
    /// The report of a change whose inputs cannot be read at all: each problem a `lint`
    /// failure at its place, so that it reaches the pull request like any other.
    pub fn unreadable(problems: impl IntoIterator<Item = (Origin, String)>) -> Report {
        let problems = problems
            .into_iter()
            .map(|(origin, message)| Problem {
                check: CheckName::Lint,
                status: Status::Fail,
                origin,
                message,
            })
            .collect();
        Report { digests: Vec::new(), problems }
    }

    /// How many checks failed, over rows and problems.
    pub fn n_failures(&self) -> usize {
        self.digests.iter().map(|d| d.failures().count()).sum::<usize>()
            + self.problems.iter().filter(|p| p.status == Status::Fail).count()
    }

    /// New digests with no failed check.
    pub fn n_verified(&self) -> usize {
        self.digests.iter().filter(|d| d.status() != Status::Fail).count()
    }

    pub fn conclusion(&self) -> Conclusion {
        if self.n_failures() > 0 {
            Conclusion::Failure
        } else if self.digests.iter().flat_map(|d| &d.checks).any(|c| c.reason.starts_with(UNCHECKED))
            || self.problems.iter().any(|p| p.message.starts_with(UNCHECKED))
        {
            Conclusion::Neutral
        } else {
            Conclusion::Success
        }
    }

    /// One line: `3 new digests: all verified` or `7 new digests, 4 with problems; 2 other problems`.
    pub fn title(&self) -> String {
        let n = self.digests.len();
        let noun = if n == 1 { "new digest" } else { "new digests" };
        let bad = self.digests.iter().filter(|d| d.status() == Status::Fail).count();
        let other = self.problems.iter().filter(|p| p.status == Status::Fail).count();
        let mut title = match (n, bad) {
            (0, _) => "no new digests".to_owned(),
            (n, 0) => format!("{n} {noun}: all verified"),
            (n, bad) => format!("{n} {noun}, {bad} with problems"),
        };
        if other > 0 {
            let noun = if other == 1 { "problem" } else { "problems" };
            let sep = if n > 0 && bad == 0 { "; but" } else { ";" };
            title.push_str(&format!("{sep} {other} other {noun}"));
        }
        if self.conclusion() == Conclusion::Neutral {
            title.push_str(" (some checks could not be made)");
        }
        title
    }
}
