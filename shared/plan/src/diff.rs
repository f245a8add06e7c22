//! Diff-only planning: only what a change added.

use ferry_model::{DesiredState, Destination, Entry, Source, Tag, TagOrDigest};
use rustc_hash::{FxHashMap, FxHashSet};

/// The entries of `head` whose (source, digest or tag, destination, tag) combinations are not
/// in `base`: new digests, new tags on old digests, and anything aimed at new destinations.
/// A tag moved to another digest appears as the new digest with that tag, which the planner
/// then reports as a conflict at the destination.
pub fn diff(base: &DesiredState, head: &DesiredState) -> DesiredState {
    type Key<'a> = (&'a [Source], &'a TagOrDigest, &'a [Destination]);
    let mut known: FxHashMap<Key<'_>, FxHashSet<Option<&Tag>>> = FxHashMap::default();
    for entry in &base.entries {
        let tags = known.entry((&entry.sources, &entry.pin, &entry.destinations)).or_default();
        if entry.tags.is_empty() {
            tags.insert(None);
        }
        tags.extend(entry.tags.iter().map(Some));
    }
    // The head's notices stand (its invalid entries are reported); the base's do not matter: an
    // invalid entry there counts as absent, so the commit that repairs it plans the repair.
    let mut out = DesiredState { notices: head.notices.clone(), ..DesiredState::default() };
    for entry in &head.entries {
        let Some(old) = known.get(&(&*entry.sources, &entry.pin, &*entry.destinations)) else {
            out.entries.push(entry.clone());
            continue;
        };
        if entry.tags.is_empty() {
            if !old.contains(&None) {
                out.entries.push(entry.clone());
            }
            continue;
        }
        let new_tags: Vec<Tag> = entry.tags.iter().filter(|t| !old.contains(&Some(*t))).cloned().collect();
        if !new_tags.is_empty() {
            out.entries.push(Entry { tags: new_tags, ..entry.clone() });
        }
    }
    out
}
