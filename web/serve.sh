#!/usr/bin/env bash
# Builds the page (web/build.sh) and serves the repository on 127.0.0.1 (default port 8000):
# open the address it prints in a browser with WebGPU.
set -euo pipefail
cd "$(dirname "$0")"
./build.sh
exec node serve.mjs "${1:-8000}"
