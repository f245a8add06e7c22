//! `ferry keys generate`, `verify`, `sign`, `attest`, `replicate-signatures`.

use std::path::Path;

use ferry_config::{Config, Env, SigningConfig};
use ferry_copy::{Copier, CopyOptions};
use ferry_model::{Digest, ImageRef, TagOrDigest};
use ferry_promotion::steps::replicate_artifacts;
use ferry_registry::Classify as _;
use ferry_registry::{OciRegistry, Registry};
use ferry_trust::attest::{PromotedTo, Promotion, attest, now_rfc3339};
use ferry_trust::keys::{SigningKey, generate_key_pair};
use ferry_trust::sign::sign;
use ferry_trust::verify;

use super::plan::{inputs, make_plan};
use crate::args::{AttestArgs, KeyArgs, KeysCommand, ReplicateArgs, SignArgs, VerifyArgs};
use crate::error::{CliError, ExitStatus};
use crate::output;

pub(crate) async fn keys(command: KeysCommand, env: &Env) -> Result<ExitStatus, CliError> {
    let KeysCommand::Generate { output_prefix } = command;
    let password = env.cosign_password.as_ref().ok_or_else(|| {
        CliError::Usage("set COSIGN_PASSWORD to the password that will protect the private key".into())
    })?;
    let private_path = output_prefix.with_extension("key");
    let public_path = output_prefix.with_extension("pub");
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(CliError::Usage(format!("{} exists; refusing to overwrite a key", path.display())));
        }
    }
    let (private, public) = generate_key_pair(password.expose().as_bytes())?;
    write_private(&private_path, &private)?;
    std::fs::write(&public_path, public)
        .map_err(|e| CliError::Output(format!("{}: {e}", public_path.display())))?;
    output::print(&format!(
        "wrote {} (private, encrypted) and {}\n",
        private_path.display(),
        public_path.display()
    ));
    Ok(ExitStatus::Ok)
}

fn write_private(path: &Path, pem: &str) -> Result<(), CliError> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).map_err(|e| CliError::Output(format!("{}: {e}", path.display())))?;
    file.write_all(pem.as_bytes()).map_err(|e| CliError::Output(format!("{}: {e}", path.display())))
}

/// The digest `reference` names, resolving a tag.
async fn digest_of(registry: &OciRegistry, reference: &ImageRef) -> Result<Digest, CliError> {
    if let Some(digest) = reference.digest {
        return Ok(digest);
    }
    let tag = reference
        .tag
        .clone()
        .ok_or_else(|| CliError::Usage(format!("{reference}: give a tag or a digest")))?;
    registry
        .head_manifest(&reference.repository, &TagOrDigest::Tag(tag))
        .await?
        .map(|h| h.digest)
        .ok_or_else(|| CliError::Usage(format!("{reference} does not exist")))
}

pub(crate) async fn verify(args: VerifyArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let config = super::config(&args.registries, env)?;
    let registry = super::registry(&config, env)?;
    let digest = digest_of(&registry, &args.reference).await?;
    let request = verify::Request {
        source: args.reference.repository.clone(),
        digest,
        source_tag: args.reference.tag.clone(),
        destination_problems: Vec::new(),
    };
    let policy = config.trust.for_source(&request.source);
    let facts = verify::gather(&registry, &request, policy).await;
    let report = verify::decide(&request, &facts, policy);
    let found = verify::inventory(&request, &facts, policy);
    output::print(&output::render_report(&report, &found, args.output)?);
    Ok(if report.passed() { ExitStatus::Ok } else { ExitStatus::VerificationFailed })
}

/// The key `args` (or the config) names; an error if there is none.
pub(crate) async fn required_key(args: &KeyArgs, config: &Config, env: &Env) -> Result<SigningKey, CliError> {
    optional_key(args, config, env).await?.ok_or_else(|| {
        CliError::Usage("no signing key: give --key or --kms-key-id, or `signing` in the config".into())
    })
}

pub(crate) async fn optional_key(
    args: &KeyArgs,
    config: &Config,
    env: &Env,
) -> Result<Option<SigningKey>, CliError> {
    let flag = match (&args.key, &args.kms_key_id) {
        (Some(path), _) => Some(SigningConfig::KeyFile(path.clone())),
        (None, Some(id)) => Some(SigningConfig::Kms(id.clone())),
        (None, None) => None,
    };
    Ok(ferry_trust::keys::load(flag.as_ref().or(config.signing.as_ref()), env.cosign_password.as_ref())
        .await?)
}

pub(crate) async fn sign_command(args: SignArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let config = super::config(&args.registries, env)?;
    let registry = super::registry(&config, env)?;
    let key = required_key(&args.key, &config, env).await?;
    let digest = digest_of(&registry, &args.reference).await?;
    let signed = sign(&registry, &key, config.signing_formats, &args.reference.repository, digest).await?;
    let mut text = String::new();
    for d in &signed.signed {
        text.push_str(&format!("signed {}@{d}\n", args.reference.repository));
    }
    for d in &signed.already {
        text.push_str(&format!("already signed by this key: {}@{d}\n", args.reference.repository));
    }
    output::print(&text);
    Ok(ExitStatus::Ok)
}

pub(crate) async fn attest_command(args: AttestArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let config = super::config(&args.registries, env)?;
    let registry = super::registry(&config, env)?;
    let key = required_key(&args.key, &config, env).await?;
    let digest = digest_of(&registry, &args.reference).await?;
    let promotion = Promotion {
        source: args.source.clone(),
        digest,
        destinations: vec![PromotedTo {
            repository: args.reference.repository.clone(),
            tags: args.reference.tag.iter().cloned().collect(),
        }],
        origin: None,
        trigger_event_id: None,
        verification: None,
        timestamp: now_rfc3339(),
    };
    let appended = attest(&registry, &key, config.signing_formats, &promotion, None).await?;
    output::print(&format!(
        "{}: {}@{digest}\n",
        match appended {
            ferry_trust::artifacts::Appended::Written => "attested",
            ferry_trust::artifacts::Appended::Unchanged => "already attested",
        },
        args.reference.repository
    ));
    Ok(ExitStatus::Ok)
}

pub(crate) async fn replicate_command(args: ReplicateArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let config = super::config(&args.registries, env)?;
    let inputs = inputs(&args.inputs)?;
    let registry = super::registry_for(&config, env, &inputs)?;
    let desired = super::plan::desired(&Default::default(), &inputs, &config.policy, &registry).await?;
    let plan = make_plan(&registry, &desired, &args.registries).await;
    let copier = Copier::new(registry, CopyOptions::default());
    // Every (digest, primary) with its mirrors, from every edge of the manifests.
    let mut pairs: Vec<(Digest, ferry_model::Repository, ferry_model::Repository)> = Vec::new();
    for edge in plan.edges.iter().filter(|e| !e.primary) {
        let Some(digest) = edge.digest else { continue };
        let primary =
            plan.edges.iter().find(|p| p.primary && p.digest == edge.digest && p.source == edge.source);
        if let Some(primary) = primary
            && !pairs
                .iter()
                .any(|(d, p, m)| *d == digest && *p == primary.destination && *m == edge.destination)
        {
            pairs.push((digest, primary.destination.clone(), edge.destination.clone()));
        }
    }
    let mut rows = Vec::new();
    let mut failed = false;
    for (digest, primary, mirror) in pairs {
        match replicate_artifacts(&copier, &primary, &mirror, digest, !args.confirm).await {
            Ok(done) => {
                let child = |target: Digest| {
                    if target == digest { String::new() } else { format!(" (child {target})") }
                };
                rows.extend(done.tags.into_iter().map(|(target, kind, r)| {
                    format!("{mirror}@{digest}{} .{}: {r:?}", child(target), kind.suffix())
                }));
                rows.extend(done.referrers.into_iter().map(|(target, referrer, r)| {
                    format!("{mirror}@{digest}{} referrer {referrer}: {r:?}", child(target))
                }));
            }
            Err(e) => {
                failed = true;
                rows.push(format!("{mirror}@{digest}: failed: {} ({})", e, e.class()));
            }
        }
    }
    rows.sort();
    let mut text = rows.join("\n");
    text.push('\n');
    output::print(&text);
    if !args.confirm {
        output::note("dry run: nothing was written; pass --confirm to replicate");
    }
    Ok(if failed { ExitStatus::PromotionFailed } else { ExitStatus::Ok })
}

/// `ferry verify-bundle`: one Sigstore bundle about a file or a digest, verified offline with
/// the same verifier and identity policy as the verifier stage. Exit 0 when it verifies, 7
/// (verification failed) with the reason when it does not.
pub(crate) fn verify_bundle(args: &crate::args::VerifyBundleArgs) -> Result<ExitStatus, CliError> {
    use ferry_trust::keyless::{KeylessPolicy, Matcher, TrustedRoot};
    let bundle = std::fs::read(&args.bundle)
        .map_err(|e| CliError::Usage(format!("--bundle {}: {e}", args.bundle.display())))?;
    let digest = match args.artifact.strip_prefix("sha256:") {
        Some(_) => ferry_model::Digest::parse(&args.artifact)
            .map_err(|e| CliError::Usage(format!("{}: {e}", args.artifact)))?,
        None => ferry_model::Digest::of(
            &std::fs::read(&args.artifact).map_err(|e| CliError::Usage(format!("{}: {e}", args.artifact)))?,
        ),
    };
    let root = match (&args.trusted_root, args.staging) {
        (Some(path), _) => TrustedRoot::load(path),
        (None, false) => TrustedRoot::production(),
        (None, true) => TrustedRoot::staging(),
    }
    .map_err(CliError::Usage)?;
    let verified = match (&args.key, &args.certificate_identity, &args.certificate_oidc_issuer) {
        (Some(key), _, _) => {
            let pem = std::fs::read_to_string(key)
                .map_err(|e| CliError::Usage(format!("--key {}: {e}", key.display())))?;
            root.verify_with_key(&bundle, &digest, &pem)
                .map(|()| format!("verified with the key {}", key.display()))
        }
        (None, Some(identity), Some(issuer)) => KeylessPolicy {
            root,
            identity: Matcher::Exact(identity.clone()),
            issuer: Matcher::Exact(issuer.clone()),
        }
        .verify_artifact_bundle(&bundle, &digest)
        .map(|signer| format!("verified: {signer}")),
        _ => {
            return Err(CliError::Usage(
                "give --certificate-identity and --certificate-oidc-issuer, or --key".into(),
            ));
        }
    };
    match verified {
        Ok(line) => {
            output::print(&format!("{digest}: {}\n", ferry_model::escaped(&line)));
            Ok(ExitStatus::Ok)
        }
        Err(reason) => {
            output::note(&format!("{digest}: verification failed: {}", ferry_model::escaped(&reason)));
            Ok(ExitStatus::VerificationFailed)
        }
    }
}
