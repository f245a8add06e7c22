//! The input kinds, in one table: how a command line names each, how `pipeline.manifests`
//! names it, and how a change of it is read. The CLI's flags and the config's keys are both
//! built from [`KINDS`]; a test checks that neither has an input the other lacks.

use std::path::PathBuf;

use ferry_manifests::Input;

/// How a change of an input is read at two revisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeUnit {
    /// Only the subprojects (`manifests/<sub>`, `images/<sub>`) the change touched.
    Subproject,
    /// The whole file (and the files it names), when the change touched any of them.
    File,
}

/// One input kind.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// The command-line flag (`ferry plan --thin-manifest-dir DIR`).
    pub flag: &'static str,
    /// The key under `pipeline.manifests` (a list of paths inside the repository).
    pub config_key: &'static str,
    /// What it is, for help texts and docs.
    pub describes: &'static str,
    pub change_unit: ChangeUnit,
    /// The input for one path.
    pub input: fn(PathBuf) -> Input,
}

/// Every input kind Ferry reads, with the same name everywhere.
pub static KINDS: [Kind; 6] = [
    Kind {
        flag: "--manifest",
        config_key: "manifests",
        describes: "kpromo plain manifest (registries + images)",
        change_unit: ChangeUnit::File,
        input: Input::KpromoManifest,
    },
    Kind {
        flag: "--thin-manifest-dir",
        config_key: "thin-manifest-dirs",
        describes: "kpromo thin manifests: manifests/<sub>/promoter-manifest.yaml + images/<sub>/images.yaml",
        change_unit: ChangeUnit::Subproject,
        input: Input::KpromoThinDir,
    },
    Kind {
        flag: "--images-list",
        config_key: "images-lists",
        describes: "Rancher image-mirror images-list",
        change_unit: ChangeUnit::File,
        input: images_list,
    },
    Kind {
        flag: "--charts-sync",
        config_key: "charts-sync",
        describes: "Rancher charts sync config naming dockerToPrime.yaml and stagingToPrime.yaml",
        change_unit: ChangeUnit::File,
        input: Input::ChartsSync,
    },
    Kind {
        flag: "--rancher-config",
        config_key: "rancher-configs",
        describes: "Rancher image-mirror config.yaml",
        change_unit: ChangeUnit::File,
        input: Input::RancherConfig,
    },
    Kind {
        flag: "--regsync",
        config_key: "regsync-yamls",
        describes: "regclient regsync.yaml (image and repository entries)",
        change_unit: ChangeUnit::File,
        input: Input::Regsync,
    },
];

fn images_list(file: PathBuf) -> Input {
    Input::ImagesList { file, target: None }
}

/// The kind of `input`.
pub fn kind_of(input: &Input) -> &'static Kind {
    let index = match input {
        Input::KpromoManifest(_) => 0,
        Input::KpromoThinDir(_) => 1,
        Input::ImagesList { .. } => 2,
        Input::ChartsSync(_) => 3,
        Input::RancherConfig(_) => 4,
        Input::Regsync(_) => 5,
    };
    &KINDS[index]
}

/// The inputs `paths` name, by kind: `(config key or flag, paths)` pairs as a command line or
/// `pipeline.manifests` gives them, in the table's order.
pub fn inputs_from<'a>(named: impl IntoIterator<Item = (&'a str, &'a [PathBuf])>) -> Vec<Input> {
    let named: Vec<(&str, &[PathBuf])> = named.into_iter().collect();
    let mut out = Vec::new();
    for kind in &KINDS {
        for (name, paths) in &named {
            if *name == kind.flag || *name == kind.config_key {
                out.extend(paths.iter().cloned().map(kind.input));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_named_once_and_maps_back_to_itself() {
        for (i, kind) in KINDS.iter().enumerate() {
            let input = (kind.input)(PathBuf::from("x"));
            assert!(std::ptr::eq(kind_of(&input), &KINDS[i]), "{}", kind.flag);
            assert!(kind.flag.starts_with("--"));
            assert_eq!(
                KINDS.iter().filter(|k| k.flag == kind.flag || k.config_key == kind.config_key).count(),
                1
            );
        }
        let inputs = inputs_from([
            ("regsync-yamls", &[PathBuf::from("r.yaml")][..]),
            ("--manifest", &[PathBuf::from("m.yaml")][..]),
        ]);
        assert_eq!(inputs, vec![Input::KpromoManifest("m.yaml".into()), Input::Regsync("r.yaml".into())]);
    }
}
