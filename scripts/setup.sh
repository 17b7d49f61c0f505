#!/usr/bin/env bash
# Installs everything gendd needs on a fresh Debian/Ubuntu machine with Python >= 3.10:
# the Fashion-MNIST data package, a CPU build of PyTorch (pinned: a loose spec pulls a
# multi-GB CUDA build), and gendd itself with its test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PY=${PYTHON:-python3}
# tcmalloc, which the gendd command preloads where it is installed (gendd/utils/malloc.py: DM
# about twice as fast); optional: without it gendd runs with the system's malloc.
has_tcmalloc() {
  "$PY" -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('tcmalloc_minimal') is None)"
}
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || ! has_tcmalloc; then
  $SUDO apt-get update -qq || true
fi
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
fi
if ! has_tcmalloc; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4 \
    || echo "setup: libtcmalloc-minimal4 not installed; gendd runs with the system's malloc"
fi
"$PY" -m pip install -q --disable-pip-version-check "torch==${GENDD_TORCH_VERSION:-2.13.0}"
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
