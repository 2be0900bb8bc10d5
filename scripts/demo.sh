#!/usr/bin/env bash
# The main job on the built-in example: build the busybox image from Debian's
# busybox-static package, list its programs, recompile it, and run programs
# from the recompiled image. Outputs go to the cache directory ($KILN_CACHE or
# ~/.cache/kiln/demo), never into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/kiln ] || scripts/setup.sh
BIN=.venv/bin
DEMO="${KILN_CACHE:-$HOME/.cache/kiln}/demo"
rm -rf "$DEMO" && mkdir -p "$DEMO"

echo "== building the example image from Debian's busybox-static" >&2
$BIN/python -m examples.busybox.build "$DEMO/busybox-image"
# Hold a lease on each output until the demo ends, as Kiln's own commands do, so that
# cache eviction (docs/architecture.md, "Caches") leaves them alone meanwhile.
exec {IMAGE_LEASE}<"$DEMO/busybox-image" && flock -s "$IMAGE_LEASE"

echo "== kiln inspect: every ELF in the image" >&2
$BIN/kiln inspect "$DEMO/busybox-image" | tail -n 3

echo "== recompile: every program to WebAssembly, compiled ahead of time" >&2
$BIN/recompile "$DEMO/busybox-image" -o "$DEMO/busybox-kiln"
exec {KILN_LEASE}<"$DEMO/busybox-kiln" && flock -s "$KILN_LEASE"

echo "== the output image, read by skopeo" >&2
skopeo inspect "oci:$DEMO/busybox-kiln:latest" | $BIN/python -c \
  'import json,sys; d=json.load(sys.stdin); print("layers:", len(d["Layers"]), " labels:", d["Labels"])'

if $BIN/kiln run --help >/dev/null 2>&1; then
    echo "== kiln run: the recompiled busybox" >&2
    $BIN/kiln run "$DEMO/busybox-kiln" -- /bin/echo "hello from recompiled busybox"
    $BIN/kiln run "$DEMO/busybox-kiln" -- /bin/sh -c 'seq 1 5 | sort -r | head -n 2'
fi
