#!/usr/bin/env bash
# Builds the tiny real-VM test guest once and caches it in OUT_DIR:
#   OUT_DIR/vmlinuz      Debian cloud kernel (follows the metapackage linux-image-cloud-amd64)
#   OUT_DIR/initrd.img   busybox-static + an init that prints `snapgate-counter N` to the
#                        serial console every half second. The counter lives in guest RAM, so
#                        after a revert it shows which RAM the guest runs on.
#
# Usage:
#   build-guest.sh OUT_DIR                          build (or reuse) kernel and initramfs
#   build-guest.sh OUT_DIR --disk FORMAT PATH [SIZE] also create a blank disk image
#                                                   (FORMAT qcow2|raw, SIZE default 64M)
#
# Safe to run from several processes at once (flock on OUT_DIR/.lock).
set -euo pipefail

# Bump when the recipe below changes so cached guests are rebuilt.
RECIPE_VERSION=1

log() { echo "build-guest: $*" >&2; }
usage() { log "usage: $0 OUT_DIR [--disk qcow2|raw PATH [SIZE]]"; exit 2; }

[[ $# -ge 1 ]] || usage
OUT_DIR=$1
shift

mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
exec 9>"$OUT_DIR/.lock"
flock 9

# Prints the name of a package the metapackage depends on, e.g. linux-image-6.1.0-56-cloud-amd64.
kernel_package() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-cloud-amd64$/ { print $2; exit }'
}

# apt-get download needs package lists; a fresh machine may have none yet.
ensure_apt_lists() {
    if [[ -z $(kernel_package) ]] || ! apt-cache show busybox-static >/dev/null 2>&1; then
        log "package lists lack the kernel or busybox-static; running apt-get update"
        apt-get update -qq
    fi
}

build_guest() {
    command -v cpio >/dev/null || { log "cpio is missing: run scripts/install-deps.sh"; exit 1; }
    ensure_apt_lists
    local kpkg work
    kpkg=$(kernel_package)
    [[ -n $kpkg ]] || { log "cannot resolve the kernel from linux-image-cloud-amd64"; exit 1; }
    if [[ -f $OUT_DIR/guest.stamp && $(cat "$OUT_DIR/guest.stamp") == "$RECIPE_VERSION $kpkg" \
        && -s $OUT_DIR/vmlinuz && -s $OUT_DIR/initrd.img ]]; then
        return 0
    fi

    log "building guest from $kpkg and busybox-static into $OUT_DIR"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # apt-get download writes into the current directory; _apt needs to write there.
    chmod 0777 "$work"
    (cd "$work" && apt-get download -qq "$kpkg" busybox-static)
    dpkg -x "$work"/linux-image-*.deb "$work/kernel"
    dpkg -x "$work"/busybox-static_*.deb "$work/busybox"

    local root=$work/initramfs
    mkdir -p "$root"/{bin,dev,proc,sys}
    cp "$work/busybox/bin/busybox" "$root/bin/busybox"
    cat > "$root/init" <<'INIT'
#!/bin/busybox sh
# The kernel may start us without a console: mount devtmpfs and talk to the serial port.
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t proc proc /proc
exec >/dev/ttyS0 2>&1
n=0
while true; do
    n=$((n + 1))
    echo "snapgate-counter $n"
    /bin/busybox sleep 0.5
done
INIT
    chmod 0755 "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$work/initrd.img"

    # Files are replaced atomically: a guest may be booting from the old ones.
    install -m 0644 "$work"/kernel/boot/vmlinuz-* "$OUT_DIR/vmlinuz.new"
    install -m 0644 "$work/initrd.img" "$OUT_DIR/initrd.img.new"
    mv -f "$OUT_DIR/vmlinuz.new" "$OUT_DIR/vmlinuz"
    mv -f "$OUT_DIR/initrd.img.new" "$OUT_DIR/initrd.img"
    echo "$RECIPE_VERSION $kpkg" > "$OUT_DIR/guest.stamp"
    rm -rf "$work"
    trap - EXIT
    log "guest ready: $(du -h "$OUT_DIR/vmlinuz" "$OUT_DIR/initrd.img" | awk '{print $2 " " $1}' | xargs)"
}

create_disk() {
    local format=$1 path=$2 size=${3:-64M}
    case $format in qcow2|raw) ;; *) log "unknown disk format '$format'"; exit 2 ;; esac
    qemu-img create -q -f "$format" "$path" "$size"
    # QEMU runs as libvirt-qemu; libvirt chowns the file, the directory must let it through.
    chmod 0644 "$path"
}

# A cached guest is reused without asking apt (fast); delete OUT_DIR to pick up a newer kernel.
if [[ -f $OUT_DIR/guest.stamp && -s $OUT_DIR/vmlinuz && -s $OUT_DIR/initrd.img \
    && $(cut -d' ' -f1 "$OUT_DIR/guest.stamp") == "$RECIPE_VERSION" ]]; then
    :
else
    build_guest
fi

if [[ $# -gt 0 ]]; then
    [[ $1 == --disk && $# -ge 3 ]] || usage
    create_disk "$2" "$3" "${4:-}"
fi
