//! The ingest function for the `events` queue (ECR pushes through EventBridge).

fn main() -> std::process::ExitCode {
    ferry_bootstrap::main(|context| async move {
        Ok(ferry_ingest::EventsStage { registries: context.config.pipeline.registries.clone() })
    })
}
