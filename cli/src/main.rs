//! `ferry`: the command line. Thin by design: it parses arguments, reads configuration once,
//! calls the library crates and prints. Every error leaves as one line on stderr and a
//! documented exit code (see [`error::ExitStatus`]); nothing panics at a user.

mod args;
mod commands;
mod error;
mod logging;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // A panic is a bug in Ferry; say so in one line instead of printing a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        error::report_line(&format!("internal error{location}: {message} (please report this)"));
    }));
    let args = args::Cli::parse();
    let env = ferry_config::Env::from_process();
    match &args.command {
        // The long-running pipeline logs like the function binaries: JSON by default, and
        // with OpenTelemetry spans whether or not an OTLP endpoint is set, so that trace ids
        // are created, propagated through messages, logged and kept in dead letters.
        args::Command::Run(_) | args::Command::Worker(_) => {
            ferry_runtime::telemetry::init_with("ferry", &env, ferry_runtime::telemetry::LogFormat::Text)
        }
        _ => logging::init(args.verbose, &env),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            error::report_line(&format!("cannot start the async runtime: {e}"));
            return error::ExitStatus::Internal.into();
        }
    };
    match runtime.block_on(commands::run(args.command, env)) {
        Ok(status) => status.into(),
        Err(e) => {
            e.report();
            e.status().into()
        }
    }
}
