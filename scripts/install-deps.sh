#!/usr/bin/env bash
# Installs everything snapgate needs to build and test on Debian 12 (bookworm), as root.
#
# Idempotent and fast when nothing is missing: it asks dpkg what is installed and runs
# `apt-get update` only when something must be installed. QEMU and libvirt come from
# bookworm-backports because the preinstalled qemu-utils already does, and apt refuses to
# mix QEMU versions.
set -euo pipefail

BACKPORTS_LIST=/etc/apt/sources.list.d/backports.list
BACKPORTS_LINE='deb http://deb.debian.org/debian bookworm-backports main'

# From bookworm-backports (libvirt 11.x, QEMU 10.x). The storage driver gives the `dir` pools
# through which snapgate makes, measures and removes a host's state files.
BACKPORTS_PACKAGES=(
    libvirt-dev libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu
    libvirt-daemon-driver-storage qemu-system-x86 qemu-utils
)
# From the default suites. python3-venv: the test suite's Python tools live in a venv (below).
# redis-server/redis-tools: the single node and the loopback cluster of the tests; haproxy: the
# load balancer of the scale-out tests; systemd (systemd-analyze) and adduser: the Debian
# package test checks the unit and installs the package. chromium/chromium-driver: the web
# console's browser tests (headless Chromium driven through WebDriver).
PLAIN_PACKAGES=(pkg-config wrk cpio python3 python3-venv redis-server redis-tools haproxy
    systemd adduser chromium chromium-driver)

log() { echo "install-deps: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (it installs Debian packages)"
    exit 1
fi

# Prints the packages of "$@" that dpkg does not report as installed.
missing_packages() {
    local pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        [[ $status == installed ]] || echo "$pkg"
    done
}

backports_enabled() {
    grep -rqsE '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/
}

mapfile -t missing_backports < <(missing_packages "${BACKPORTS_PACKAGES[@]}")
mapfile -t missing_plain < <(missing_packages "${PLAIN_PACKAGES[@]}")

if (( ${#missing_backports[@]} + ${#missing_plain[@]} > 0 )); then
    if ! backports_enabled; then
        log "adding bookworm-backports ($BACKPORTS_LIST)"
        echo "$BACKPORTS_LINE" > "$BACKPORTS_LIST"
    fi
    log "installing: ${missing_backports[*]} ${missing_plain[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    if (( ${#missing_backports[@]} > 0 )); then
        apt-get install -y -qq --no-install-recommends -t bookworm-backports "${missing_backports[@]}"
    fi
    if (( ${#missing_plain[@]} > 0 )); then
        apt-get install -y -qq --no-install-recommends "${missing_plain[@]}"
    fi
else
    log "Debian packages present"
fi

# The policy plugins build for wasm32-wasip2.
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        log "adding rust target wasm32-wasip2"
        rustup target add wasm32-wasip2
    fi
    # The test suite checks formatting and lints (a minimal rustup profile lacks both).
    installed_components=$(rustup component list --installed)
    for component in rustfmt clippy; do
        if ! grep -q "^$component" <<<"$installed_components"; then
            log "adding rust component $component"
            rustup component add "$component"
        fi
    done
else
    log "rustup not found: install Rust (https://rustup.rs) and rerun for the wasm32-wasip2 target"
    exit 1
fi

# The test suite's Python tools (schemathesis, openapi-spec-validator), pinned in
# tests/fuzz/requirements.txt, in a venv at .venv/ made with Debian's python3. Rebuilt only when
# the requirements change (their hash is kept beside the venv).
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$REPO_ROOT/.venv
REQUIREMENTS=$REPO_ROOT/tests/fuzz/requirements.txt
wanted=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/st || $(cat "$VENV/requirements.sha256" 2>/dev/null) != "$wanted" ]]; then
    log "installing the Python test tools into $VENV"
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --require-virtualenv \
        -r "$REQUIREMENTS"
    echo "$wanted" > "$VENV/requirements.sha256"
else
    log "Python test tools present ($VENV)"
fi
