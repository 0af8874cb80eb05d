//! The libvirt domain XML of a test guest.

use std::path::Path;

use uuid::Uuid;

pub(crate) struct DomainSpec<'a> {
    pub name: &'a str,
    pub uuid: Uuid,
    pub memory_mib: u32,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub disk: &'a Path,
    pub disk_format: &'a str,
    pub console: &'a Path,
    /// Tenant recorded the way the gateway reads ownership (`<snapgate:owner tenant>`).
    pub owner_tenant: Option<&'a str>,
    /// Extra words for the kernel command line (the guest's `init` reads `snapgate.*`).
    pub cmdline_extra: &'a str,
    /// A second serial port (ttyS1) written to this file: the pause benchmark's ticks.
    pub ticks: Option<&'a Path>,
}

/// `type='qemu'` (TCG) because KVM does not work on these machines; direct kernel boot so
/// no firmware or bootloader is involved; the serial console goes to a file (append='on' so
/// a revert that restarts QEMU keeps the history).
pub(crate) fn domain_xml(spec: &DomainSpec<'_>) -> String {
    format!(
        r#"<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <description>snapgate real-VM test guest</description>{metadata}
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet{cmdline_extra}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='{format}'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='{console}' append='on'/>
      <target port='0'/>
    </serial>{ticks}
    <memballoon model='none'/>
  </devices>
</domain>
"#,
        name = escape(spec.name),
        metadata = spec.owner_tenant.map(owner_metadata).unwrap_or_default(),
        uuid = spec.uuid,
        memory = spec.memory_mib,
        kernel = escape_path(spec.kernel),
        initrd = escape_path(spec.initrd),
        format = escape(spec.disk_format),
        disk = escape_path(spec.disk),
        console = escape_path(spec.console),
        cmdline_extra = escape(spec.cmdline_extra),
        ticks = spec.ticks.map(ticks_serial).unwrap_or_default(),
    )
}

fn owner_metadata(tenant: &str) -> String {
    format!(
        "\n  <metadata>\n    <snapgate:owner xmlns:snapgate='https://snapgate.dev/xmlns/owner/1.0' tenant='{}'/>\n  </metadata>",
        escape(tenant)
    )
}

fn ticks_serial(path: &Path) -> String {
    format!(
        "\n    <serial type='file'>\n      <source path='{}' append='on'/>\n      <target port='1'/>\n    </serial>",
        escape_path(path)
    )
}

fn escape_path(path: &Path) -> String {
    escape(&path.to_string_lossy())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}
