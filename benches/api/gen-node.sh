#!/usr/bin/env bash
# Writes a libvirt test-driver node file with N running domains owned by tenant "demo" (snapgate
# owner metadata, one qcow2 disk each, so `auto` saves are internal snapshots), on stdout.
# With TENANTS > 1, domain i belongs to tenant bench-tNN with NN = i mod TENANTS instead.
#
#   benches/api/gen-node.sh 2000 > /tmp/node.xml
#   benches/api/gen-node.sh 5 100 > /tmp/host-20.xml     # domains 100 … 104 (one host of many)
#   benches/api/gen-node.sh 8000 0 16 > /tmp/node.xml    # 16 tenants, spread round-robin
#   virsh -c test:///tmp/node.xml list | wc -l
#
# Domain i is named bench-NNNNN and has the uuid b0000000-0000-4000-8000-<i as 12 digits>; the
# wrk scripts in lua/ compute the same uuids (keep the two in step).
set -euo pipefail

count=${1:?usage: gen-node.sh DOMAINS [FIRST] [TENANTS]}
first=${2:-0}
tenants=${3:-1}
[[ $count =~ ^[0-9]+$ && $count -ge 2 ]] || { echo "DOMAINS must be a number >= 2" >&2; exit 2; }
[[ $first =~ ^[0-9]+$ ]] || { echo "FIRST must be a number" >&2; exit 2; }
[[ $tenants =~ ^[0-9]+$ && $tenants -ge 1 ]] || { echo "TENANTS must be a number >= 1" >&2; exit 2; }

cat <<'HEAD'
<node>
  <cpu>
    <mhz>2400</mhz>
    <model>x86_64</model>
    <active>64</active>
    <nodes>1</nodes>
    <sockets>4</sockets>
    <cores>8</cores>
    <threads>2</threads>
  </cpu>
  <memory>1073741824</memory>
HEAD

# awk, not a shell loop: thousands of heredocs take seconds on a loaded machine.
awk -v count="$count" -v first="$first" -v tenants="$tenants" -v q="'" 'BEGIN {
  for (i = first; i < first + count; i++) {
    name = sprintf("bench-%05d", i)
    tenant = tenants == 1 ? "demo" : sprintf("bench-t%02d", i % tenants)
    printf "  <domain type=" q "test" q ">\n"
    printf "    <name>%s</name>\n", name
    printf "    <uuid>b0000000-0000-4000-8000-%012d</uuid>\n", i
    printf "    <metadata>\n"
    printf "      <snapgate:owner xmlns:snapgate=" q "https://snapgate.dev/xmlns/owner/1.0" q " tenant=" q "%s" q "/>\n", tenant
    printf "    </metadata>\n"
    printf "    <memory unit=" q "MiB" q ">64</memory>\n"
    printf "    <currentMemory unit=" q "MiB" q ">64</currentMemory>\n"
    printf "    <vcpu>1</vcpu>\n"
    printf "    <os><type arch=" q "x86_64" q ">hvm</type></os>\n"
    printf "    <devices>\n"
    printf "      <disk type=" q "file" q " device=" q "disk" q ">\n"
    printf "        <driver name=" q "qemu" q " type=" q "qcow2" q "/>\n"
    printf "        <source file=" q "/var/lib/snapgate-bench/%s.qcow2" q "/>\n", name
    printf "        <target dev=" q "vda" q " bus=" q "virtio" q "/>\n"
    printf "      </disk>\n"
    printf "    </devices>\n"
    printf "  </domain>\n"
  }
}'
echo '</node>'
