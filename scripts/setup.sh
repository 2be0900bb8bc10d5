#!/usr/bin/env bash
# Set up Kiln on a Debian machine: Debian packages, then a virtualenv in .venv
# with Kiln and its test dependencies. Safe to run again; does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages Kiln's tools and tests use:
#   python3-venv      the virtualenv below
#   gcc musl-tools    build the test corpus (glibc and musl static programs); gcc and
#                     libc6-dev also build vkernel's native syscall gate (vkernel/_gate.c,
#                     compiled by the pip install below)
#   binutils          as/objdump for instruction tests
#   skopeo umoci      read our output images with real OCI tools in tests
#   qemu-user         qemu-x86_64, the comparison point in bench/
#   apache2-utils     ab, the HTTP load generator of bench/servers.py
#   zstd              zstd-compressed layers in tests
#   dpkg apt          apt-get download + dpkg-deb -x for the busybox-static example
#   debootstrap       the Debian minbase image of tests/test_debian_image.py
#   libseccomp2       vkernel's seccomp filter (vkernel/seccomp.py)
#   util-linux        mount/umount/unshare for the native side of differential tests
#   containerd runc   kiln-oci's end-to-end tests and bench/oci.py: containerd 1.6 drives
#                     kiln-oci through its own runc shim; runc is the native comparison
#   containernetworking-plugins iproute2
#                     the pod network (bridge, host-local) of the CRI test, tests/test_oci_cri.py
#   docker.io         dockerd --runtime kiln in tests/test_oci_docker.py (not started here)
#   chromium          a real headless browser for the kiln serve status page (tests/test_sandbox_server.py)
DEBS=(python3 python3-venv python3-pip apache2-utils gcc libc6-dev musl-tools binutils skopeo umoci qemu-user zstd dpkg apt ca-certificates debootstrap libseccomp2 util-linux containerd runc containernetworking-plugins iproute2 docker.io chromium)

missing=()
for p in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# apt-get download (used for the example image) needs package lists.
if ! apt-cache show busybox-static >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PY --version)" >&2
    $PY -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'
echo "setup: done (.venv/bin/kiln, .venv/bin/recompile)" >&2
