//! Helm chart archives for the tests: a gzipped tar of the given files, written the way
//! `helm package` lays them out (`<chart>/Chart.yaml`, `<chart>/values.yaml`, subcharts under
//! `<chart>/charts/<sub>/`).

use std::path::Path;

/// Writes `files` (path inside the archive, contents) as a `.tgz` at `path`.
pub fn archive(path: &Path, files: &[(&str, &str)]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(path)?, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, text.as_bytes())?;
    }
    tar.into_inner()?.finish()?;
    Ok(())
}
