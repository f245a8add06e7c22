//! `ferry charts scan`: the images every chart archive's values name, split as Rancher's
//! charts-build-scripts (`scan-registries`) splits them into `stagingToPrime.yaml` and
//! `dockerToPrime.yaml`, keeping only what Prime lacks.
//!
//! Reading: every `*.tgz` under the assets directory (symbolic links refused), gunzipped and
//! untarred in memory (`flate2`, `tar`; no shell-out), every `values.yaml`/`values.yml` in it
//! (subcharts' too), scanned by [`crate::chart_values`]. Archives and values files are bounded in
//! size; an archive that cannot be read is reported and the others are scanned.
//!
//! Deciding ([`split`], pure): a tag Prime has is done; one staging has goes to
//! `stagingToPrime.yaml` (staging's images are signed); one only Docker Hub has goes to
//! `dockerToPrime.yaml`; one nowhere is reported. Before that, what the sync must never copy is
//! dropped with the reason: prerelease tags (`-rc`, `-alpha`, `-beta`, any case) and `sha256-*`
//! tags. Images outside Docker Hub, and images pinned only by digest, are reported and left out:
//! the sync files name Docker Hub repositories and tags.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ferry_model::{Notice, NoticeKind, Origin};

use crate::chart_values;
use ferry_manifests::ManifestError;

/// The largest chart archive read, and the largest values file inside one.
const MAX_ARCHIVE_BYTES: u64 = 64 * 1024 * 1024;
const MAX_VALUES_BYTES: u64 = 16 * 1024 * 1024;

/// Repository (Docker Hub style, `rancher/fleet`) -> tags.
pub type RepoTags = BTreeMap<String, BTreeSet<String>>;

/// What the archives ask for, and what was left out of it.
#[derive(Debug, Default)]
pub struct Wanted {
    pub images: RepoTags,
    pub notices: Vec<Notice>,
    pub archives: usize,
    pub values_files: usize,
}

/// Every `.tgz` under `dir`, sorted.
pub fn archives(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .map_err(|source| ManifestError::Read { path: current.clone(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| ManifestError::Read { path: current.clone(), source })?;
            let path = entry.path();
            let kind =
                entry.file_type().map_err(|source| ManifestError::Read { path: path.clone(), source })?;
            if kind.is_symlink() {
                return Err(ManifestError::Layout {
                    path,
                    message: "is a symbolic link; Ferry only reads regular files and directories".into(),
                });
            } else if kind.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "tgz") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The values files of one chart archive: (entry path, text).
pub fn values_files(archive: &Path) -> Result<Vec<(String, String)>, ManifestError> {
    let layout = |message: String| ManifestError::Layout { path: archive.to_owned(), message };
    let meta = std::fs::metadata(archive)
        .map_err(|source| ManifestError::Read { path: archive.to_owned(), source })?;
    if meta.len() > MAX_ARCHIVE_BYTES {
        return Err(layout(format!("is {} bytes; the limit is {MAX_ARCHIVE_BYTES}", meta.len())));
    }
    let file = std::fs::File::open(archive)
        .map_err(|source| ManifestError::Read { path: archive.to_owned(), source })?;
    values_in_archive(file).map_err(layout)
}

/// The most an archive may expand to when decompressed.
const MAX_EXPANDED_BYTES: u64 = MAX_ARCHIVE_BYTES * 8;
/// The largest tar extension header read (a GNU long name or link, a PAX header). Real ones are
/// a few hundred bytes; the `tar` crate would buffer one of any size whole, so that a 0.5 MB
/// archive declaring a 480 MiB long name took 1 GB of memory. This reader walks the headers
/// itself and refuses such an archive before reading the body.
const MAX_EXTENSION_BYTES: u64 = 64 * 1024;

/// The values files (entry path, text) of a gzipped chart archive read from `archive`, in
/// memory, bounded: what `charts scan` and discovery's chart fallback both read. Memory stays
/// within the largest values file and extension header, whatever the archive declares.
pub fn values_in_archive(archive: impl std::io::Read) -> Result<Vec<(String, String)>, String> {
    let mut reader = Bounded { inner: flate2::read::GzDecoder::new(archive), read: 0 };
    let mut out = Vec::new();
    // Names set by extension headers for the entry that follows them.
    let (mut long_name, mut pax_path): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    let mut first = true;
    loop {
        let mut header = [0u8; 512];
        match reader.fill(&mut header) {
            Ok(true) => {}
            // A tar archive may end without its two zero blocks.
            Ok(false) if !first => break,
            Ok(false) => return Err("is not a gzipped tar archive: it is empty".into()),
            Err(e) if first => return Err(format!("is not a gzipped tar archive: {e}")),
            Err(e) => return Err(e),
        }
        first = false;
        if header.iter().all(|b| *b == 0) {
            break;
        }
        if !checksum_matches(&header) {
            return Err("is not a tar archive: a header's checksum does not match".into());
        }
        let size = header_size(&header).ok_or("is not a tar archive: a header's size is malformed")?;
        let kind = header[156];
        match kind {
            b'L' | b'K' | b'x' | b'g' => {
                let what = match kind {
                    b'L' => "GNU long name",
                    b'K' => "GNU long link name",
                    b'x' => "PAX",
                    _ => "PAX global",
                };
                if size > MAX_EXTENSION_BYTES {
                    return Err(format!(
                        "has a {what} header of {size} bytes; the limit is {MAX_EXTENSION_BYTES}, so the archive is refused"
                    ));
                }
                let body = reader.take_bytes(size)?;
                match kind {
                    b'L' => long_name = Some(body.split(|b| *b == 0).next().unwrap_or_default().to_vec()),
                    b'x' => pax_path = pax_value(&body, b"path").or(pax_path),
                    _ => {}
                }
                continue;
            }
            _ => {}
        }
        let name_bytes = pax_path.take().or(long_name.take()).unwrap_or_else(|| ustar_name(&header));
        let name = ferry_model::shown::escaped_bytes(&name_bytes).into_owned();
        let base = name.rsplit('/').next().unwrap_or_default();
        let regular = kind == b'0' || kind == 0 || kind == b'7';
        if regular && (base == "values.yaml" || base == "values.yml") {
            if size > MAX_VALUES_BYTES {
                return Err(format!("{name} is {size} bytes; the limit is {MAX_VALUES_BYTES}"));
            }
            let body = reader.take_bytes(size)?;
            let text = String::from_utf8(body).map_err(|_| format!("{name} is not UTF-8 text"))?;
            out.push((name, text));
        } else {
            reader.skip(padded(size))?;
        }
    }
    out.sort();
    Ok(out)
}

/// The decompressed stream, counted: past [`MAX_EXPANDED_BYTES`] it is an error that says so.
struct Bounded<R> {
    inner: R,
    read: u64,
}

impl<R: std::io::Read> Bounded<R> {
    fn count(&mut self, n: usize) -> Result<(), String> {
        self.read += n as u64;
        if self.read > MAX_EXPANDED_BYTES {
            return Err(format!(
                "expands past {} MiB; the limit is {0} MiB",
                MAX_EXPANDED_BYTES / (1024 * 1024)
            ));
        }
        Ok(())
    }

    /// Fills `block`; `Ok(false)` at a clean end of the stream.
    fn fill(&mut self, block: &mut [u8]) -> Result<bool, String> {
        let mut filled = 0;
        while filled < block.len() {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err("is truncated: it ends inside a header".into()),
                Ok(n) => {
                    self.count(n)?;
                    filled += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot be read: {e}")),
            }
        }
        Ok(true)
    }

    /// An entry's body of `size` bytes (the caller bounded `size`), and its padding.
    fn take_bytes(&mut self, size: u64) -> Result<Vec<u8>, String> {
        let mut body = vec![0u8; usize::try_from(padded(size)).map_err(|_| "an entry is too large")?];
        if !self.fill(&mut body)? && !body.is_empty() {
            return Err("is truncated: it ends inside an entry".into());
        }
        body.truncate(usize::try_from(size).unwrap_or(0));
        Ok(body)
    }

    /// Reads past `n` bytes without keeping them.
    fn skip(&mut self, mut n: u64) -> Result<(), String> {
        let mut buffer = [0u8; 8192];
        while n > 0 {
            let want = usize::try_from(n.min(buffer.len() as u64)).unwrap_or(buffer.len());
            match self.inner.read(&mut buffer[..want]) {
                Ok(0) => return Err("is truncated: it ends inside an entry".into()),
                Ok(read) => {
                    self.count(read)?;
                    n -= read as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot be read: {e}")),
            }
        }
        Ok(())
    }
}

/// `size` rounded up to whole 512-byte blocks.
fn padded(size: u64) -> u64 {
    size.div_ceil(512) * 512
}

/// The size field: octal text, or GNU's base-256 binary form (high bit of the first byte set).
fn header_size(header: &[u8; 512]) -> Option<u64> {
    let field = &header[124..136];
    if field[0] & 0x80 != 0 {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for byte in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(*byte))?;
        }
        return Some(value);
    }
    let text: Vec<u8> = field.iter().copied().take_while(|b| *b != 0 && *b != b' ').collect();
    let text = std::str::from_utf8(&text).ok()?.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The header checksum: the sum of its bytes with the checksum field read as spaces.
fn checksum_matches(header: &[u8; 512]) -> bool {
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, b)| if (148..156).contains(&i) { u64::from(b' ') } else { u64::from(*b) })
        .sum();
    let field: Vec<u8> = header[148..156].iter().copied().filter(|b| b.is_ascii_digit()).collect();
    std::str::from_utf8(&field).ok().and_then(|t| u64::from_str_radix(t, 8).ok()) == Some(sum)
}

/// A ustar name: `prefix/name`, each NUL-terminated in its field.
fn ustar_name(header: &[u8; 512]) -> Vec<u8> {
    let field = |range: std::ops::Range<usize>| -> Vec<u8> {
        header[range].iter().copied().take_while(|b| *b != 0).collect()
    };
    let name = field(0..100);
    let ustar = &header[257..262] == b"ustar";
    let prefix = if ustar { field(345..500) } else { Vec::new() };
    if prefix.is_empty() { name } else { [prefix, b"/".to_vec(), name].concat() }
}

/// The value of `key` in a PAX extended header (`"<len> <key>=<value>\n"` records).
fn pax_value(body: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let mut rest = body;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ')?;
        let length: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        let record = rest.get(space + 1..length)?;
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(at) = record.iter().position(|b| *b == b'=')
            && &record[..at] == key
        {
            return Some(record[at + 1..].to_vec());
        }
        rest = rest.get(length..)?;
    }
    None
}

/// Where a value came from: `<archive>!<entry>`.
fn origin(archive: &Path, entry: &str) -> PathBuf {
    PathBuf::from(format!("{}!{entry}", archive.display()))
}

/// What every archive under `dir` asks for. One archive or values file that cannot be read is
/// an `invalid` notice; the rest are still scanned.
pub fn wanted(dir: &Path) -> Result<Wanted, ManifestError> {
    let mut out = Wanted::default();
    for archive in archives(dir)? {
        out.archives += 1;
        let files = match values_files(&archive) {
            Ok(files) => files,
            Err(e) => {
                out.notices.push(Notice {
                    kind: NoticeKind::Invalid,
                    origin: Origin::new(archive.display().to_string(), 0),
                    field: "archive".into(),
                    message: format!("{e}; its images are left out"),
                });
                continue;
            }
        };
        for (entry, text) in files {
            out.values_files += 1;
            let path = origin(&archive, &entry);
            match chart_values::images(&path, &text) {
                Ok((images, notices)) => {
                    out.notices.extend(notices);
                    for image in images {
                        add(&mut out, &path, image);
                    }
                }
                Err(e) => out.notices.push(Notice {
                    kind: NoticeKind::Invalid,
                    origin: Origin::new(path.display().to_string(), 0),
                    field: "values".into(),
                    message: format!("{e}; its images are left out"),
                }),
            }
        }
    }
    Ok(out)
}

fn add(out: &mut Wanted, path: &Path, image: chart_values::ImageUse) {
    let mut notice = |kind, field: &str, message: String| {
        out.notices.push(Notice {
            kind,
            origin: Origin::new(path.display().to_string(), u32::try_from(image.line).unwrap_or(u32::MAX)),
            field: field.into(),
            message,
        });
    };
    // What a values file says is outside text: a name that is not a valid OCI repository or
    // tag is an invalid entry, shown escaped, and is never asked for at a registry.
    let shown = ferry_model::escaped(&image.repository).into_owned();
    if let Err(e) = ferry_model::Repository::parse_docker_style(&image.repository) {
        notice(NoticeKind::Invalid, "repository", format!("{e}; the image is left out"));
        return;
    }
    let Some(tag) = &image.tag else {
        notice(
            NoticeKind::Warning,
            "digest",
            format!("{shown} is pinned by digest only; the sync files list tags. Left out"),
        );
        return;
    };
    if let Err(e) = ferry_model::Tag::parse(tag) {
        notice(NoticeKind::Invalid, "tag", format!("{shown}: {e}; the image is left out"));
        return;
    }
    let first = image.repository.split('/').next().unwrap_or_default();
    let on_hub = !(first.contains('.') || first.contains(':') || first == "localhost");
    let repository = if on_hub {
        image.repository.clone()
    } else if let Some(rest) = image.repository.strip_prefix("docker.io/") {
        rest.to_owned()
    } else {
        notice(
            NoticeKind::Warning,
            "repository",
            format!(
                "{}:{tag} is not a Docker Hub image; the charts sync copies Docker Hub and staging images. Left out",
                image.repository
            ),
        );
        return;
    };
    let lower = tag.to_ascii_lowercase();
    if ["-rc", "-alpha", "-beta"].iter().any(|m| lower.contains(m)) {
        notice(
            NoticeKind::Warning,
            "tag",
            format!("{repository}:{tag} is a prerelease; Prime never gets one. Left out"),
        );
        return;
    }
    if tag.starts_with("sha256-") {
        notice(
            NoticeKind::Warning,
            "tag",
            format!("{repository}:{tag} is a signature or attestation tag, not an image. Left out"),
        );
        return;
    }
    out.images.entry(repository).or_default().insert(tag.clone());
}

/// The split of what is wanted against what each registry holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub staging_to_prime: RepoTags,
    pub docker_to_prime: RepoTags,
    /// Wanted, absent from Prime, staging and Docker Hub.
    pub missing: RepoTags,
    /// Already in Prime.
    pub present: usize,
}

/// Decides, per wanted tag, where it comes from (pure). `prime`, `staging` and `hub` are the
/// tags each registry lists for the wanted repositories.
pub fn split(wanted: &RepoTags, prime: &RepoTags, staging: &RepoTags, hub: &RepoTags) -> Split {
    let mut out = Split::default();
    let has = |map: &RepoTags, repo: &str, tag: &str| map.get(repo).is_some_and(|tags| tags.contains(tag));
    for (repo, tags) in wanted {
        for tag in tags {
            let target = if has(prime, repo, tag) {
                out.present += 1;
                continue;
            } else if has(staging, repo, tag) {
                &mut out.staging_to_prime
            } else if has(hub, repo, tag) {
                &mut out.docker_to_prime
            } else {
                &mut out.missing
            };
            target.entry(repo.clone()).or_default().insert(tag.clone());
        }
    }
    out
}

/// A sync file's text (`repository:` then `- tag` lines, sorted), with a header comment.
pub fn write_sync_file(images: &RepoTags, header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "# {line}");
    }
    if images.is_empty() {
        out.push_str("{}\n");
    }
    for (repo, tags) in images {
        let _ = writeln!(out, "{repo}:");
        for tag in tags {
            let _ = writeln!(out, "  - \"{tag}\"");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn tags(pairs: &[(&str, &[&str])]) -> RepoTags {
        pairs.iter().map(|(r, t)| ((*r).to_owned(), t.iter().map(|t| (*t).to_owned()).collect())).collect()
    }

    #[test]
    fn what_prime_lacks_comes_from_staging_first_then_docker_hub() {
        let wanted = tags(&[("rancher/fleet", &["v1", "v2", "v3", "v4"]), ("rancher/new", &["1.0"])]);
        let prime = tags(&[("rancher/fleet", &["v1"])]);
        let staging = tags(&[("rancher/fleet", &["v2", "v3"])]);
        let hub = tags(&[("rancher/fleet", &["v3", "v4"]), ("rancher/new", &["0.9"])]);
        let got = split(&wanted, &prime, &staging, &hub);
        assert_eq!(got.present, 1);
        assert_eq!(got.staging_to_prime, tags(&[("rancher/fleet", &["v2", "v3"])]));
        assert_eq!(got.docker_to_prime, tags(&[("rancher/fleet", &["v4"])]));
        assert_eq!(got.missing, tags(&[("rancher/new", &["1.0"])]));
        assert_eq!(
            write_sync_file(&got.docker_to_prime, "written by ferry"),
            "# written by ferry\nrancher/fleet:\n  - \"v4\"\n"
        );
        assert_eq!(write_sync_file(&RepoTags::new(), "x"), "# x\n{}\n");
    }

    /// A gzipped tar written by the `tar` crate (an independent writer): `build` adds entries.
    fn gzipped(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    fn file(builder: &mut tar::Builder<Vec<u8>>, name: &str, text: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, text).unwrap();
    }

    /// A raw 512-byte header of `kind` declaring `size` bytes, with a valid checksum.
    fn raw_header(name: &str, kind: u8, size: u64) -> [u8; 512] {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..108].copy_from_slice(b"0000644\0");
        header[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        header[156] = kind;
        header[257..265].copy_from_slice(b"ustar  \0");
        header[148..156].copy_from_slice(b"        ");
        let sum: u64 = header.iter().map(|b| u64::from(*b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        header
    }

    #[test]
    fn values_files_are_read_under_every_kind_of_name() {
        let long = format!("chart/charts/{}/values.yaml", "sub".repeat(50));
        let archive = gzipped(|b| {
            file(b, "chart/Chart.yaml", b"name: chart\n");
            file(b, "chart/values.yaml", b"image: a\n");
            // Longer than 100 bytes: a GNU long-name header before it.
            file(b, &long, b"image: b\n");
            // A PAX header naming the entry.
            let mut header = tar::Header::new_ustar();
            header.set_size(9);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_path("placeholder").unwrap();
            header.set_cksum();
            b.append_pax_extensions([("path", b"chart/charts/pax/values.yml".as_slice())]).unwrap();
            b.append(&header, b"image: c\n".as_slice()).unwrap();
            file(b, "chart/templates/values.yaml.tpl", b"not values\n");
        });
        let files = values_in_archive(archive.as_slice()).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["chart/charts/pax/values.yml", long.as_str(), "chart/values.yaml"]);
        assert_eq!((files[0].1.as_str(), files[1].1.as_str()), ("image: c\n", "image: b\n"));
    }

    #[test]
    fn hostile_archives_are_refused_with_the_reason_before_they_are_read() {
        let gz = |bytes: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, bytes).unwrap();
            gz.finish().unwrap()
        };
        // A GNU long name declaring 480 MiB: refused at its header, its body never read.
        for (kind, what) in
            [(b'L', "GNU long name"), (b'K', "GNU long link name"), (b'x', "PAX"), (b'g', "PAX global")]
        {
            let error =
                values_in_archive(gz(&raw_header("././@LongLink", kind, 480 << 20)).as_slice()).unwrap_err();
            assert_eq!(
                error,
                format!(
                    "has a {what} header of 503316480 bytes; the limit is 65536, so the archive is refused"
                )
            );
        }
        // An entry that expands past the cap: the cap says so.
        let mut big = raw_header("chart/blob", b'0', 600 << 20).to_vec();
        big.resize(big.len() + (600 << 20), 0);
        let error = values_in_archive(gz(&big).as_slice()).unwrap_err();
        assert_eq!(error, "expands past 512 MiB; the limit is 512 MiB");
        drop(big);
        // A values file over its limit.
        let error =
            values_in_archive(gz(&raw_header("chart/values.yaml", b'0', MAX_VALUES_BYTES + 1)).as_slice())
                .unwrap_err();
        assert!(error.starts_with("chart/values.yaml is 16777217 bytes"), "{error}");
        // Truncated, corrupted, empty, not gzip.
        let mut truncated = raw_header("chart/values.yaml", b'0', 100).to_vec();
        truncated.extend_from_slice(b"image: a");
        assert!(values_in_archive(gz(&truncated).as_slice()).unwrap_err().contains("truncated"));
        let mut corrupt = raw_header("chart/values.yaml", b'0', 0);
        corrupt[0] = b'X';
        assert!(values_in_archive(gz(&corrupt).as_slice()).unwrap_err().contains("checksum"));
        assert!(values_in_archive(gz(b"").as_slice()).unwrap_err().contains("empty"));
        assert!(
            values_in_archive(b"not gzip at all".as_slice())
                .unwrap_err()
                .starts_with("is not a gzipped tar archive")
        );
        // A name with control characters is shown escaped.
        let archive = gzipped(|b| file(b, "chart/\x1b[31m/values.yaml", b"x: 1\n"));
        let files = values_in_archive(archive.as_slice()).unwrap();
        assert_eq!(files[0].0, "chart/\\u{1b}[31m/values.yaml");
    }
}
