//! The `main` of an HTTP function (ingest): a local HTTP server, or AWS Lambda behind API
//! Gateway or a function URL.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use ferry_config::Env;
use ferry_queue::AnyBroker;
use futures_util::FutureExt as _;

use crate::function::{Context, load_config, topology};
use crate::worker::shutdown_signal;

/// Builds the router with `build` and serves it until SIGTERM (or forever on Lambda).
pub fn main<F>(build: F) -> ExitCode
where
    F: FnOnce(&Context, Arc<AnyBroker>) -> axum::Router,
{
    let env = Env::from_process();
    crate::telemetry::init("ferry-ingest", &env);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async move {
        let config = load_config(&env)?;
        let lambda = env.lambda_runtime_api.is_some();
        let transport =
            env.transport.clone().unwrap_or_else(|| if lambda { "sqs://".into() } else { String::new() });
        if transport.is_empty() {
            anyhow::bail!("set FERRY_TRANSPORT (amqp://…, sqs://…) to run ingest");
        }
        let broker = Arc::new(AnyBroker::connect(&transport, topology(&env)).await?);
        let listen: SocketAddr = env.ingest_listen.as_deref().unwrap_or("127.0.0.1:8080").parse()?;
        let context = Context { env, config };
        let router = build(&context, broker);
        if lambda {
            // Boxed, like `run_lambda`: the runtime's stack is deep (and not `Send`).
            lambda_http::run(router).boxed_local().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        } else {
            serve(router, listen, shutdown_signal()).await?;
        }
        Ok(())
    });
    crate::telemetry::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "ingest failed");
            ExitCode::FAILURE
        }
    }
}

/// Serves `router` on `listen` until `shutdown`, finishing requests in progress.
pub async fn serve(
    router: axum::Router,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, "ingest listening");
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
