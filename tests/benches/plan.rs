//! Planning at k8s.io scale: ~35,000 (image, digest, tag) entries × 22 destinations ≈ 770,000
//! edges, parsed from a generated thin-manifest directory and planned against an in-memory
//! snapshot of registry state. Also a one-entry diff.
//!
//! Run: `cargo bench -p ferry-testkit --bench plan`

#![allow(clippy::unwrap_used, clippy::print_stdout, reason = "a benchmark program that prints its figures")]

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use ferry_manifests::{Input, Policy};
use ferry_model::{DesiredState, Digest, TagOrDigest};
use ferry_plan::{Facts, diff, plan};

const REGIONS: [&str; 22] = [
    "asia-east1",
    "asia-south1",
    "asia-northeast1",
    "asia-northeast2",
    "australia-southeast1",
    "europe-north1",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west4",
    "europe-west8",
    "europe-west9",
    "southamerica-west1",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
];
const SUBPROJECTS: usize = 40;
const IMAGES_PER_SUBPROJECT: usize = 25;
const DIGESTS_PER_IMAGE: usize = 30;

fn digest(sub: usize, image: usize, n: usize) -> Digest {
    Digest::of(format!("{sub}/{image}/{n}").as_bytes())
}

/// Writes the thin-manifest directory: 40 × 25 images × 30 digests = 30,000 digests; every
/// sixth digest carries a second tag, giving 35,000 tag entries.
fn generate(root: &Path, extra_entry: bool) {
    for sub in 0..SUBPROJECTS {
        let name = format!("k8s-staging-sub{sub:02}");
        std::fs::create_dir_all(root.join("manifests").join(&name)).unwrap();
        std::fs::create_dir_all(root.join("images").join(&name)).unwrap();
        let mut registries = format!("registries:\n- name: gcr.io/{name}\n  src: true\n");
        for region in REGIONS {
            let _ = writeln!(registries, "- name: {region}-docker.pkg.dev/k8s-artifacts-prod/images/{name}");
        }
        std::fs::write(root.join("manifests").join(&name).join("promoter-manifest.yaml"), registries)
            .unwrap();
        let mut images = String::new();
        for image in 0..IMAGES_PER_SUBPROJECT {
            let _ = writeln!(images, "- name: image-{image:02}\n  dmap:");
            for n in 0..DIGESTS_PER_IMAGE {
                let tags =
                    if n % 6 == 0 { format!("\"v1.{n}.0\", \"v1.{n}\"") } else { format!("\"v1.{n}.0\"") };
                let _ = writeln!(images, "    \"{}\": [{tags}]", digest(sub, image, n));
            }
        }
        if extra_entry && sub == 7 {
            let _ =
                writeln!(images, "- name: image-new\n  dmap:\n    \"{}\": [\"v9.9.9\"]", digest(sub, 999, 0));
        }
        std::fs::write(root.join("images").join(&name).join("images.yaml"), images).unwrap();
    }
}

/// Registry state, edge by edge in a repeating pattern of 100: 94 present, 1 conflict, 1 with
/// the digest but not the tag (add-tag), 4 absent at the destination (copy, or add-tag when a
/// sibling edge's tag already brought the digest). One source manifest in 100 is absent, which
/// only matters for edges the destination lacks.
fn facts(desired: &DesiredState) -> Facts {
    let mut facts = Facts::default();
    let mut i = 0usize;
    for entry in &desired.entries {
        let TagOrDigest::Digest(d) = entry.pin else { continue };
        for source in entry.sources.iter() {
            if i % 100 != 99 {
                facts.record_manifest(source.repository.clone(), d, true);
            }
        }
        for destination in entry.destinations.iter() {
            for tag in &entry.tags {
                i += 1;
                match i % 100 {
                    0..=93 => facts.record_tag(destination.repository.clone(), tag.clone(), Some(d)),
                    94 => facts.record_tag(
                        destination.repository.clone(),
                        tag.clone(),
                        Some(Digest::of(b"other")),
                    ),
                    95 => facts.record_manifest(destination.repository.clone(), d, true),
                    _ => {}
                }
            }
        }
    }
    facts
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    let head_dir = dir.path().join("head");
    generate(&base_dir, false);
    generate(&head_dir, true);
    let policy = Policy::default();

    let started = Instant::now();
    let desired = ferry_manifests::load(&[Input::KpromoThinDir(base_dir.clone())], &policy).unwrap().state;
    let parse = started.elapsed();
    let tag_entries: usize = desired.entries.iter().map(|e| e.tags.len().max(1)).sum();

    let started = Instant::now();
    let facts = facts(&desired);
    let build_facts = started.elapsed();

    let started = Instant::now();
    let full = plan(&desired, &facts);
    let plan_time = started.elapsed();
    let rss_after_full = ferry_testkit::peak_rss_mib();
    let counts: Vec<String> =
        full.counts().iter().filter(|(_, n)| *n > 0).map(|(a, n)| format!("{a}={n}")).collect();

    // One added digest: with both trees parsed in full, and with only the changed subproject
    // parsed (what `ferry plan --diff-base-rev` does for a thin-manifest directory).
    let started = Instant::now();
    let head = ferry_manifests::load(&[Input::KpromoThinDir(head_dir.clone())], &policy).unwrap().state;
    let base = ferry_manifests::load(&[Input::KpromoThinDir(base_dir.clone())], &policy).unwrap().state;
    let changed = diff(&base, &head);
    let one = plan(&changed, &facts);
    let diff_full_parse = started.elapsed();
    assert_eq!(one.edges.len(), 22);

    let started = Instant::now();
    let sub = ["k8s-staging-sub07".to_owned()];
    let head_sub = ferry_manifests::kpromo::load_thin_subprojects(&head_dir, &sub, &policy).unwrap();
    let base_sub = ferry_manifests::kpromo::load_thin_subprojects(&base_dir, &sub, &policy).unwrap();
    let changed = diff(&base_sub, &head_sub);
    let one = plan(&changed, &facts);
    let diff_changed_only = started.elapsed();
    assert_eq!(one.edges.len(), 22);

    println!("k8s.io-scale plan ({} subprojects, {} destinations each)", SUBPROJECTS, REGIONS.len());
    println!("  entries (image, digest):        {}", desired.entries.len());
    println!("  (image, digest, tag) entries:   {tag_entries}");
    println!("  edges:                          {}", full.edges.len());
    println!("  actions:                        {}", counts.join(" "));
    println!("  parse manifests:                {}", ms(parse));
    println!("  build in-memory snapshot:       {} (set-up, not planning)", ms(build_facts));
    println!("  plan (pure):                    {}", ms(plan_time));
    println!("  parse + plan:                   {}   target < 2000 ms", ms(parse + plan_time));
    println!("  peak RSS:                       {rss_after_full:.0} MiB   target < 1024 MiB");
    println!("  one-entry diff, full parse:     {}", ms(diff_full_parse));
    println!("  one-entry diff, changed only:   {}   target < 100 ms", ms(diff_changed_only));
}
