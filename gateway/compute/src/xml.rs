//! Reading libvirt XML (domains, snapshots, capabilities) and writing snapshot XML.
//!
//! Parsing is pure so it is tested without libvirt; the backend feeds it what libvirt returns.

use snapgate_core::{CpuInfo, DiskInfo, TenantId};

const NOVA_NS: &str = "http://openstack.org/xmlns/libvirt/nova/1.1";
const SNAPGATE_OWNER_NS: &str = "https://snapgate.dev/xmlns/owner/1.0";

#[derive(Debug, thiserror::Error)]
#[error("cannot parse libvirt XML: {0}")]
pub struct XmlError(String);

impl From<roxmltree::Error> for XmlError {
    fn from(e: roxmltree::Error) -> Self {
        XmlError(e.to_string())
    }
}

/// What snapgate needs from a domain's XML description.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainXml {
    pub name: String,
    /// `<domain type=…>`: the hypervisor type (`qemu` for TCG, `kvm`, `test`…).
    pub virt_type: Option<String>,
    pub disks: Vec<DiskInfo>,
    pub has_host_devices: bool,
    pub owner_tenant: Option<TenantId>,
    pub cpu: CpuInfo,
    /// The `<cpu>…</cpu>` element exactly as libvirt wrote it.
    pub cpu_xml: Option<String>,
}

/// Parses a domain description (`virDomainGetXMLDesc`). Disk sizes are left `None`; the
/// backend fills them from `virDomainGetBlockInfo`.
pub fn parse_domain(xml: &str) -> Result<DomainXml, XmlError> {
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    if root.tag_name().name() != "domain" {
        return Err(XmlError(format!(
            "expected <domain>, found <{}>",
            root.tag_name().name()
        )));
    }
    let name = child(root, "name")
        .and_then(|n| n.text())
        .unwrap_or_default()
        .to_owned();
    let devices = child(root, "devices");
    let disks = devices
        .map(|d| elements(d, "disk").filter_map(parse_disk).collect())
        .unwrap_or_default();
    let has_host_devices = devices.is_some_and(|d| elements(d, "hostdev").next().is_some());
    let owner_tenant = child(root, "metadata").and_then(parse_owner);
    let (cpu, cpu_xml) = match child(root, "cpu") {
        Some(cpu) => (parse_guest_cpu(cpu), Some(xml[cpu.range()].to_owned())),
        None => (CpuInfo::default(), None),
    };
    Ok(DomainXml {
        name,
        virt_type: root.attribute("type").map(str::to_owned),
        disks,
        has_host_devices,
        owner_tenant,
        cpu,
        cpu_xml,
    })
}

/// Only real disks count: CD-ROMs and floppies are never part of a snapshot.
fn parse_disk(disk: roxmltree::Node<'_, '_>) -> Option<DiskInfo> {
    if disk.attribute("device").is_some_and(|d| d != "disk") {
        return None;
    }
    let target = child(disk, "target")?.attribute("dev")?.to_owned();
    let format = child(disk, "driver")
        .and_then(|d| d.attribute("type"))
        .map(str::to_owned);
    let source = child(disk, "source")
        .and_then(|s| {
            s.attribute("file")
                .or_else(|| s.attribute("dev"))
                .or_else(|| s.attribute("name"))
        })
        .map(str::to_owned);
    Some(DiskInfo {
        target,
        format,
        source,
        size_bytes: None,
    })
}

/// snapgate's own owner element wins over Nova's: an operator who tags a domain explicitly
/// means it.
fn parse_owner(metadata: roxmltree::Node<'_, '_>) -> Option<TenantId> {
    let snapgate = metadata
        .children()
        .find(|n| {
            n.is_element()
                && n.tag_name().namespace() == Some(SNAPGATE_OWNER_NS)
                && n.tag_name().name() == "owner"
        })
        .and_then(|n| n.attribute("tenant"))
        .filter(|t| !t.is_empty());
    if let Some(tenant) = snapgate {
        return Some(tenant.to_owned());
    }
    let nova = metadata.children().find(|n| {
        n.is_element()
            && n.tag_name().namespace() == Some(NOVA_NS)
            && n.tag_name().name() == "instance"
    })?;
    let owner = nova
        .children()
        .find(|n| n.tag_name().namespace() == Some(NOVA_NS) && n.tag_name().name() == "owner")?;
    let project = owner
        .children()
        .find(|n| n.tag_name().namespace() == Some(NOVA_NS) && n.tag_name().name() == "project")?;
    project
        .attribute("uuid")
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
}

/// A guest `<cpu>`: model (or the mode for host-passthrough / host-model), vendor, and the
/// features the guest requires (`require` or `force`; `optional`/`disable`/`forbid` are not
/// something a target host must offer).
fn parse_guest_cpu(cpu: roxmltree::Node<'_, '_>) -> CpuInfo {
    let mode = cpu.attribute("mode");
    let model = child(cpu, "model")
        .and_then(|m| m.text())
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            mode.filter(|m| *m == "host-passthrough" || *m == "host-model" || *m == "maximum")
                .map(str::to_owned)
        });
    let vendor = child(cpu, "vendor")
        .and_then(|v| v.text())
        .map(|v| v.trim().to_owned());
    let features = elements(cpu, "feature")
        .filter(|f| {
            matches!(
                f.attribute("policy").unwrap_or("require"),
                "require" | "force"
            )
        })
        .filter_map(|f| f.attribute("name").map(str::to_owned))
        .collect();
    CpuInfo {
        model,
        vendor,
        features,
    }
}

/// The host CPU from `virConnectGetCapabilities` (`/capabilities/host/cpu`). Features are
/// `<feature name=…/>` elements on real hosts and bare elements under `<features>` (e.g.
/// `<pae/>`) on the test driver; both are collected.
pub fn parse_host_cpu(capabilities: &str) -> Result<CpuInfo, XmlError> {
    let doc = roxmltree::Document::parse(capabilities)?;
    let cpu = child(doc.root_element(), "host")
        .and_then(|h| child(h, "cpu"))
        .ok_or_else(|| XmlError("capabilities have no host/cpu".into()))?;
    let model = child(cpu, "model")
        .and_then(|m| m.text())
        .map(|m| m.trim().to_owned());
    let vendor = child(cpu, "vendor")
        .and_then(|v| v.text())
        .map(|v| v.trim().to_owned());
    let mut features: Vec<String> = elements(cpu, "feature")
        .filter_map(|f| f.attribute("name").map(str::to_owned))
        .collect();
    if let Some(list) = child(cpu, "features") {
        features.extend(
            list.children()
                .filter(|n| n.is_element())
                .map(|n| n.tag_name().name().to_owned()),
        );
    }
    Ok(CpuInfo {
        model,
        vendor,
        features,
    })
}

/// What snapgate reads back from a snapshot's XML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotXml {
    pub parent: Option<String>,
    /// `memory snapshot='internal' | 'external' | 'no'`.
    pub memory_mode: Option<String>,
    /// The memory file of an external snapshot.
    pub memory_file: Option<String>,
    /// Overlay files of external disk snapshots.
    pub overlay_files: Vec<String>,
}

impl SnapshotXml {
    /// External when memory or any disk lives in a separate file.
    pub fn kind(&self) -> snapgate_core::SnapshotKind {
        if self.memory_mode.as_deref() == Some("external") || !self.overlay_files.is_empty() {
            snapgate_core::SnapshotKind::External
        } else {
            snapgate_core::SnapshotKind::Internal
        }
    }
}

pub fn parse_snapshot(xml: &str) -> Result<SnapshotXml, XmlError> {
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    let parent = child(root, "parent")
        .and_then(|p| child(p, "name"))
        .and_then(|n| n.text())
        .map(str::to_owned);
    let memory = child(root, "memory");
    let memory_mode = memory
        .and_then(|m| m.attribute("snapshot"))
        .map(str::to_owned);
    let memory_file = memory.and_then(|m| m.attribute("file")).map(str::to_owned);
    let overlay_files = child(root, "disks")
        .map(|disks| {
            elements(disks, "disk")
                .filter(|d| d.attribute("snapshot") == Some("external"))
                .filter_map(|d| {
                    child(d, "source")
                        .and_then(|s| s.attribute("file"))
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(SnapshotXml {
        parent,
        memory_mode,
        memory_file,
        overlay_files,
    })
}

/// Every file a domain's disks use: each disk's source and the sources of its backing chain
/// (`<backingStore>`, which libvirt reports for running domains). A state file in this list
/// is still needed and must not be removed.
pub fn disk_files(domain_xml: &str) -> Result<Vec<String>, XmlError> {
    let doc = roxmltree::Document::parse(domain_xml)?;
    let Some(devices) = child(doc.root_element(), "devices") else {
        return Ok(Vec::new());
    };
    Ok(elements(devices, "disk")
        .flat_map(|disk| disk.descendants())
        .filter(|n| n.is_element() && n.tag_name().name() == "source")
        .filter_map(|n| n.attribute("file").map(str::to_owned))
        .collect())
}

/// The directory of a storage pool (`<pool><target><path>`); `None` for pools without one
/// or XML that does not parse.
pub fn pool_target(pool_xml: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(pool_xml).ok()?;
    let path = child(child(doc.root_element(), "target")?, "path")?;
    path.text().map(|t| t.trim().to_owned())
}

/// The snapshot XML without its `<parent>` element, to define it as a root on a host that
/// lacks the parent. Everything else is kept byte for byte.
pub fn without_parent(snapshot_xml: &str) -> Result<String, XmlError> {
    let doc = roxmltree::Document::parse(snapshot_xml)?;
    Ok(match child(doc.root_element(), "parent") {
        Some(parent) => {
            let range = parent.range();
            format!(
                "{}{}",
                &snapshot_xml[..range.start],
                &snapshot_xml[range.end..]
            )
        }
        None => snapshot_xml.to_owned(),
    })
}

/// `<domainsnapshot>` for an internal snapshot with memory of the given disks.
pub fn internal_snapshot_xml(name: &str, disk_targets: &[&str]) -> String {
    let mut xml = format!(
        "<domainsnapshot><name>{}</name><memory snapshot='internal'/><disks>",
        escape(name)
    );
    for target in disk_targets {
        xml.push_str(&format!(
            "<disk name='{}' snapshot='internal'/>",
            escape(target)
        ));
    }
    xml.push_str("</disks></domainsnapshot>");
    xml
}

/// `<domainsnapshot>` for an external snapshot: a memory file and one qcow2 overlay per disk.
pub fn external_snapshot_xml(name: &str, memory_file: &str, overlays: &[(&str, String)]) -> String {
    let mut xml = format!(
        "<domainsnapshot><name>{}</name><memory snapshot='external' file='{}'/><disks>",
        escape(name),
        escape(memory_file)
    );
    for (target, file) in overlays {
        xml.push_str(&format!(
            "<disk name='{}' snapshot='external'><driver type='qcow2'/><source file='{}'/></disk>",
            escape(target),
            escape(file)
        ));
    }
    xml.push_str("</disks></domainsnapshot>");
    xml
}

/// Escapes text for XML content and single- or double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|n| {
        n.is_element() && n.tag_name().name() == name && n.tag_name().namespace().is_none()
    })
}

fn elements<'a, 'i: 'a>(
    node: roxmltree::Node<'a, 'i>,
    name: &'a str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + 'a {
    node.children().filter(move |n| {
        n.is_element() && n.tag_name().name() == name && n.tag_name().namespace().is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = r#"<domain type='kvm'>
  <name>web</name>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:owner><nova:user uuid="u1">alice</nova:user><nova:project uuid="p-123">acme</nova:project></nova:owner>
    </nova:instance>
  </metadata>
  <cpu mode='custom' match='exact'>
    <model fallback='forbid'>Haswell</model>
    <vendor>Intel</vendor>
    <feature policy='require' name='avx2'/>
    <feature policy='force' name='vmx'/>
    <feature policy='disable' name='hle'/>
    <feature name='pcid'/>
  </cpu>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/v/a.qcow2'/><target dev='vda'/></disk>
    <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/sdb'/><target dev='vdb'/></disk>
    <disk type='file' device='cdrom'><source file='/iso'/><target dev='sda'/></disk>
    <disk type='file'><source file='/v/c'/><target dev='vdc'/></disk>
    <hostdev mode='subsystem' type='pci'/>
  </devices>
</domain>"#;

    #[test]
    fn domain_disks_owner_cpu_hostdev() {
        let d = parse_domain(DOMAIN).unwrap();
        assert_eq!(d.name, "web");
        assert_eq!(d.virt_type.as_deref(), Some("kvm"));
        let summary: Vec<_> = d
            .disks
            .iter()
            .map(|d| (d.target.as_str(), d.format.as_deref(), d.source.as_deref()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("vda", Some("qcow2"), Some("/v/a.qcow2")),
                ("vdb", Some("raw"), Some("/dev/sdb")),
                ("vdc", None, Some("/v/c")),
            ]
        );
        assert!(d.has_host_devices);
        assert_eq!(d.owner_tenant.as_deref(), Some("p-123"));
        assert_eq!(d.cpu.model.as_deref(), Some("Haswell"));
        assert_eq!(d.cpu.vendor.as_deref(), Some("Intel"));
        assert_eq!(d.cpu.features, vec!["avx2", "vmx", "pcid"]);
        let cpu_xml = d.cpu_xml.unwrap();
        assert!(
            cpu_xml.starts_with("<cpu mode='custom'") && cpu_xml.ends_with("</cpu>"),
            "{cpu_xml}"
        );
    }

    #[test]
    fn snapgate_owner_wins_over_nova() {
        let xml = r#"<domain><name>x</name><metadata>
            <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1"><nova:owner><nova:project uuid="p"/></nova:owner></nova:instance>
            <snapgate:owner xmlns:snapgate="https://snapgate.dev/xmlns/owner/1.0" tenant="demo"/>
        </metadata></domain>"#;
        assert_eq!(
            parse_domain(xml).unwrap().owner_tenant.as_deref(),
            Some("demo")
        );
    }

    #[test]
    fn owner_in_a_foreign_namespace_is_ignored() {
        let xml = r#"<domain><name>x</name><metadata><o:owner xmlns:o="urn:other" tenant="evil"/></metadata></domain>"#;
        assert_eq!(parse_domain(xml).unwrap().owner_tenant, None);
        // No `type` attribute: libvirt would refuse such a domain, the parser just says so.
        assert_eq!(parse_domain(xml).unwrap().virt_type, None);
    }

    #[test]
    fn host_passthrough_model() {
        let xml = "<domain><name>x</name><cpu mode='host-passthrough'/></domain>";
        assert_eq!(
            parse_domain(xml).unwrap().cpu.model.as_deref(),
            Some("host-passthrough")
        );
    }

    #[test]
    fn host_cpu_both_feature_styles() {
        let caps = "<capabilities><host><cpu><arch>x86_64</arch><model>Skylake</model><vendor>Intel</vendor>\
            <feature name='ssbd'/><features><pae/></features></cpu></host></capabilities>";
        let cpu = parse_host_cpu(caps).unwrap();
        assert_eq!(cpu.model.as_deref(), Some("Skylake"));
        assert_eq!(cpu.features, vec!["ssbd", "pae"]);
    }

    #[test]
    fn snapshot_parent_and_files() {
        let xml = "<domainsnapshot><name>b</name><parent><name>a</name></parent>\
            <memory snapshot='external' file='/s/b/memory.save'/>\
            <disks><disk name='vda' snapshot='external' type='file'><source file='/s/b/vda.qcow2'/></disk>\
            <disk name='vdb' snapshot='no'/></disks><domain><name>x</name></domain></domainsnapshot>";
        let s = parse_snapshot(xml).unwrap();
        assert_eq!(s.parent.as_deref(), Some("a"));
        assert_eq!(s.memory_mode.as_deref(), Some("external"));
        assert_eq!(s.memory_file.as_deref(), Some("/s/b/memory.save"));
        assert_eq!(s.overlay_files, vec!["/s/b/vda.qcow2"]);
    }

    #[test]
    fn disk_files_follow_backing_chains() {
        let xml = "<domain><devices>\
            <disk type='file' device='disk'><source file='/s/n.vda.qcow2'/><backingStore type='file'>\
            <source file='/v/base.qcow2'/><backingStore/></backingStore><target dev='vda'/></disk>\
            <disk type='block' device='disk'><source dev='/dev/sdb'/><target dev='vdb'/></disk>\
            </devices></domain>";
        assert_eq!(
            disk_files(xml).unwrap(),
            vec!["/s/n.vda.qcow2", "/v/base.qcow2"]
        );
    }

    #[test]
    fn parent_is_cut_out_and_nothing_else() {
        let xml = "<domainsnapshot><name>b</name><parent><name>a</name></parent><memory snapshot='internal'/></domainsnapshot>";
        let cut = without_parent(xml).unwrap();
        assert_eq!(
            cut,
            "<domainsnapshot><name>b</name><memory snapshot='internal'/></domainsnapshot>"
        );
        assert_eq!(parse_snapshot(&cut).unwrap().parent, None);
        assert_eq!(without_parent(&cut).unwrap(), cut);
    }

    #[test]
    fn snapshot_xml_is_escaped_and_parses() {
        let xml = internal_snapshot_xml("a'<b>&\"", &["vda"]);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert_eq!(
            doc.root_element().first_element_child().unwrap().text(),
            Some("a'<b>&\"")
        );
        let xml = external_snapshot_xml(
            "n",
            "/s/n/memory.save",
            &[("vda", "/s/n/vda'.qcow2".into())],
        );
        let s = parse_snapshot(&xml).unwrap();
        assert_eq!(s.overlay_files, vec!["/s/n/vda'.qcow2"]);
    }
}
