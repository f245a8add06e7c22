//! The report for people (Markdown), for machines (JSON) and for CI systems (JUnit XML).

use std::fmt::Write as _;

use ferry_model::Origin;
use serde::Serialize;

use crate::report::{Check, DigestReport, Report, Status};

/// Where links to the inputs point: `https://github.com/<owner>/<repo>/blob/<sha>` of the head
/// (and of the base, for what only the base has), to which `/<path>#L<line>` is added. Without
/// them, places are printed, not linked.
#[derive(Clone, Debug, Default)]
pub struct Links {
    pub blob_base: Option<String>,
    pub base_blob_base: Option<String>,
}

/// A place in the inputs as the repository names it: `head@<rev>:` or `base@<rev>:` (what a
/// revision was read from) taken off, and line 0 (none) left as it is.
pub fn repository_path(origin: &Origin) -> (&str, u32) {
    let source: &str = &origin.source;
    let path = ["head@", "base@"]
        .iter()
        .find_map(|side| source.strip_prefix(side).and_then(|rest| rest.split_once(':')).map(|(_, p)| p))
        .unwrap_or(source);
    (path, origin.line)
}

/// Whether `origin` is a place in the base revision (a line the change removed).
pub fn in_base(origin: &Origin) -> bool {
    origin.source.starts_with("base@")
}

fn icon(status: Status) -> &'static str {
    match status {
        Status::Pass => "✅",
        Status::Skip => "➖",
        Status::Warn => "⚠️",
        Status::Fail => "❌",
    }
}

/// Text safe in a Markdown table cell.
fn cell(text: &str) -> String {
    // Outside text (a tag, a registry's answer) is shown escaped; then made safe for a table.
    ferry_model::escaped(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn place(origin: &Origin, links: &Links) -> String {
    let (path, line) = repository_path(origin);
    let mut label = if line > 0 { format!("{path}:{line}") } else { path.to_owned() };
    let base = if in_base(origin) {
        label.push_str(" (base)");
        &links.base_blob_base
    } else {
        &links.blob_base
    };
    match base {
        Some(base) if !path.is_empty() && !path.starts_with('/') => {
            let anchor = if line > 0 { format!("#L{line}") } else { String::new() };
            format!("[{}]({}/{path}{anchor})", cell(&label), base.trim_end_matches('/'))
        }
        _ => format!("`{}`", cell(&label)),
    }
}

/// `sha256:0123456789ab…`: enough to tell digests apart in a table.
fn short(digest: &ferry_model::Digest) -> String {
    let full = digest.to_string();
    format!("{}…", &full[..full.len().min(19)])
}

/// The summary a reviewer reads first: one line, then the counts.
pub fn summary(report: &Report) -> String {
    let mut out = format!("**Ferry check: {}**\n\n", report.title());
    let n = report.digests.len();
    let verified = report.n_verified();
    let _ = writeln!(
        out,
        "- {n} new digest{}: {verified} verified, {} with problems",
        if n == 1 { "" } else { "s" },
        n - verified
    );
    let other = report.problems.iter().filter(|p| p.status == Status::Fail).count();
    if other > 0 || !report.problems.is_empty() {
        let _ = writeln!(out, "- {other} problem{} outside them", if other == 1 { "" } else { "s" });
    }
    let _ = writeln!(out, "- conclusion: {}", report.conclusion().as_str());
    out
}

fn checks_cell(digest: &DigestReport) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut skipped: Vec<&str> = Vec::new();
    let order = [Status::Fail, Status::Warn, Status::Pass];
    for status in order {
        for check in digest.checks.iter().filter(|c| c.status == status) {
            let name =
                if status == Status::Fail { format!("**{}**", check.name) } else { check.name.to_string() };
            lines.push(format!("{} {name}: {}", icon(status), cell(&check.reason)));
        }
    }
    skipped.extend(digest.checks.iter().filter(|c| c.status == Status::Skip).map(|c| c.name.as_str()));
    if !skipped.is_empty() {
        lines.push(format!("{} not checked: {}", icon(Status::Skip), skipped.join(", ")));
    }
    lines.join("<br>")
}

/// The per-digest table, then the other problems.
pub fn details(report: &Report, links: &Links) -> String {
    let mut out = String::new();
    if !report.digests.is_empty() {
        out.push_str("| | Image | Tags | Where | Checks |\n|---|---|---|---|---|\n");
        for digest in &report.digests {
            let tags = if digest.tags.is_empty() {
                "(tagless)".to_owned()
            } else {
                digest.tags.iter().map(|t| format!("`{}`", cell(t.as_str()))).collect::<Vec<_>>().join(" ")
            };
            let _ = writeln!(
                out,
                "| {} | `{}@{}` | {tags} | {} | {} |",
                icon(digest.status()),
                cell(&digest.source.to_string()),
                short(&digest.digest),
                place(&digest.origin, links),
                checks_cell(digest)
            );
        }
    }
    if !report.problems.is_empty() {
        out.push_str("\n**Other problems**\n\n");
        for problem in &report.problems {
            let _ = writeln!(
                out,
                "- {} **{}** {}: {}",
                icon(problem.status),
                problem.check,
                place(&problem.origin, links),
                cell(&problem.message)
            );
        }
    }
    out
}

/// `--output markdown`: the summary, then the details.
pub fn markdown(report: &Report, links: &Links) -> String {
    let mut out = summary(report);
    let details = details(report, links);
    if !details.is_empty() {
        out.push('\n');
        out.push_str(&details);
    }
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    conclusion: &'static str,
    title: String,
    digests: Vec<JsonDigest<'a>>,
    problems: Vec<JsonProblem<'a>>,
}

#[derive(Serialize)]
struct JsonDigest<'a> {
    source: String,
    digest: String,
    tags: Vec<&'a str>,
    file: &'a str,
    line: u32,
    status: String,
    checks: Vec<JsonCheck<'a>>,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    name: &'a str,
    status: String,
    reason: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
struct JsonProblem<'a> {
    check: &'a str,
    status: String,
    file: &'a str,
    line: u32,
    message: std::borrow::Cow<'a, str>,
}

/// `--output json`.
pub fn json(report: &Report) -> Result<String, serde_json::Error> {
    let digests = report
        .digests
        .iter()
        .map(|d| {
            let (file, line) = repository_path(&d.origin);
            JsonDigest {
                source: d.source.to_string(),
                digest: d.digest.to_string(),
                tags: d.tags.iter().map(|t| t.as_str()).collect(),
                file,
                line,
                status: d.status().to_string(),
                checks: d
                    .checks
                    .iter()
                    .map(|c| JsonCheck {
                        name: c.name.as_str(),
                        status: c.status.to_string(),
                        reason: ferry_model::escaped(&c.reason),
                    })
                    .collect(),
            }
        })
        .collect();
    let problems = report
        .problems
        .iter()
        .map(|p| {
            let (file, line) = repository_path(&p.origin);
            JsonProblem {
                check: p.check.as_str(),
                status: p.status.to_string(),
                file,
                line,
                message: ferry_model::escaped(&p.message),
            }
        })
        .collect();
    let out =
        JsonReport { conclusion: report.conclusion().as_str(), title: report.title(), digests, problems };
    serde_json::to_string_pretty(&out).map(|mut s| {
        s.push('\n');
        s
    })
}

/// Text safe in an XML attribute or element, outside text shown escaped first.
fn xml(text: &str) -> String {
    let text = ferry_model::escaped(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn testcase(out: &mut String, class: &str, name: &str, origin: &Origin, check: &Check) {
    let (file, line) = repository_path(origin);
    let _ = write!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" line=\"{line}\"",
        xml(class),
        xml(name),
        xml(file)
    );
    let at = if line > 0 { format!("{file}:{line}") } else { file.to_owned() };
    match check.status {
        Status::Fail => {
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}\" type=\"{}\">{}: {}</failure>\n    </testcase>",
                xml(&check.reason),
                xml(check.name.as_str()),
                xml(&at),
                xml(&check.reason)
            );
        }
        Status::Skip => {
            let _ = writeln!(out, ">\n      <skipped message=\"{}\"/>\n    </testcase>", xml(&check.reason));
        }
        Status::Warn => {
            let _ = writeln!(
                out,
                ">\n      <system-out>warning: {}</system-out>\n    </testcase>",
                xml(&check.reason)
            );
        }
        Status::Pass => {
            let _ =
                writeln!(out, ">\n      <system-out>{}</system-out>\n    </testcase>", xml(&check.reason));
        }
    }
}

/// `--output junit`: a test suite per new digest, a test case per check; and a `repository`
/// suite for the problems outside them.
pub fn junit(report: &Report) -> String {
    let count = |checks: &mut dyn Iterator<Item = Status>| {
        let (mut tests, mut failures, mut skipped) = (0, 0, 0);
        for status in checks {
            tests += 1;
            failures += usize::from(status == Status::Fail);
            skipped += usize::from(status == Status::Skip);
        }
        (tests, failures, skipped)
    };
    let all = count(
        &mut report
            .digests
            .iter()
            .flat_map(|d| d.checks.iter().map(|c| c.status))
            .chain(report.problems.iter().map(|p| p.status)),
    );
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"ferry check\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
        all.0, all.1, all.2
    );
    for digest in &report.digests {
        let image = digest.image();
        let (tests, failures, skipped) = count(&mut digest.checks.iter().map(|c| c.status));
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{skipped}\">",
            xml(&image)
        );
        for check in &digest.checks {
            testcase(&mut out, &image, check.name.as_str(), &digest.origin, check);
        }
        out.push_str("  </testsuite>\n");
    }
    if !report.problems.is_empty() {
        let (tests, failures, skipped) = count(&mut report.problems.iter().map(|p| p.status));
        let _ = writeln!(
            out,
            "  <testsuite name=\"repository\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{skipped}\">"
        );
        for problem in &report.problems {
            let (file, line) = repository_path(&problem.origin);
            let name = if line > 0 {
                format!("{} {file}:{line}", problem.check)
            } else {
                format!("{} {file}", problem.check)
            };
            let check = Check {
                name: problem.check.clone(),
                status: problem.status,
                reason: problem.message.clone(),
            };
            testcase(&mut out, "repository", &name, &problem.origin, &check);
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
