//! The ingest HTTP function: an HTTP server locally (`FERRY_INGEST_LISTEN`), or behind API
//! Gateway / a function URL on AWS Lambda.

fn main() -> std::process::ExitCode {
    ferry_bootstrap::http_main(|context, broker| {
        let config = ferry_ingest::IngestConfig::from_config(&context.config, &context.env);
        ferry_ingest::router(ferry_ingest::Ingest::new(broker, config))
    })
}
