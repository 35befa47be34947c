#!/usr/bin/env bash
# The whole test suite, on both engines: starts a throwaway PostgreSQL 15
# when none is reachable (see with-postgres.sh) and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/with-postgres.sh cargo test --workspace --locked "$@"
