#!/usr/bin/env bash
# Builds the tiny real-VM test guest once and caches it in OUT_DIR:
#   OUT_DIR/vmlinuz      Debian cloud kernel (follows the metapackage linux-image-cloud-amd64)
#   OUT_DIR/initrd.img   busybox-static + an init that prints `snapgate-counter N` to the
#                        serial console every half second. The counter lives in guest RAM, so
#                        after a revert it shows which RAM the guest runs on.
#                        Two kernel command-line options serve the pause benchmark
#                        (benches/benches/pause.rs): `snapgate.fill_mib=N` copies the first N
#                        MiB of the disk (the bench writes random data there) into RAM (a
#                        tmpfs) before counting and prints `snapgate-filled N`; `snapgate.ticks` prints `snapgate-tick UPTIME` to
#                        the second serial port (ttyS1) every ~10 ms, so a host reading it sees
#                        when the vCPU stopped.
#
# Usage:
#   build-guest.sh OUT_DIR                          build (or reuse) kernel and initramfs
#   build-guest.sh OUT_DIR --disk FORMAT PATH [SIZE] also create a blank disk image
#                                                   (FORMAT qcow2|raw, SIZE default 64M)
#
# Safe to run from several processes at once (flock on OUT_DIR/.lock).
set -euo pipefail

# Bump when the recipe below changes so cached guests are rebuilt.
RECIPE_VERSION=4

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
    # The cloud kernel has virtio-blk as modules; `snapgate.fill_mib` reads the disk.
    mkdir -p "$root/modules"
    local module
    for module in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
        find "$work/kernel/lib/modules" -name "$module.ko*" -exec cp {} "$root/modules/" \;
    done
    cat > "$root/init" <<'INIT'
#!/bin/busybox sh
# The kernel may start us without a console: mount devtmpfs and talk to the serial port.
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t proc proc /proc
exec >/dev/ttyS0 2>&1
fill_mib=
ticks=
for word in $(/bin/busybox cat /proc/cmdline); do
    case $word in
        snapgate.fill_mib=*) fill_mib=${word#*=} ;;
        snapgate.ticks) ticks=1 ;;
    esac
done
# Random data, so a memory image cannot be smaller than the RAM it saves (QEMU skips zero
# pages). It comes from the disk: /dev/urandom under TCG makes ~5 MB/s. The initramfs root
# is capped at half the RAM: fill a tmpfs of its own. The page cache is dropped after.
if [ -n "$fill_mib" ]; then
    for module in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
        /bin/busybox insmod /modules/$module.ko*
    done
    tries=0
    while [ ! -b /dev/vda ] && [ $tries -lt 100 ]; do
        /bin/busybox sleep 0.1
        tries=$((tries + 1))
    done
    /bin/busybox mkdir -p /fill
    /bin/busybox mount -t tmpfs -o size=$((fill_mib + 1))m tmpfs /fill
    /bin/busybox dd if=/dev/vda of=/fill/random bs=1M count="$fill_mib" 2>/dev/null
    echo 3 >/proc/sys/vm/drop_caches
    echo "snapgate-filled $fill_mib"
fi
# The guest's clock (/proc/uptime, 10 ms steps) every ~10 ms without forking: `read -t` on a
# pipe nobody writes to is the sleep. A pause shows on the host as a gap between ticks.
if [ -n "$ticks" ]; then
    /bin/busybox mkfifo /ticks.idle
    (
        exec 3<>/ticks.idle
        while true; do
            read -r up _ </proc/uptime
            echo "snapgate-tick $up"
            read -r -t 0.01 -u 3 _
        done
    ) >/dev/ttyS1 2>&1 &
fi
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
