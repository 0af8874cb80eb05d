#!/usr/bin/env bash
# Builds the policy plugins (plugins/, its own cargo workspace) for wasm32-wasip2 in release
# and copies the components to plugins/dist/. Idempotent: run it as often as you like.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
plugins="$root/plugins"
dist="$plugins/dist"
target_triple=wasm32-wasip2

if ! rustup target list --installed | grep -qx "$target_triple"; then
    rustup target add "$target_triple"
fi

# The plugins workspace has its own target dir (plugins/target), whatever the caller exported.
unset CARGO_TARGET_DIR
cargo build --manifest-path "$plugins/Cargo.toml" --workspace --release --target "$target_triple"

mkdir -p "$dist"
out="$plugins/target/$target_triple/release"
count=0
for wasm in "$out"/*.wasm; do
    name="$(basename "$wasm" .wasm)"
    # Crate names use '-', cargo writes '_': publish under the plugin's own name.
    name="${name//_/-}"
    # Only copy when changed, so file times stay put (and the gateway's cache stays warm).
    if ! cmp -s "$wasm" "$dist/$name.wasm"; then
        cp "$wasm" "$dist/$name.wasm.tmp"
        mv "$dist/$name.wasm.tmp" "$dist/$name.wasm"
    fi
    count=$((count + 1))
done
echo "build-plugins: $count components in $dist"
ls -l "$dist"
