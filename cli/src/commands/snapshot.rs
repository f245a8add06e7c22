//! `ferry snapshot`.

use ferry_config::Env;
use ferry_plan::snapshot::{SnapshotOptions, snapshot};

use crate::args::{SnapshotArgs, SnapshotFormat};
use crate::error::{CliError, ExitStatus};
use crate::output;

pub(crate) async fn run(args: SnapshotArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let config = super::config(&args.registries, env)?;
    let registry = super::registry(&config, env)?;
    let options = SnapshotOptions { minimal: args.minimal, concurrency: args.registries.concurrency };
    let images = snapshot(&registry, &args.registry, options).await?;
    let text = match args.output {
        SnapshotFormat::Yaml => ferry_manifests::kpromo::write_images_yaml(&images),
        SnapshotFormat::Csv => output::snapshot_csv_kpromo(&images),
        SnapshotFormat::CsvHeader => output::snapshot_csv(&images),
    };
    output::print(&text);
    Ok(ExitStatus::Ok)
}
