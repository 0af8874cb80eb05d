#!/usr/bin/env bash
# Vendors the web console's two libraries (Preact and htm, ES modules, no bundler) into
# gateway/console/vendor/, from the npm registry through npm's own client, each tarball checked
# against the sha512 integrity pinned here. The vendored files are committed: building or
# running the gateway needs neither Node nor the network. Run this only to change a version
# (update the pins below), or with --check to prove the committed files are what the pinned
# tarballs hold.
set -euo pipefail
cd "$(dirname "$0")/.."

# name version integrity (the registry's `dist.integrity`, checked on the downloaded tarball)
PACKAGES=(
    "preact 10.29.8 sha512-ej2aVZ+vZ8WO7tvlQWRM9N63A0KzF9q4mWJfDUHgYaIofWY9hu74QdnQrjoPMmZi2/nZ5gN0bJCQF49xQqx09Q=="
    "htm 3.1.1 sha512-983Vyg8NwUE7JkZ6NmOqpCZ+sh1bKv2iYTlUkzlWmA5JD2acKoxd4KVxbMmxX/85mtfdnDmTFoNKcg5DGAvxNQ=="
)
# tarball path -> vendored name, per package
declare -A FILES=(
    [preact]="package/dist/preact.module.js:preact.mjs package/hooks/dist/hooks.module.js:hooks.mjs package/LICENSE:LICENSE-preact"
    [htm]="package/dist/htm.module.js:htm.mjs package/LICENSE:LICENSE-htm"
)
VENDOR=gateway/console/vendor
check=false
[[ ${1:-} == --check ]] && check=true

log() { echo "vendor-console: $*" >&2; }
command -v npm >/dev/null || { log "npm is needed to fetch the packages (apt-get install npm)"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$work/out
mkdir -p "$out"
for entry in "${PACKAGES[@]}"; do
    read -r name version integrity <<<"$entry"
    (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
    tarball=$work/$name-$version.tgz
    actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
    if [[ $actual != "$integrity" ]]; then
        log "$name@$version: integrity mismatch (pinned $integrity, got $actual)"
        exit 1
    fi
    mkdir -p "$work/$name"
    tar -xzf "$tarball" -C "$work/$name"
    for pair in ${FILES[$name]}; do
        cp "$work/$name/${pair%%:*}" "$out/${pair##*:}"
    done
    log "$name@$version verified"
done
# Preact's hooks import the bare specifier "preact"; a browser without an import map (an
# inline script the console's CSP forbids) needs a path.
sed -i 's/from"preact"/from"\.\/preact.mjs"/g; s/from "preact"/from ".\/preact.mjs"/g' "$out/hooks.mjs"
grep -q 'preact.mjs' "$out/hooks.mjs" || { log "hooks.mjs: the preact import was not rewritten"; exit 1; }
{
    echo "# Written by scripts/vendor-console.sh; checked by gateway/api's console tests."
    for entry in "${PACKAGES[@]}"; do read -r name version integrity <<<"$entry"; echo "# $name@$version $integrity"; done
    (cd "$out" && sha256sum -- *)
} > "$work/SHA256SUMS"
mv "$work/SHA256SUMS" "$out/SHA256SUMS"

if $check; then
    diff -r "$out" "$VENDOR" && log "vendored files match the pinned packages"
else
    rm -rf "$VENDOR"
    mkdir -p "$VENDOR"
    cp "$out"/* "$VENDOR"/
    log "vendored into $VENDOR"
fi
