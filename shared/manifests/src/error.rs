use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Everything that can be wrong with an input. Each variant prints as one line that starts with
/// the file (and line, where there is one), so that editors and CI annotations can jump to it.
#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax { path: PathBuf, line: u64, column: u64, message: String },

    #[error("{}:{line}: field `{field}`: {message}", path.display())]
    Field { path: PathBuf, line: u64, field: &'static str, message: String },

    #[error("{}: {message}", path.display())]
    Layout { path: PathBuf, message: String },

    #[error("git {}: {message}", repo.display())]
    Git { repo: PathBuf, message: String },

    /// A notice (an invalid entry, a warning) refused in lint mode (`--strict`).
    #[error("{}", notice_text(.origin, .field, .message))]
    Notice {
        kind: ferry_model::NoticeKind,
        origin: ferry_model::Origin,
        field: std::sync::Arc<str>,
        message: String,
    },

    #[error("{}", ManyDisplay(.0))]
    Many(Vec<ManifestError>),
}

fn notice_text(origin: &ferry_model::Origin, field: &str, message: &str) -> String {
    if origin.line > 0 {
        format!("{}:{}: field `{field}`: {message}", origin.source, origin.line)
    } else {
        format!("{}: field `{field}`: {message}", origin.source)
    }
}

impl ManifestError {
    /// The same error with every path it names passed through `relabel` (a snapshot's
    /// temporary path becomes `head@<rev>:<path in the repository>`).
    pub fn relabel(self, relabel: &dyn Fn(&Path) -> PathBuf) -> Self {
        match self {
            ManifestError::Read { path, source } => ManifestError::Read { path: relabel(&path), source },
            ManifestError::Syntax { path, line, column, message } => {
                ManifestError::Syntax { path: relabel(&path), line, column, message }
            }
            ManifestError::Field { path, line, field, message } => {
                ManifestError::Field { path: relabel(&path), line, field, message }
            }
            ManifestError::Layout { path, message } => {
                ManifestError::Layout { path: relabel(&path), message }
            }
            ManifestError::Notice { kind, mut origin, field, message } => {
                origin.source = relabel(Path::new(&*origin.source)).display().to_string().into();
                ManifestError::Notice { kind, origin, field, message }
            }
            ManifestError::Many(all) => {
                ManifestError::Many(all.into_iter().map(|e| e.relabel(relabel)).collect())
            }
            git @ ManifestError::Git { .. } => git,
        }
    }

    /// Collapses a list of problems into one error, keeping a single problem as itself.
    pub(crate) fn from_problems(mut problems: Vec<ManifestError>) -> Result<(), ManifestError> {
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ManifestError::Many(problems)),
        }
    }

    /// Where the problem is (file, and line where there is one), and what it is, without the
    /// place: for reports that show the place apart (a check run's annotations).
    /// [`ManifestError::Many`] has no single place; ask each of [`ManifestError::problems`].
    pub fn place_and_detail(&self) -> (ferry_model::Origin, String) {
        let at = |path: &Path, line: u64| {
            ferry_model::Origin::new(path.display().to_string(), u32::try_from(line).unwrap_or(0))
        };
        match self {
            ManifestError::Read { path, source } => (at(path, 0), format!("cannot read: {source}")),
            ManifestError::Syntax { path, line, column, message } => {
                (at(path, *line), format!("column {column}: {message}"))
            }
            ManifestError::Field { path, line, field, message } => {
                (at(path, *line), format!("field `{field}`: {message}"))
            }
            ManifestError::Layout { path, message } => (at(path, 0), message.clone()),
            ManifestError::Notice { origin, field, message, .. } => {
                (origin.clone(), format!("field `{field}`: {message}"))
            }
            ManifestError::Git { repo, message } => (at(repo, 0), format!("git: {message}")),
            ManifestError::Many(_) => (ferry_model::Origin::new("", 0), self.to_string()),
        }
    }

    /// The individual problems, flattening [`ManifestError::Many`].
    pub fn problems(&self) -> Vec<&ManifestError> {
        match self {
            ManifestError::Many(all) => all.iter().flat_map(ManifestError::problems).collect(),
            one => vec![one],
        }
    }
}

struct ManyDisplay<'a>(&'a [ManifestError]);

impl fmt::Display for ManyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}
