//! `ferry import`: any input, planned now, written as digest-pinned kpromo thin manifests.
//!
//! A migration is a reviewed pull request of digests: the tree this writes is what the input
//! asks for today, every tag pinned to the digest it has at its source. What cannot be pinned
//! (a tag missing at every source) is listed and left out; options with no equivalent were
//! reported by the parsers as warnings ("ignored: ...") and are printed first.

use std::io::Write as _;
use std::path::Path;

use ferry_config::Env;
use ferry_manifests::import::{Pinned, thin_manifests};

use super::plan::{desired, inputs, make_plan};
use crate::args::ImportArgs;
use crate::error::{CliError, ExitStatus};

pub(crate) async fn run(args: ImportArgs, env: &Env) -> Result<ExitStatus, CliError> {
    refuse_to_overwrite(&args.output_dir)?;
    let config = super::config(&args.registries, env)?;
    let inputs = inputs(&args.inputs)?;
    if inputs.is_empty() {
        return Err(CliError::Usage("name at least one input to import (see `ferry import --help`)".into()));
    }
    let registry = super::registry_for(&config, env, &inputs)?;
    let desired = desired(&Default::default(), &inputs, &config.policy, &registry).await?;
    let plan = make_plan(&registry, &desired, &args.registries).await;

    let mut pinned = Vec::new();
    let mut unpinned = Vec::new();
    for edge in &plan.edges {
        match edge.digest {
            Some(digest) => pinned.push(Pinned {
                source: edge.source.clone(),
                trusted: edge.source_trusted,
                digest,
                destination: edge.destination.clone(),
                primary: edge.primary,
                tag: edge.tag.clone(),
                entry: edge.origin.to_string(),
            }),
            None => unpinned.push(edge),
        }
    }
    let names: Vec<String> = inputs.iter().map(|i| i.path().display().to_string()).collect();
    let header = format!(
        "Written by `ferry import` from {}.\nEvery tag is pinned to the digest it had at its source when imported; review before merging.",
        names.join(", ")
    );
    let tree = thin_manifests(&pinned, &header);
    write_tree(&args.output_dir, &tree.subprojects)?;

    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "imported {} edges into {} subprojects under {}",
        pinned.len(),
        tree.subprojects.len(),
        args.output_dir.display()
    );
    if tree.renamed > 0 {
        let _ = writeln!(
            out,
            "{} images are renamed between source and destination: written with Ferry's `source-name`, which kpromo itself does not read",
            tree.renamed
        );
    }
    if tree.untrusted > 0 {
        let _ = writeln!(
            out,
            "{} subprojects have an untrusted source: written `trusted: false` (Ferry's extension), so their signatures are never carried",
            tree.untrusted
        );
    }
    if tree.folded_tagless > 0 {
        let _ = writeln!(
            out,
            "{} tagless edges folded into the same digest's tags (its tags promote it)",
            tree.folded_tagless
        );
    }
    let dropped = desired.notices.iter().filter(|n| n.message.starts_with("ignored")).count();
    if dropped > 0 {
        let _ = writeln!(out, "{dropped} options have no equivalent and were dropped (warnings above)");
    }
    if !unpinned.is_empty() {
        let _ = writeln!(out, "could not pin {} edges (left out):", unpinned.len());
        for edge in &unpinned {
            let source_tag =
                edge.source_tag.as_ref().or(edge.tag.as_ref()).map(|t| format!(":{t}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}{source_tag} -> {}: {} ({})",
                edge.source, edge.destination, edge.action, edge.origin
            );
        }
        return Ok(ExitStatus::ExcludedEdges);
    }
    Ok(ExitStatus::Ok)
}

fn refuse_to_overwrite(dir: &Path) -> Result<(), CliError> {
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        return Err(CliError::Usage(format!(
            "{} is not empty; ferry import writes a new tree and overwrites nothing",
            dir.display()
        )));
    }
    Ok(())
}

fn write_tree(dir: &Path, subprojects: &[ferry_manifests::import::Subproject]) -> Result<(), CliError> {
    let io = |path: &Path, e: std::io::Error| CliError::Usage(format!("{}: {e}", path.display()));
    for sub in subprojects {
        for (kind, file, text) in
            [("manifests", "promoter-manifest.yaml", &sub.manifest), ("images", "images.yaml", &sub.images)]
        {
            let parent = dir.join(kind).join(&sub.name);
            std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
            let path = parent.join(file);
            std::fs::write(&path, text).map_err(|e| io(&path, e))?;
        }
    }
    Ok(())
}
