#!/usr/bin/env bash
# Builds the browser page and harness (the training page and the kernel cases) to wasm32, then
# the JS bindings into web/pkg.
# Needs the wasm32-unknown-unknown target and wasm-bindgen-cli of the version Cargo.toml pins.
set -euo pipefail
cd "$(dirname "$0")"
version=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
    echo "installing wasm-bindgen-cli $version"
    cargo install --quiet wasm-bindgen-cli --version "$version"
fi
cargo build --quiet --release --target wasm32-unknown-unknown
wasm-bindgen --target web --no-typescript --out-dir pkg target/wasm32-unknown-unknown/release/wgformer_web.wasm
