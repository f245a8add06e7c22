//! The command line, as clap types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ferry_model::{Host, RegistryPath};

#[derive(Debug, Parser)]
#[command(name = "ferry", version, about = "Event-driven container image promoter", long_about = None)]
pub(crate) struct Cli {
    /// More logging on stderr (-v info, -vv debug). FERRY_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show what a promotion would do (dry run): every edge with its action.
    Plan(PlanArgs),
    /// Plan, then (with --confirm) copy every edge that needs it: blobs, manifests, tags.
    Promote(PromoteArgs),
    /// Print every image under a registry path as a thin-manifest images.yaml (or CSV).
    Snapshot(SnapshotArgs),
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Verify an image against the trust policy and print every check.
    Verify(VerifyArgs),
    /// Verify a Sigstore bundle about a file or a digest, offline (sigstore-conformance's client
    /// protocol).
    VerifyBundle(VerifyBundleArgs),
    /// Sign a digest (and each child of an index) with a cosign-format signature.
    Sign(SignArgs),
    /// Write a promotion attestation for a digest.
    Attest(AttestArgs),
    /// Copy .sig/.att/.sbom from each primary destination to its mirrors (dry run without --confirm).
    ReplicateSignatures(ReplicateArgs),
    /// Run the whole event pipeline in this process: ingest and every stage.
    Run(RunArgs),
    /// Run one stage as a worker on a broker.
    Worker(WorkerArgs),
    /// Queue topology.
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// Inspect and replay dead-letter queues.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Desired state against the registries: copied, signed, attested and replicated at every
    /// destination, and what waits in a dead-letter queue.
    Status(StatusArgs),
    /// Emit only the stage messages still missing (verify/copy, sign, attest, replicate).
    /// Idempotent; run it on demand or on a schedule.
    Reconcile(ReconcileArgs),
    /// The configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Presubmit: verify every digest and tag a manifest change adds, with the trust policy
    /// and the config's `check:` policy, without writing anything. Exits 0 when all is well, 8
    /// when a check failed, 4 when a registry could not be read (and nothing failed).
    Check(CheckArgs),
    /// Migrate: write any input (images-list, Rancher config.yaml, regsync.yaml, charts sync,
    /// kpromo) as kpromo thin manifests, every tag pinned to the digest it has now at its
    /// source. Prints what could not be pinned and what has no equivalent; exits 5 when
    /// something could not be pinned.
    Import(ImportArgs),
    /// Tag discovery: for each entry of image-mirror's `autoupdate.yaml`, the tags its source
    /// offers now (GitHub releases, a registry's tags, the images of the latest chart) that
    /// `config.yaml` does not list yet. Prints them; `--write` adds them to `config.yaml` (and
    /// regenerates `--regsync-yaml`); `--pr` proposes each entry's as a pull request. Never
    /// promotes anything.
    Discover(DiscoverArgs),
    /// Rancher charts: find the images chart archives need and what Prime lacks.
    #[command(subcommand)]
    Charts(ChartsCommand),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum CheckFormat {
    /// A summary, then a row per new digest with each check's result and reason.
    #[default]
    Markdown,
    Json,
    /// JUnit XML: a test suite per new digest, a test case per check.
    Junit,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) inputs: InputArgs,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
    /// What the change is: the base (a revision or a directory) and, for a revision, the head.
    /// Without a base, every entry of the inputs is checked.
    #[command(flatten)]
    pub(crate) diff: DiffArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Markdown)]
    pub(crate) output: CheckFormat,
    /// Write the report to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub(crate) output_file: Option<PathBuf>,
    /// Post the result as a check run on the head commit through GitHub's Checks API
    /// (GITHUB_TOKEN: a token with `checks: write`, or a GitHub App installation token).
    #[arg(long)]
    pub(crate) github_check: bool,
    /// The repository, owner/name (default: GITHUB_REPOSITORY). Also makes the Markdown
    /// report link each file:line.
    #[arg(long, value_name = "OWNER/NAME")]
    pub(crate) github_repository: Option<String>,
    /// The commit the check run belongs to (default: --diff-head-rev, resolved with git).
    #[arg(long, value_name = "SHA")]
    pub(crate) head_sha: Option<String>,
    /// The GitHub API (default: GITHUB_API_URL, or https://api.github.com).
    #[arg(long, value_name = "URL")]
    pub(crate) github_api: Option<String>,
    /// The check run's name on the pull request.
    #[arg(long, value_name = "NAME", default_value = "ferry check")]
    pub(crate) check_name: String,
    /// The revision whose config file (and the keys and trusted roots it names) the check
    /// applies, when the config file lies in the checked repository (default: the base,
    /// --diff-base-rev). A pull request never checks itself with its own policy.
    #[arg(long, value_name = "REV")]
    pub(crate) config_rev: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate the config and the environment it needs: webhook secrets, the signing key, the
    /// manifest source, and every registry it names answering `/v2/` on the right scheme. Each
    /// problem is printed with its fix; exits 3 when one would stop `ferry run`.
    Check {
        /// The Ferry config file (also FERRY_CONFIG).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) inputs: InputArgs,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
    /// Only this image: a full reference (host/path[:tag][@digest]) at staging, prod or a
    /// mirror selects exactly (and, with --config, reads only the repository that feeds it);
    /// any other text selects promotions whose source, a destination or the digest contains it.
    #[arg(long, value_name = "IMAGE")]
    pub(crate) image: Option<String>,
    /// Also list dead letters about these promotions (the pipeline's transport).
    #[command(flatten)]
    pub(crate) transport: TransportArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
    pub(crate) output: StatusFormat,
    /// List complete promotions too (the table shows only their count otherwise).
    #[arg(long)]
    pub(crate) all: bool,
    /// Read every index's children and every referrer list too, instead of trusting the
    /// listed `.sig`/`.att` tags of the digest (many more requests).
    #[arg(long)]
    pub(crate) deep: bool,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub(crate) enum StatusFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct ReconcileArgs {
    #[command(flatten)]
    pub(crate) inputs: InputArgs,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
    /// Where to publish the messages (the pipeline's transport).
    #[command(flatten)]
    pub(crate) transport: TransportArgs,
    /// Only print what would be emitted.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Read every index's children and every referrer list too (see `ferry status --deep`).
    #[arg(long)]
    pub(crate) deep: bool,
}

/// Where the pipeline's queues are.
#[derive(Debug, Args, Clone)]
pub(crate) struct TransportArgs {
    /// `memory://`, `amqp://user:password@host:5672/%2f` or `sqs://` / `sqs://host:port?region=R`
    /// (also FERRY_TRANSPORT).
    #[arg(long, value_name = "URL")]
    pub(crate) transport: Option<String>,
    /// Queue name prefix (also FERRY_QUEUE_PREFIX; default `ferry`).
    #[arg(long, value_name = "PREFIX")]
    pub(crate) queue_prefix: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) transport: TransportArgs,
    /// The Ferry config file (also FERRY_CONFIG).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Where ingest listens (also FERRY_INGEST_LISTEN; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) listen: Option<String>,
    /// Messages each stage handles at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub(crate) concurrency: usize,
    /// On SIGTERM, how long messages in flight may take to finish before they are released to
    /// the queue unacknowledged and the process exits.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub(crate) grace_seconds: u64,
    /// Serve Prometheus metrics on http://ADDRESS/metrics (e.g. 127.0.0.1:9464). Off when
    /// unset.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) metrics_listen: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The stage: planner, verifier, copier, signer, attester, replicator or ingest. `ingest`
    /// serves the webhook endpoints on --listen and consumes the events queue (ECR on AWS).
    #[arg(long, value_name = "STAGE")]
    pub(crate) stage: String,
    #[command(flatten)]
    pub(crate) transport: TransportArgs,
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Where `--stage ingest` listens for webhooks (also FERRY_INGEST_LISTEN; default
    /// 127.0.0.1:8080).
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) listen: Option<String>,
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub(crate) concurrency: usize,
    /// On SIGTERM, how long messages in flight may take to finish before they are released to
    /// the queue unacknowledged and the process exits.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub(crate) grace_seconds: u64,
    /// Serve Prometheus metrics on http://ADDRESS/metrics (e.g. 127.0.0.1:9464). Off when
    /// unset.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) metrics_listen: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueuesCommand {
    /// Create every stage queue and dead-letter queue (idempotent).
    Init {
        #[command(flatten)]
        transport: TransportArgs,
    },
    /// Print the queue topology: names, visibility timeouts, redrive.
    Show {
        #[command(flatten)]
        transport: TransportArgs,
    },
    /// Delete every queue of the prefix, with the messages and dead letters in it. Without
    /// `--confirm` it only lists them.
    Remove {
        #[command(flatten)]
        transport: TransportArgs,
        #[arg(long)]
        confirm: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DeadLetterName {
    Throttled,
    VerificationFailed,
    Poison,
}

#[derive(Debug, Args, Clone)]
pub(crate) struct DlqArgs {
    /// The dead-letter queue.
    #[arg(long, value_enum)]
    pub(crate) queue: DeadLetterName,
    /// Only records from this stage (planner, verifier, copier, signer, attester, replicator).
    #[arg(long, value_name = "STAGE")]
    pub(crate) stage: Option<String>,
    /// Only the record of this message id (or any unique start of one).
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// At most this many records.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) limit: usize,
    #[command(flatten)]
    pub(crate) transport: TransportArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// One line per record: stage, class, attempts, time, error.
    List(DlqArgs),
    /// Every record in full, as JSON.
    Show(DlqArgs),
    /// Put the original messages back on their stage queues with attempts reset.
    Replay(DlqArgs),
    /// Delete records for good.
    Purge(Box<PurgeArgs>),
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    #[command(flatten)]
    pub(crate) dlq: DlqArgs,
    /// Only records about promotions the registries show complete (what `ferry status` calls
    /// stale), read from the desired state (--config, or manifest inputs) as `status` reads it.
    #[arg(long)]
    pub(crate) resolved: bool,
    #[command(flatten)]
    pub(crate) inputs: InputArgs,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Write a cosign-compatible key pair: PREFIX.key (encrypted with COSIGN_PASSWORD) and PREFIX.pub.
    Generate {
        #[arg(long, value_name = "PREFIX", default_value = "cosign")]
        output_prefix: PathBuf,
    },
}

/// Which key signs: a cosign key file or an AWS KMS key (overrides the config's `signing`).
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct KeyArgs {
    /// A cosign encrypted private key; its password comes from COSIGN_PASSWORD.
    #[arg(long, value_name = "FILE", conflicts_with = "kms_key_id")]
    pub(crate) key: Option<PathBuf>,
    /// An AWS KMS key (ECC_NIST_P256), by id, ARN or alias.
    #[arg(long, value_name = "ID")]
    pub(crate) kms_key_id: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The image: host/path@sha256:... or host/path:tag.
    #[arg(value_name = "REF")]
    pub(crate) reference: ferry_model::ImageRef,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
    #[arg(long, value_enum, default_value_t = PromoteFormat::Table)]
    pub(crate) output: PromoteFormat,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyBundleArgs {
    /// The bundle (`.sigstore.json`: v0.1 to v0.3, a message signature or a DSSE envelope).
    #[arg(long, value_name = "FILE")]
    pub(crate) bundle: std::path::PathBuf,
    /// The signer's certificate identity (SAN), matched exactly.
    #[arg(long, value_name = "IDENTITY", requires = "certificate_oidc_issuer", conflicts_with = "key")]
    pub(crate) certificate_identity: Option<String>,
    /// The OIDC issuer of the signer's certificate, matched exactly.
    #[arg(long, value_name = "URL", requires = "certificate_identity")]
    pub(crate) certificate_oidc_issuer: Option<String>,
    /// A managed key (PEM) instead of a certificate identity.
    #[arg(long, value_name = "FILE", required_unless_present = "certificate_identity")]
    pub(crate) key: Option<std::path::PathBuf>,
    /// The trusted root (`trusted_root.json`); without it, Sigstore's public-good root as this
    /// build embeds it.
    #[arg(long, value_name = "FILE")]
    pub(crate) trusted_root: Option<std::path::PathBuf>,
    /// Sigstore's staging root instead of the public-good one (without --trusted-root).
    #[arg(long)]
    pub(crate) staging: bool,
    /// The signed artifact: a file, or `sha256:<hex>` for its digest.
    #[arg(value_name = "FILE_OR_DIGEST")]
    pub(crate) artifact: String,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The image to sign, by digest or tag, in the repository that will carry the signature.
    #[arg(value_name = "REF")]
    pub(crate) reference: ferry_model::ImageRef,
    #[command(flatten)]
    pub(crate) key: KeyArgs,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AttestArgs {
    /// The promoted image, by digest or tag, at its primary destination.
    #[arg(value_name = "REF")]
    pub(crate) reference: ferry_model::ImageRef,
    /// The repository it was promoted from.
    #[arg(long, value_name = "REPOSITORY")]
    pub(crate) source: ferry_model::Repository,
    #[command(flatten)]
    pub(crate) key: KeyArgs,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ReplicateArgs {
    #[command(flatten)]
    pub(crate) inputs: InputArgs,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
    /// Write to the mirrors. Without it, only report what would be copied.
    #[arg(long)]
    pub(crate) confirm: bool,
}

/// Where desired state comes from. Several inputs may be combined.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct InputArgs {
    /// A kpromo plain promoter manifest.
    #[arg(long = "manifest", value_name = "FILE")]
    pub(crate) manifests: Vec<PathBuf>,
    /// A kpromo thin-manifest directory (manifests/<sub>/promoter-manifest.yaml + images/<sub>/images.yaml).
    #[arg(long = "thin-manifest-dir", value_name = "DIR")]
    pub(crate) thin_manifest_dirs: Vec<PathBuf>,
    /// A Rancher image-mirror images-list (`<source> <destination> <tag>` lines).
    #[arg(long = "images-list", value_name = "FILE")]
    pub(crate) images_lists: Vec<PathBuf>,
    /// Put images-list destinations under this registry (host[/prefix]) instead of Docker Hub.
    #[arg(long = "images-list-target", value_name = "REGISTRY")]
    pub(crate) images_list_target: Option<RegistryPath>,
    /// A Rancher charts sync config (names staging, Docker Hub, Prime and the two sync files).
    #[arg(long = "charts-sync", value_name = "CONFIG")]
    pub(crate) charts_sync: Vec<PathBuf>,
    /// Rancher image-mirror's `config.yaml` (Artifacts and Repositories; images-list's
    /// replacement). Its `{{ env "NAME" }}` credentials are used for those registries.
    #[arg(long = "rancher-config", value_name = "FILE")]
    pub(crate) rancher_configs: Vec<PathBuf>,
    /// regclient's `regsync.yaml`: `type: image` and `type: repository` sync entries (tags
    /// allow/deny/semverRange), `creds` with `{{env "NAME"}}` templates.
    #[arg(long = "regsync", value_name = "FILE")]
    pub(crate) regsyncs: Vec<PathBuf>,
}

/// How to reach registries.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct RegistryArgs {
    /// The Ferry config file (also FERRY_CONFIG).
    #[arg(long = "config", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Allow plain HTTP to this registry host (repeatable), like Docker's --insecure-registry.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub(crate) insecure_registries: Vec<Host>,
    /// Refuse -rc/-alpha/-beta tags for destinations under this registry (repeatable).
    #[arg(long = "deny-prerelease", value_name = "REGISTRY")]
    pub(crate) deny_prerelease: Vec<RegistryPath>,
    /// Registry lookups in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub(crate) concurrency: usize,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub(crate) enum PlanFormat {
    #[default]
    Table,
    Json,
    Yaml,
}

/// Diff-only planning.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct DiffArgs {
    /// Plan only what changed since this copy of the inputs (a directory or file standing in
    /// for the single input given).
    #[arg(long = "diff-base-dir", value_name = "PATH", conflicts_with = "diff_base_rev")]
    pub(crate) diff_base_dir: Option<PathBuf>,
    /// Plan only what changed since this git revision of the inputs' repository.
    #[arg(long = "diff-base-rev", value_name = "REV")]
    pub(crate) diff_base_rev: Option<String>,
    /// With --diff-base-rev: compare against this revision instead of the working tree.
    #[arg(long = "diff-head-rev", value_name = "REV", requires = "diff_base_rev")]
    pub(crate) diff_head_rev: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    pub(crate) inputs: InputArgs,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
    #[command(flatten)]
    pub(crate) diff: DiffArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
    pub(crate) output: PlanFormat,
    /// Only parse and check the inputs; contact no registry. With `--output json|yaml`, lists
    /// every edge the inputs ask for, and every invalid entry.
    #[arg(long)]
    pub(crate) parse_only: bool,
    /// Lint mode: every warning and every invalid entry is an error (exit 3), each named by
    /// file:line and field. What a manifest repository's CI runs.
    #[arg(long)]
    pub(crate) strict: bool,
    /// List edges that are already present too (the table shows only their count otherwise).
    #[arg(long)]
    pub(crate) show_present: bool,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub(crate) enum PromoteFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct DiscoverArgs {
    /// image-mirror's `autoupdate.yaml` (GithubRelease, Registry and HelmLatest entries).
    #[arg(long, value_name = "FILE")]
    pub(crate) autoupdate: PathBuf,
    /// image-mirror's `config.yaml`: what is listed already, and what `--write`/`--pr` edit.
    /// Paths are committed as given (run from the repository root for `--pr`).
    #[arg(long = "rancher-config", value_name = "FILE")]
    pub(crate) rancher_config: PathBuf,
    /// The `regsync.yaml` generated from `config.yaml`: rewritten (as image-mirror's generator
    /// writes it) wherever `config.yaml` is edited.
    #[arg(long = "regsync-yaml", value_name = "FILE")]
    pub(crate) regsync_yaml: Option<PathBuf>,
    /// Only these entries (by `Name`; repeatable).
    #[arg(long = "entry", value_name = "NAME")]
    pub(crate) entries: Vec<String>,
    /// Add the new tags to the files in place.
    #[arg(long, conflicts_with = "pr")]
    pub(crate) write: bool,
    /// Open one pull request per entry with new tags (GITHUB_TOKEN; a branch
    /// `autoupdate/<entry>/<hash>`, never twice for the same finding).
    #[arg(long)]
    pub(crate) pr: bool,
    /// The repository the pull requests go to (default: GITHUB_REPOSITORY).
    #[arg(long, value_name = "OWNER/NAME")]
    pub(crate) github_repository: Option<String>,
    /// The branch the pull requests go into.
    #[arg(long, value_name = "BRANCH", default_value = "main")]
    pub(crate) base: String,
    /// GitHub's API (default: GITHUB_API_URL, else https://api.github.com), for releases and
    /// pull requests.
    #[arg(long, value_name = "URL")]
    pub(crate) github_api: Option<String>,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ChartsCommand {
    /// Read every chart archive (`*.tgz`) under ASSETS_DIR, collect the images their values
    /// files name, ask Prime, staging and Docker Hub which tags they hold, and write the
    /// charts sync config's `staging-to-prime` and `docker-to-prime` files with only what
    /// Prime lacks (staging first). Prereleases and `sha256-*` tags are dropped, with the
    /// reason. Exits 5 when a wanted tag is nowhere or something was left out.
    Scan(ChartsScanArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ChartsScanArgs {
    /// The directory of chart archives (charts-build-scripts' `assets/`).
    #[arg(value_name = "ASSETS_DIR")]
    pub(crate) assets_dir: PathBuf,
    /// The charts sync config naming staging, Docker Hub, Prime and the two sync files (see
    /// `--charts-sync` of `plan`).
    #[arg(long = "charts-sync", value_name = "CONFIG")]
    pub(crate) charts_sync: PathBuf,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
    /// Also plan the written files and print the plan.
    #[arg(long)]
    pub(crate) plan: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    pub(crate) inputs: InputArgs,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
    /// Where to write the thin-manifest tree (`manifests/<sub>/promoter-manifest.yaml`,
    /// `images/<sub>/images.yaml`). It must not exist yet, or be empty: nothing is overwritten.
    #[arg(long, value_name = "DIR")]
    pub(crate) output_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressMode {
    /// A live line on a terminal, periodic plain lines otherwise.
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    #[command(flatten)]
    pub(crate) inputs: InputArgs,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
    #[command(flatten)]
    pub(crate) diff: DiffArgs,
    /// Write to the destination registries. Without it, promote only plans (a dry run).
    #[arg(long)]
    pub(crate) confirm: bool,
    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t = PromoteFormat::Table)]
    pub(crate) output: PromoteFormat,
    /// Images (manifests at one destination) copied at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub(crate) max_images: usize,
    /// Blobs of one image transferred at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub(crate) max_blobs: usize,
    /// Progress display on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub(crate) progress: ProgressMode,
    #[command(flatten)]
    pub(crate) key: KeyArgs,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub(crate) enum SnapshotFormat {
    #[default]
    Yaml,
    /// kpromo's snapshot CSV: no header, `name@digest,name:tag`, a tagless row ends in `,-`.
    Csv,
    /// `name,digest,tag` with a header line; a tagless digest has an empty tag.
    CsvHeader,
}

#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    /// The registry and optional path prefix, e.g. gcr.io/k8s-staging-kops.
    #[arg(value_name = "REGISTRY/PREFIX")]
    pub(crate) registry: RegistryPath,
    #[command(flatten)]
    pub(crate) registries: RegistryArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SnapshotFormat::Yaml)]
    pub(crate) output: SnapshotFormat,
    /// Leave out tagless images that an index references.
    #[arg(long)]
    pub(crate) minimal: bool,
}
