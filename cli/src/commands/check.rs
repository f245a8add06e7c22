//! `ferry config check`, and the startup checks of `ferry run` and `ferry worker`: the checks
//! themselves are `ferry_bootstrap::checks`, the same every function binary runs.

use ferry_bootstrap::checks::{self, CheckError, Needs, Severity, StartError};
use ferry_config::{Config, Env};

use crate::error::{CliError, ExitStatus};
use crate::output;

impl From<CheckError> for CliError {
    fn from(error: CheckError) -> Self {
        match error {
            CheckError::Config(e) => CliError::Config(e),
            CheckError::Registry(e) => CliError::Registry(e),
        }
    }
}

/// `ferry config check`.
pub(crate) async fn command(config: Option<std::path::PathBuf>, env: &Env) -> Result<ExitStatus, CliError> {
    let path = config.or_else(|| env.config.clone());
    let Some(path) = path else {
        return Err(CliError::Usage("give --config FILE (or FERRY_CONFIG)".into()));
    };
    let config = Config::load(Some(&path))?;
    let found = checks::check(&config, env, Needs::ALL).await?;
    let mut text = format!("{}: the file is valid\n", path.display());
    for line in &found.fine {
        text.push_str(&format!("ok: {line}\n"));
    }
    for problem in &found.problems {
        text.push_str(&problem.line());
        text.push('\n');
    }
    let fatal = found.problems.iter().filter(|p| p.severity == Severity::Fatal).count();
    text.push_str(&format!(
        "{} problem(s): {fatal} would stop `ferry run`, {} warning(s)\n",
        found.problems.len(),
        found.problems.len() - fatal
    ));
    output::print(&text);
    Ok(if fatal > 0 { ExitStatus::InvalidInput } else { ExitStatus::Ok })
}

/// At startup: print every problem; refuse to start on a fatal one, with the line every
/// function binary prints too.
pub(crate) async fn at_startup(config: &Config, env: &Env, needs: Needs) -> Result<(), CliError> {
    match checks::at_startup(config, env, needs, output::note).await {
        Ok(()) => Ok(()),
        Err(StartError::Check(e)) => Err(e.into()),
        Err(StartError::Refused) => Err(CliError::Usage(checks::REFUSAL.into())),
    }
}
