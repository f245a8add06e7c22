//! Which formats Ferry writes its signatures and attestations in (`signing.formats`).
//!
//! - `legacy`: cosign's `.sig` and `.att` tags (simple signing layers, DSSE layers), which
//!   cosign 2 reads, and older verifiers;
//! - `bundle`: Sigstore bundle referrers (OCI 1.1 `subject`), which cosign 3 reads first, and
//!   cosign 4 only.
//!
//! `[legacy, bundle]` (the default) verifies with cosign 2 and 3; `[bundle]` is the cosign-v4
//! path; `[legacy]` serves old verifiers. Status and reconcile count a digest signed or attested
//! in every format the setting names.

/// The formats to write (at least one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Formats {
    pub legacy: bool,
    pub bundle: bool,
}

impl Default for Formats {
    fn default() -> Self {
        Self { legacy: true, bundle: true }
    }
}

impl Formats {
    pub const NAMES: [&'static str; 2] = ["legacy", "bundle"];

    /// The formats `names` list; an unknown, repeated or missing name is an error naming it.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut formats = Self { legacy: false, bundle: false };
        for name in names {
            let slot = match name {
                "legacy" => &mut formats.legacy,
                "bundle" => &mut formats.bundle,
                other => return Err(format!("{other:?} is not one of legacy, bundle")),
            };
            if *slot {
                return Err(format!("{name} is listed twice"));
            }
            *slot = true;
        }
        if !(formats.legacy || formats.bundle) {
            return Err("name at least one of legacy, bundle".into());
        }
        Ok(formats)
    }

    /// `[legacy, bundle]`, as the setting is written.
    pub fn names(self) -> Vec<&'static str> {
        [(self.legacy, "legacy"), (self.bundle, "bundle")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_read_as_written() {
        assert_eq!(Formats::parse(["legacy", "bundle"]), Ok(Formats::default()));
        assert_eq!(Formats::parse(["bundle"]), Ok(Formats { legacy: false, bundle: true }));
        assert_eq!(Formats::parse(["legacy"]).map(Formats::names), Ok(vec!["legacy"]));
        assert!(Formats::parse([]).unwrap_err().contains("at least one"));
        assert!(Formats::parse(["bundle", "bundle"]).unwrap_err().contains("twice"));
        assert!(Formats::parse(["sigstore"]).unwrap_err().contains("\"sigstore\" is not one of"));
    }
}
