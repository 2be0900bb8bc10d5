#!/usr/bin/env bash
# Run Kiln's whole test suite (sets the machine up first if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
