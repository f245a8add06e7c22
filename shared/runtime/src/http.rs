//! Serving ingest's router: a local HTTP server, or AWS Lambda behind API Gateway or a
//! function URL. (Its `main`, with the configuration and the startup checks, is
//! `ferry_bootstrap::http_main`.)

use std::net::SocketAddr;

use futures_util::FutureExt as _;

/// Serves `router`: on Lambda through the Runtime API, else on `listen` until `shutdown`.
pub async fn serve_router(
    router: axum::Router,
    lambda: bool,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if lambda {
        // Boxed, like `run_lambda`: the runtime's stack is deep (and not `Send`).
        lambda_http::run(router).boxed_local().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    } else {
        serve(router, listen, shutdown).await?;
    }
    Ok(())
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
