//! Logs go to stderr, so that stdout carries only the command's output (a plan, a snapshot).

use tracing_subscriber::EnvFilter;

pub(crate) fn init(verbose: u8, env: &ferry_config::Env) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_new(env.log.as_deref().unwrap_or(default)).unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only for a person at a terminal, never into a file or a pipe.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match env.log_format.as_deref() {
        Some("json") => builder.json().try_init(),
        _ => builder.try_init(),
    };
}
