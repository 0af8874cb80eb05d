#!/usr/bin/env bash
# Builds the snapgate Debian package: the binary, the systemd unit, the example configuration
# as a conffile (/etc/snapgate/snapgate.toml), man pages and shell completions generated from
# the CLI's own definitions, and the maintainer scripts that make the system user and
# /var/lib/snapgate. Plain dpkg-deb: nothing to install beyond Debian's dpkg.
#
#   scripts/package-deb.sh                     release build, version from Cargo.toml
#   scripts/package-deb.sh --binary PATH       package an already built binary (the tests do)
#       [--version V] [--out DIR] [--uncompressed]
set -euo pipefail
cd "$(dirname "$0")/.."

binary="" version="" out="target/debian" compress="-Zxz"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        # The tests package a debug binary (140 MB): compressing it would cost a minute.
        --uncompressed) compress="-Znone"; shift ;;
        *) echo "package-deb: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -z "$binary" ]; then
    cargo build --locked --release -p snapgate
    binary=target/release/snapgate
fi
[ -n "$version" ] || version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -D -m 0755 "$binary" "$root/usr/bin/snapgate"
install -D -m 0644 deploy/debian/snapgate.service "$root/lib/systemd/system/snapgate.service"
# The example, with the data under /var/lib/snapgate (the unit's state directory).
install -d "$root/etc/snapgate"
sed 's|^data_dir = "data" |data_dir = "/var/lib/snapgate"|' deploy/snapgate.example.toml \
    > "$root/etc/snapgate/snapgate.toml"
grep -q '^data_dir = "/var/lib/snapgate"' "$root/etc/snapgate/snapgate.toml"
install -d "$root/usr/share/man/man1"
"$binary" manpages "$root/usr/share/man/man1"
gzip -9n "$root"/usr/share/man/man1/*.1
install -d "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
"$binary" completions bash > "$root/usr/share/bash-completion/completions/snapgate"
"$binary" completions zsh > "$root/usr/share/zsh/vendor-completions/_snapgate"
"$binary" completions fish > "$root/usr/share/fish/vendor_completions.d/snapgate.fish"
install -D -m 0644 README.md "$root/usr/share/doc/snapgate/README.md"
install -D -m 0644 docs/DEPLOY.md "$root/usr/share/doc/snapgate/DEPLOY.md"

install -d "$root/DEBIAN"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$root/DEBIAN/"
echo /etc/snapgate/snapgate.toml > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: snapgate
Version: $version
Architecture: $arch
Maintainer: snapgate developers <snapgate@localhost>
Installed-Size: $size
Depends: libvirt0, adduser, libc6
Recommends: libvirt-clients
Section: admin
Priority: optional
Homepage: https://github.com/snapgate/snapgate
Description: live VM states (snapshots with RAM) for multi-tenant clouds
 snapgate serves a REST API to save, list, apply and delete states of running
 VMs, RAM included, on libvirt hosts, with exact per-tenant quotas (Redis) and
 WebAssembly policy plugins.
CONTROL

mkdir -p "$out"
deb="$out/snapgate_${version}_${arch}.deb"
dpkg-deb --root-owner-group "$compress" --build "$root" "$deb" >/dev/null
echo "$deb"
