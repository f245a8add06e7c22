#!/usr/bin/env bash
# The Ferry demo, from a fresh clone: installs what is missing (docker-registry, skopeo),
# builds Ferry, starts local registries, seeds images and prints a real plan.
# Pass --keep to leave the registries running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-deps
cargo build --quiet -p ferry-cli -p ferry-testkit --bins
exec cargo run --quiet -p ferry-testkit --bin ferry-demo -- "$@"
