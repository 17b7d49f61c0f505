#!/usr/bin/env bash
# Installs everything gendd needs on a fresh Debian/Ubuntu machine, into a virtual environment
# .venv in the checkout (so it works with Debian's own, externally managed python3 too): the
# Fashion-MNIST data package, a CPU build of PyTorch (pinned: a loose spec pulls a multi-GB CUDA
# build), and gendd itself with its test extras. Optional system packages: tcmalloc, which the
# gendd command preloads where installed (refinement about twice as fast), and Chromium, in
# which a test opens the run report. Safe to run again. PYTHON picks the interpreter (>= 3.10).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PY=${PYTHON:-python3}
apt_install() {
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
has_tcmalloc() {
  "$PY" -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('tcmalloc_minimal') is None)"
}
has_venv() { "$PY" -c "import ensurepip, venv" 2>/dev/null; }
missing=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
has_tcmalloc || missing+=(libtcmalloc-minimal4)
command -v chromium >/dev/null || missing+=(chromium)
has_venv || missing+=("python3-venv")
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  $SUDO apt-get update -qq || true
  for package in "${missing[@]}"; do
    apt_install "$package" || echo "setup: $package not installed (optional unless named below)"
  done
fi
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
  || echo "setup: no Fashion-MNIST package; tests that need the real data skip"
has_venv || { echo "setup: $PY cannot make a virtual environment (install python3-venv)"; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==${GENDD_TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
echo "setup: ready; run gendd as .venv/bin/gendd (or: source .venv/bin/activate)"
