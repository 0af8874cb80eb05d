#!/usr/bin/env bash
# Starts virtlogd and libvirtd without systemd (containers, CI) and waits until
# qemu:///system answers. Idempotent; safe to run from several processes at once.
#
# Guests must use <domain type='qemu'> (TCG): /dev/kvm exists on these machines but KVM
# does not work.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
URI=qemu:///system
WAIT_SECONDS=${SNAPGATE_LIBVIRTD_WAIT:-30}

log() { echo "libvirtd-up: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (qemu:///system needs the system daemons)"
    exit 1
fi

# `virsh list` answers in ~30 ms; `virsh version` takes ~4 s (it probes QEMU), so it is
# asked once, after a start, to prove the QEMU driver works.
answers() { virsh -c "$URI" list --name >/dev/null 2>&1; }

# Without udev, /dev/kvm stays root-only (0600). libvirt's QEMU probe can still open it (it
# keeps CAP_DAC_OVERRIDE), but its cache check asks whether the QEMU user (libvirt-qemu, group
# kvm) can; the two disagree, so libvirt re-probes QEMU on every call: ~4 s per `virsh
# version` or domain start, minutes on a loaded machine. udev's usual root:kvm 0660 ends
# that. KVM still does not work here; guests use TCG either way.
if [[ -c /dev/kvm ]] && getent group kvm >/dev/null \
    && [[ $(stat -c '%G %a' /dev/kvm) != "kvm 660" ]]; then
    log "giving /dev/kvm udev's usual root:kvm 0660 (stops libvirt re-probing QEMU)"
    chgrp kvm /dev/kvm
    chmod 0660 /dev/kvm
fi

# Fast path: already up, with the storage driver snapgate makes state files through. A
# daemon started before libvirt-daemon-driver-storage was installed lacks it until restarted.
if command -v virsh >/dev/null 2>&1 && answers; then
    if ! virsh -c "$URI" pool-list --all >/dev/null 2>&1; then
        log "libvirtd runs without its storage driver: install libvirt-daemon-driver-storage"
        log "(scripts/install-deps.sh) and restart libvirtd (QEMU guests keep running)"
        exit 1
    fi
    exit 0
fi

if ! command -v libvirtd >/dev/null 2>&1 || ! command -v virtlogd >/dev/null 2>&1; then
    log "libvirt is not installed; running install-deps.sh"
    "$HERE/../install-deps.sh"
fi

# Test processes start in parallel: one of them starts the daemons, the others wait for it.
# The daemons must not inherit fd 9: a flock belongs to the open file, so a daemon holding a
# copy would keep the lock for its whole life and every later caller would wait forever.
LOCK_SECONDS=$((WAIT_SECONDS * 4))
exec 9>/run/snapgate-libvirtd-up.lock
if ! flock -w "$LOCK_SECONDS" 9; then
    log "another libvirtd-up.sh held /run/snapgate-libvirtd-up.lock for ${LOCK_SECONDS}s"
    exit 1
fi

# A daemon killed with -9 can linger as an unreaped zombie, which `pgrep` still lists:
# only a live (non-zombie) process counts as running. Only root's count: the second test
# host (scripts/realvm/second-host-up.sh) runs its own, unprivileged libvirtd and virtlogd.
running() {
    local pid
    for pid in $(pgrep -u 0 -x "$1"); do
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] && return 0
    done
    return 1
}

if ! running virtlogd; then
    log "starting virtlogd"
    virtlogd -d 9>&-
fi
if ! running libvirtd; then
    log "starting libvirtd"
    libvirtd -d 9>&-
fi

deadline=$((SECONDS + WAIT_SECONDS))
until answers; do
    if (( SECONDS >= deadline )); then
        log "$URI did not answer within ${WAIT_SECONDS}s:"
        virsh -c "$URI" version >&2 || true
        exit 1
    fi
    sleep 0.2
done
if ! virsh -c "$URI" version >&2; then
    log "libvirtd answers but its QEMU driver does not"
    exit 1
fi
if ! virsh -c "$URI" pool-list --all >/dev/null; then
    log "libvirtd answers but has no storage driver (libvirt-daemon-driver-storage)"
    exit 1
fi
log "$URI is up"
