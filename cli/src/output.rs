//! What the commands print. Serialisation of reports lives here, at the edge; the library
//! types carry no serde.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use std::time::Duration;

use ferry_copy::stats::StatsSnapshot;
use ferry_copy::{Done, EdgeOutcome};
use ferry_manifests::Input;
use ferry_manifests::kpromo::ImageDmap;
use ferry_model::{DesiredState, NoticeKind};
use ferry_plan::{Action, Plan, PlannedEdge};
use ferry_promotion::chain::{ChainReport, DigestOutcome};
use ferry_registry::Classify as _;
use ferry_trust::verify::Report;
use serde::Serialize;

use crate::args::{PlanFormat, PromoteFormat};
use crate::error::CliError;

/// Writes `text` to stdout. Everything Ferry prints passes through [`ferry_model::shown`]: a
/// control character that outside text (a tag, a registry's answer, a values file) carried into
/// a line is shown escaped, never sent to the terminal.
pub(crate) fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`ferry plan | head`) is not an error worth reporting.
    let _ = stdout.write_all(ferry_model::shown::escaped_lines(text).as_bytes());
    let _ = stdout.flush();
}

/// One line on stderr, escaped as [`print`] escapes.
pub(crate) fn stderr_line(text: &str) {
    let _ = writeln!(std::io::stderr(), "{}", ferry_model::shown::escaped_lines(text));
}

/// Every notice on stderr, one line each: tolerated input is reported, never silent.
pub(crate) fn warn_notices(desired: &DesiredState) {
    for notice in &desired.notices {
        let what = match notice.kind {
            NoticeKind::Warning => "warning",
            NoticeKind::Invalid => "invalid entry, left out",
        };
        stderr_line(&format!("ferry: {what}: {notice}"));
    }
}

/// `plan --parse-only`: a summary (table), or every edge the inputs ask for and every invalid
/// entry (JSON, YAML), without contacting a registry.
pub(crate) fn parse_only(
    inputs: &[Input],
    desired: &DesiredState,
    format: PlanFormat,
) -> Result<String, CliError> {
    let invalid = desired.invalid().count();
    if let PlanFormat::Table = format {
        return Ok(format!(
            "parsed {} input(s): {} entries, {} edges, {invalid} invalid entr{} left out\n",
            inputs.len(),
            desired.entries.len(),
            desired.n_edges(),
            if invalid == 1 { "y" } else { "ies" }
        ));
    }
    #[derive(Serialize)]
    struct OfflineEdge {
        action: &'static str,
        source: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        source_tag: Option<String>,
        destination: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
        primary: bool,
        origin: String,
    }
    #[derive(Serialize)]
    struct Offline {
        entries: usize,
        edges: Vec<OfflineEdge>,
        invalid: Vec<InvalidReport>,
        warnings: Vec<String>,
    }
    let mut edges = Vec::with_capacity(desired.n_edges());
    for entry in &desired.entries {
        let (digest, source_tag) = match &entry.pin {
            ferry_model::TagOrDigest::Digest(d) => (Some(d.to_string()), None),
            ferry_model::TagOrDigest::Tag(t) => (None, Some(t.to_string())),
        };
        let tags: Vec<Option<String>> = if entry.tags.is_empty() {
            vec![None]
        } else {
            entry.tags.iter().map(|t| Some(t.to_string())).collect()
        };
        for (i, destination) in entry.destinations.iter().enumerate() {
            for tag in &tags {
                edges.push(OfflineEdge {
                    action: "desired",
                    source: entry
                        .sources
                        .iter()
                        .map(|s| s.repository.to_string())
                        .collect::<Vec<_>>()
                        .join(" | "),
                    digest: digest.clone(),
                    source_tag: source_tag.clone(),
                    destination: destination.repository.to_string(),
                    tag: tag.clone(),
                    primary: i == 0,
                    origin: entry.origin.to_string(),
                });
            }
        }
    }
    let report = Offline {
        entries: desired.entries.len(),
        edges,
        invalid: desired.invalid().map(invalid_report).collect(),
        warnings: desired
            .notices
            .iter()
            .filter(|n| n.kind == NoticeKind::Warning)
            .map(ToString::to_string)
            .collect(),
    };
    serialise(&report, format)
}

#[derive(Serialize)]
struct InvalidReport {
    action: &'static str,
    origin: String,
    field: String,
    reason: String,
}

fn invalid_report(notice: &ferry_model::Notice) -> InvalidReport {
    InvalidReport {
        action: "invalid",
        origin: notice.origin.to_string(),
        field: notice.field.to_string(),
        reason: notice.message.clone(),
    }
}

fn serialise<T: Serialize>(report: &T, format: PlanFormat) -> Result<String, CliError> {
    match format {
        PlanFormat::Json => serde_json::to_string_pretty(report)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Output(format!("cannot write JSON: {e}"))),
        _ => serde_saphyr::to_string(report).map_err(|e| CliError::Output(format!("cannot write YAML: {e}"))),
    }
}

#[derive(Serialize)]
struct PlanReport<'a> {
    summary: BTreeMap<&'static str, usize>,
    excluded: usize,
    /// The registry requests the plan made, by host and kind.
    requests: Vec<RequestCount>,
    edges: Vec<EdgeReport<'a>>,
    invalid: Vec<InvalidReport>,
}

#[derive(Serialize)]
struct EdgeReport<'a> {
    action: &'static str,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_tag: Option<&'a str>,
    /// Whether the source's signatures and attestations are carried with the image.
    source_trusted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    destination: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    primary: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    origin: String,
}

fn edge_report(edge: &PlannedEdge) -> EdgeReport<'_> {
    EdgeReport {
        action: edge.action.name(),
        source: edge.source.to_string(),
        source_tag: edge.source_tag.as_ref().map(|t| t.as_str()),
        source_trusted: edge.source_trusted,
        digest: edge.digest.map(|d| d.to_string()),
        destination: edge.destination.to_string(),
        tag: edge.tag.as_ref().map(|t| t.as_str()),
        primary: edge.primary,
        reason: edge.action.is_excluded().then(|| edge.action.to_string()),
        origin: edge.origin.to_string(),
    }
}

/// Requests of one kind to one host.
#[derive(Serialize)]
pub(crate) struct RequestCount {
    pub host: String,
    pub kind: &'static str,
    pub count: u32,
}

/// The requests a registry client made, by host and kind.
pub(crate) fn request_counts(registry: &ferry_registry::OciRegistry) -> Vec<RequestCount> {
    registry
        .transport()
        .requests_by_kind()
        .into_iter()
        .map(|(host, kind, count)| RequestCount { host: host.to_string(), kind, count })
        .collect()
}

/// `requests: 12 (127.0.0.1:5000: manifest HEAD 10, tags/list 2; …)`.
pub(crate) fn cost_line(counts: &[RequestCount]) -> String {
    let total: u32 = counts.iter().filter(|c| c.kind != "token").map(|c| c.count).sum();
    let mut hosts: Vec<String> = Vec::new();
    let mut current: Option<&str> = None;
    let mut parts = Vec::new();
    for count in counts {
        if current != Some(count.host.as_str()) {
            if let Some(host) = current {
                hosts.push(format!("{host}: {}", parts.join(", ")));
                parts.clear();
            }
            current = Some(count.host.as_str());
        }
        parts.push(format!("{} {}", count.kind, count.count));
    }
    if let Some(host) = current {
        hosts.push(format!("{host}: {}", parts.join(", ")));
    }
    if hosts.is_empty() {
        return "requests: 0".into();
    }
    format!("requests: {total} ({})", hosts.join("; "))
}

pub(crate) fn render_plan(
    plan: &Plan,
    format: PlanFormat,
    show_present: bool,
    requests: Vec<RequestCount>,
) -> Result<String, CliError> {
    match format {
        PlanFormat::Table => Ok(plan_table(plan, show_present) + &cost_line(&requests) + "\n"),
        PlanFormat::Json | PlanFormat::Yaml => {
            let mut summary: BTreeMap<&'static str, usize> = plan.counts().into_iter().collect();
            summary.insert("invalid", plan.invalid.len());
            let report = PlanReport {
                summary,
                excluded: plan.n_excluded(),
                requests,
                edges: plan.edges.iter().map(edge_report).collect(),
                invalid: plan.invalid.iter().map(invalid_report).collect(),
            };
            serialise(&report, format)
        }
    }
}

/// The human view: edges grouped by action, problems with their reasons, then totals.
fn plan_table(plan: &Plan, show_present: bool) -> String {
    let mut out = String::new();
    for name in Action::NAMES {
        let edges: Vec<&PlannedEdge> = plan.edges.iter().filter(|e| e.action.name() == name).collect();
        if edges.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{name} ({})", edges.len());
        if name == "present" && !show_present {
            let _ = writeln!(out, "  (listed with --show-present)");
            continue;
        }
        for edge in edges {
            let _ = write!(out, "  {edge}");
            if edge.action.is_excluded() {
                let _ = write!(out, "\n      {}", edge.action);
            }
            let _ = writeln!(out, "\n      from {}", edge.origin);
        }
    }
    if !plan.invalid.is_empty() {
        let _ = writeln!(out, "invalid ({})", plan.invalid.len());
        for notice in &plan.invalid {
            let _ = writeln!(
                out,
                "  {}:{}  field `{}`\n      {}",
                notice.origin.source, notice.origin.line, notice.field, notice.message
            );
        }
    }
    let _ = writeln!(out, "\n{:<16} {:>8}", "action", "edges");
    for (name, count) in plan.counts() {
        if count > 0 {
            let _ = writeln!(out, "{name:<16} {count:>8}");
        }
    }
    if !plan.invalid.is_empty() {
        let _ = writeln!(out, "{:<16} {:>8}", "invalid", plan.invalid.len());
    }
    let _ = writeln!(out, "{:<16} {:>8}", "total", plan.edges.len());
    if plan.n_excluded() > 0 {
        let _ = writeln!(
            out,
            "{} edge(s) excluded; they were reported above and block nothing else",
            plan.n_excluded()
        );
    }
    out
}

/// kpromo's snapshot CSV (`kpromo snapshot --output csv`), so that scripts built on it keep
/// working: no header, one row per tag, `name@digest,name:tag`; a tagless digest's row ends in
/// `,-`.
pub(crate) fn snapshot_csv_kpromo(images: &[ImageDmap]) -> String {
    let mut rows: Vec<String> = Vec::new();
    for image in images {
        for d in &image.digests {
            let left = format!("{}@{}", image.name, d.digest);
            if d.tags.is_empty() {
                rows.push(format!("{left},-"));
            }
            for tag in &d.tags {
                rows.push(format!("{left},{}:{tag}", image.name));
            }
        }
    }
    rows.sort();
    rows.into_iter().map(|r| r + "\n").collect()
}

/// `name,digest,tag` rows; a tagless digest has an empty tag.
pub(crate) fn snapshot_csv(images: &[ImageDmap]) -> String {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for image in images {
        for d in &image.digests {
            if d.tags.is_empty() {
                rows.push((image.name.to_string(), d.digest.to_string(), String::new()));
            }
            for tag in &d.tags {
                rows.push((image.name.to_string(), d.digest.to_string(), tag.to_string()));
            }
        }
    }
    rows.sort();
    let mut out = String::from("name,digest,tag\n");
    for (name, digest, tag) in rows {
        let _ = writeln!(out, "{name},{digest},{tag}");
    }
    out
}

/// A note for the user on stderr, apart from the command's output.
pub(crate) fn note(text: &str) {
    stderr_line(&format!("ferry: {text}"));
}

/// `1.5 MiB`, `320 KiB`.
pub(crate) fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value:.0} {}", UNITS[unit]) } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn outcome_name(outcome: &EdgeOutcome) -> &'static str {
    match outcome {
        EdgeOutcome::Done(Done::Copied) => "copied",
        EdgeOutcome::Done(Done::Tagged) => "tagged",
        EdgeOutcome::Done(Done::Present) | EdgeOutcome::Present => "present",
        EdgeOutcome::Failed(_) => "failed",
        EdgeOutcome::Excluded => "excluded",
    }
}

const OUTCOMES: [&str; 5] = ["copied", "tagged", "present", "failed", "excluded"];

#[derive(Serialize)]
struct PromotionJson<'a> {
    summary: BTreeMap<&'static str, usize>,
    stats: StatsJson,
    edges: Vec<PromotedEdgeJson<'a>>,
    digests: Vec<DigestJson>,
}

#[derive(Serialize)]
struct DigestJson {
    source: String,
    digest: String,
    verification: Vec<CheckJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    copied_from_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attested: Option<String>,
    replicated: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<String>,
    failed: bool,
}

#[derive(Serialize)]
struct CheckJson {
    check: String,
    result: String,
    reason: String,
}

fn checks_json(report: &Report) -> Vec<CheckJson> {
    report
        .checks
        .iter()
        .map(|c| CheckJson {
            check: c.name.as_str().to_owned(),
            result: c.status.to_string(),
            reason: c.reason.clone(),
        })
        .collect()
}

/// What a trust step did, in words: `2 copied, 4 nothing to copy` rather than a Rust value.
trait Said {
    fn said(&self) -> String;
}

impl Said for ferry_trust::sign::Signed {
    fn said(&self) -> String {
        format!(
            "{} signed, {} already signed by this key; {} bundle signature(s) written (cosign v3)",
            self.signed.len(),
            self.already.len(),
            self.bundled.len()
        )
    }
}

impl Said for ferry_trust::artifacts::Appended {
    fn said(&self) -> String {
        match self {
            ferry_trust::artifacts::Appended::Written => "written".into(),
            ferry_trust::artifacts::Appended::Unchanged => "already there".into(),
        }
    }
}

/// Per digest (the image and each child) and artifact kind, then per referrer: counted by what
/// happened.
impl Said for ferry_promotion::steps::Replication {
    fn said(&self) -> String {
        use ferry_trust::replicate::Replicated::{self, *};
        let words = |outcomes: &mut dyn Iterator<Item = Replicated>| -> String {
            let outcomes: Vec<Replicated> = outcomes.collect();
            let parts: Vec<String> = [
                (Copied, "copied"),
                (Replaced, "replaced by a superset"),
                (Merged, "merged"),
                (AlreadyThere, "already there"),
                (NothingToCopy, "nothing to copy"),
            ]
            .into_iter()
            .filter_map(|(outcome, word)| {
                let n = outcomes.iter().filter(|o| **o == outcome).count();
                (n > 0).then(|| format!("{n} {word}"))
            })
            .chain({
                let n = outcomes.iter().filter(|o| matches!(o, Skipped(_))).count();
                (n > 0).then(|| format!("{n} skipped"))
            })
            .collect();
            parts.join(", ")
        };
        let digests: std::collections::BTreeSet<_> = self.tags.iter().map(|(d, _, _)| d).collect();
        let mut text = format!(
            "{} ({} digest(s) × .sig/.att/.sbom)",
            words(&mut self.tags.iter().map(|t| t.2)),
            digests.len()
        );
        if !self.referrers.is_empty() {
            text.push_str(&format!("; referrers: {}", words(&mut self.referrers.iter().map(|r| r.2))));
        }
        let skipped = self.skipped_text();
        if !skipped.is_empty() {
            text.push_str(&format!(" (skipped: {skipped})"));
        }
        text
    }
}

fn result_text<T: Said, E: std::fmt::Display>(result: &Result<T, E>) -> String {
    match result {
        Ok(value) => value.said(),
        Err(error) => format!("failed: {error}"),
    }
}

fn digest_json(d: &DigestOutcome) -> DigestJson {
    DigestJson {
        source: d.source.to_string(),
        digest: d.digest.to_string(),
        verification: checks_json(&d.report),
        primary: d.primary.as_ref().map(ToString::to_string),
        copied_from_source: d.from_source.as_ref().map(result_text),
        signed: d.signed.as_ref().map(result_text),
        attested: d.attested.as_ref().map(result_text),
        replicated: d.replicated.iter().map(|(m, r)| (m.to_string(), result_text(r))).collect(),
        skipped: d.skipped.clone(),
        failed: d.failed(),
    }
}

/// `ferry verify`'s report: one line per check.
pub(crate) fn render_report(
    report: &Report,
    found: &[String],
    format: PromoteFormat,
) -> Result<String, CliError> {
    if let PromoteFormat::Json = format {
        let json = serde_json::json!({
            "source": report.source.to_string(),
            "digest": report.digest.to_string(),
            "passed": report.passed(),
            "checks": checks_json(report),
            "found": found,
        });
        return serde_json::to_string_pretty(&json)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Output(e.to_string()));
    }
    let mut out = format!("{}@{}\n", report.source, report.digest);
    for check in &report.checks {
        let _ = writeln!(out, "  {:<16} {:<5} {}", check.name, check.status, check.reason);
    }
    if !found.is_empty() {
        let _ = writeln!(out, "found {} signed artifact(s):", found.len());
        for line in found {
            let _ = writeln!(out, "  {line}");
        }
    }
    let _ = writeln!(out, "{}", if report.passed() { "verification passed" } else { "verification FAILED" });
    Ok(out)
}

#[derive(Serialize)]
struct StatsJson {
    seconds: f64,
    bytes_streamed: u64,
    blobs_streamed: u64,
    blobs_mounted: u64,
    blobs_present: u64,
    manifests_pushed: u64,
    tags_written: u64,
}

#[derive(Serialize)]
struct PromotedEdgeJson<'a> {
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_class: Option<String>,
    #[serde(flatten)]
    edge: EdgeReport<'a>,
}

pub(crate) fn render_promotion(
    plan: &Plan,
    chain: &ChainReport,
    stats: &StatsSnapshot,
    elapsed: Duration,
    format: PromoteFormat,
) -> Result<String, CliError> {
    let report = &chain.edges;
    let mut counts: BTreeMap<&'static str, usize> = OUTCOMES.iter().map(|o| (*o, 0)).collect();
    for outcome in &report.outcomes {
        *counts.entry(outcome_name(outcome)).or_default() += 1;
    }
    if let PromoteFormat::Json = format {
        let edges = plan
            .edges
            .iter()
            .zip(&report.outcomes)
            .map(|(edge, outcome)| {
                let mut edge_json = edge_report(edge);
                let error_class = match outcome {
                    EdgeOutcome::Failed(error) => {
                        edge_json.reason = Some(error.to_string());
                        Some(error.class().to_string())
                    }
                    _ => None,
                };
                PromotedEdgeJson { outcome: outcome_name(outcome), error_class, edge: edge_json }
            })
            .collect();
        let json = PromotionJson {
            summary: counts,
            stats: StatsJson {
                seconds: elapsed.as_secs_f64(),
                bytes_streamed: stats.bytes,
                blobs_streamed: stats.blobs_streamed,
                blobs_mounted: stats.blobs_mounted,
                blobs_present: stats.blobs_present,
                manifests_pushed: stats.manifests_pushed,
                tags_written: stats.tags_written,
            },
            edges,
            digests: chain.digests.iter().map(digest_json).collect(),
        };
        return serde_json::to_string_pretty(&json)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Output(format!("cannot write JSON: {e}")));
    }
    let mut out = String::new();
    for (title, wanted) in [("failed", true), ("excluded", false)] {
        let rows: Vec<(&PlannedEdge, &EdgeOutcome)> = plan
            .edges
            .iter()
            .zip(&report.outcomes)
            .filter(|(_, o)| {
                if wanted { matches!(o, EdgeOutcome::Failed(_)) } else { matches!(o, EdgeOutcome::Excluded) }
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title} ({})", rows.len());
        for (edge, outcome) in rows {
            let reason = match outcome {
                EdgeOutcome::Failed(error) => format!("{}: {error}", error.class()),
                _ => edge.action.to_string(),
            };
            let _ = writeln!(out, "  {edge}\n      {reason}\n      from {}", edge.origin);
        }
    }
    if !chain.digests.is_empty() {
        let _ = writeln!(out, "trust ({} promoted digest(s))", chain.digests.len());
        for d in &chain.digests {
            let _ = writeln!(out, "  {}@{}", d.source, d.digest);
            for check in d.report.checks.iter().filter(|c| c.status != ferry_trust::verify::Status::Skip) {
                let _ = writeln!(out, "      verify {:<16} {:<5} {}", check.name, check.status, check.reason);
            }
            if let Some(copied) = &d.from_source {
                let _ = writeln!(out, "      from source: {}", result_text(copied));
            }
            if let Some(signed) = &d.signed {
                let _ = writeln!(out, "      signed: {}", result_text(signed));
            }
            if let Some(attested) = &d.attested {
                let _ = writeln!(out, "      attested: {}", result_text(attested));
            }
            for (mirror, result) in &d.replicated {
                let _ = writeln!(out, "      replicated to {mirror}: {}", result_text(result));
            }
            if let Some(skipped) = &d.skipped {
                let _ = writeln!(out, "      {skipped}");
            }
        }
    }
    let _ = writeln!(out, "\n{:<16} {:>8}", "outcome", "edges");
    for name in OUTCOMES {
        let _ = writeln!(out, "{name:<16} {:>8}", counts[name]);
    }
    let _ = writeln!(out, "{:<16} {:>8}", "total", plan.edges.len());
    let _ = writeln!(
        out,
        "\nblobs: {} streamed ({}), {} mounted, {} already present; {} manifests pushed, {} tags written; {:.1} s",
        stats.blobs_streamed,
        bytes(stats.bytes as f64),
        stats.blobs_mounted,
        stats.blobs_present,
        stats.manifests_pushed,
        stats.tags_written,
        elapsed.as_secs_f64()
    );
    Ok(out)
}
