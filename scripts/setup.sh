#!/usr/bin/env bash
# Installs everything gendd needs on a fresh Debian/Ubuntu machine with Python >= 3.10:
# the Fashion-MNIST data package, a CPU build of PyTorch (pinned: a loose spec pulls a
# multi-GB CUDA build), and gendd itself with its test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  $SUDO apt-get update -qq || true
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
fi
PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check "torch==${GENDD_TORCH_VERSION:-2.13.0}"
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
