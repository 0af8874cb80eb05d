#!/usr/bin/env bash
# A second, independent libvirt host on this machine for the real-VM tests: the session
# daemon of an unprivileged user (default `snapgate-hostb`), with its own domains, storage
# pools and QEMU processes (running as that user, under TCG). Root reaches it through a remote
# URI over the daemon's unix socket, which this script prints on stdout:
#
#   qemu+unix:///session?socket=/run/user/<uid>/libvirt/libvirt-sock
#
# Idempotent and safe to run from several processes at once: creates the user and its runtime
# directory if missing, starts the daemon if it does not run (also after a test stopped it),
# and waits until it answers. Needs root and the packages of scripts/install-deps.sh.
set -euo pipefail

USER_NAME=${SNAPGATE_SECOND_HOST_USER:-snapgate-hostb}
WAIT_SECONDS=${SNAPGATE_LIBVIRTD_WAIT:-30}

log() { echo "second-host-up: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (it creates a user and starts its daemon)"
    exit 1
fi
if ! command -v libvirtd >/dev/null 2>&1; then
    "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../install-deps.sh"
fi

exec 9>/run/snapgate-second-host-up.lock
flock -w $((WAIT_SECONDS * 4)) 9 || { log "lock held too long"; exit 1; }

if ! id -u "$USER_NAME" >/dev/null 2>&1; then
    log "creating user $USER_NAME"
    useradd --create-home --shell /usr/sbin/nologin "$USER_NAME"
fi
USER_UID=$(id -u "$USER_NAME")
HOME_DIR=$(getent passwd "$USER_NAME" | cut -d: -f6)
RUNTIME_DIR=/run/user/$USER_UID
SOCKET=$RUNTIME_DIR/libvirt/libvirt-sock
URI="qemu+unix:///session?socket=$SOCKET"

install -d -o "$USER_NAME" -g "$USER_NAME" -m 0700 "$RUNTIME_DIR"
# Where the tests put this host's guests; its state directory is made by libvirt (a pool).
install -d -o "$USER_NAME" -g "$USER_NAME" -m 0755 "$HOME_DIR" "$HOME_DIR/runs"

answers() { virsh -c "$URI" list --name >/dev/null 2>&1; }

# Only a live (non-zombie) daemon of that user counts.
running() {
    local pid
    for pid in $(pgrep -u "$USER_UID" -x libvirtd); do
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] && return 0
    done
    return 1
}

if ! answers; then
    # A daemon whose socket is gone (its runtime directory was removed under it) can never
    # answer again: stop it so a fresh one can take its place.
    if running && [[ ! -S $SOCKET ]]; then
        log "the session libvirtd of $USER_NAME lost its socket; restarting it"
        pkill -u "$USER_UID" -x libvirtd || true
        for _ in $(seq 50); do running || break; sleep 0.1; done
        pkill -KILL -u "$USER_UID" -x libvirtd || true
    fi
    if ! running; then
        log "starting the session libvirtd of $USER_NAME"
        # setpriv, not su: no PAM session, nothing else of root's environment leaks in. The
        # daemon must not inherit fd 9 (the lock would live as long as it does).
        setpriv --reuid="$USER_UID" --regid="$(id -g "$USER_NAME")" --init-groups \
            env -i HOME="$HOME_DIR" USER="$USER_NAME" XDG_RUNTIME_DIR="$RUNTIME_DIR" \
            PATH=/usr/sbin:/usr/bin:/sbin:/bin libvirtd -d 9>&-
    fi
    deadline=$((SECONDS + WAIT_SECONDS))
    until answers; do
        if (( SECONDS >= deadline )); then
            log "$URI did not answer within ${WAIT_SECONDS}s"
            virsh -c "$URI" list >&2 || true
            exit 1
        fi
        sleep 0.2
    done
    log "$URI is up"
fi
echo "$URI"
