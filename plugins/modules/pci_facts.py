#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: pci_facts
short_description: Discover PCI devices, IOMMU groups and VFIO readiness of a Proxmox VE node
version_added: "0.1.0"
description:
  - Reads sysfs and procfs to report every PCI function of the node, its IOMMU group, driver,
    candidate kernel modules, reset methods, SR-IOV state and, for network functions, the
    interfaces it carries with everything stacked on them (bridges, bonds, VLANs), their
    addresses and whether they are management paths.
  - Reports host facts needed to plan VFIO passthrough safely - IOMMU state, interrupt
    remapping, CPU vendor, kernel release, kernel command line, boot loader (GRUB or
    systemd-boot through C(proxmox-boot-tool)), loaded vfio modules and management interfaces.
  - Read-only. It never changes the node; C(changed) is always false.
  - A missing file, dangling link or unreadable attribute never fails the module, the affected
    field is null and a warning names the file.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  sysfs_root:
    description:
      - Root of the sysfs tree to read. Tests point it at a fake tree.
    type: path
    default: /sys
  procfs_root:
    description:
      - Root of the procfs tree to read (C(cmdline), C(cpuinfo), C(modules), C(sys/kernel/osrelease)).
    type: path
    default: /proc
  etc_root:
    description:
      - Root of the file system holding C(/etc), C(/boot), C(/usr/share/misc/pci.ids) and
        C(/lib/modules).
    type: path
    default: /
  connection_address:
    description:
      - The node address Ansible connected to, as the node sees it. The interface holding it is
        reported as a management interface.
      - When not given, the server address of the SSH connection the module runs under is used
        (the third field of E(SSH_CONNECTION)), so no separate fact gathering is needed.
    type: str
  classes:
    description:
      - Report only devices whose 6-digit PCI class starts with one of these hex prefixes,
        for example V(02) for network controllers or V(0200) for Ethernet.
      - IOMMU groups and host facts are always complete.
    type: list
    elements: str
    default: []
  files:
    version_added: "0.3.0"
    description:
      - Absolute paths whose state is returned as well (RV(files)) - exists, type, mode, owner, group and the
        SHA-1 checksum of a regular file - as M(vfio.proxmox.file_state) reports them.
      - The passthrough role names every path its plan needs here, so discovery and the look at its files
        cost one round trip.
    type: list
    elements: path
    default: []
  compare_proxmox:
    version_added: "0.3.0"
    description:
      - Where C(pvesh) exists (a Proxmox VE node), also read Proxmox's own list of the node's PCI functions
        (C(pvesh get /nodes/NODE/hardware/pci --pci-class-blacklist "")) and return every difference from this
        module's discovery in C(vfio_proxmox_view) - the IDs, class and IOMMU groups a resource mapping is
        checked against. The C(vfio.proxmox.verify) playbook turns it on.
    type: bool
    default: false
  read_files:
    version_added: "0.3.0"
    description: Paths (in O(files) or not) whose text is returned in RV(files) too; each at most 1 MiB.
    type: list
    elements: path
    default: []
extends_documentation_fragment: []
attributes:
  check_mode:
    support: full
    description: The module only reads; it behaves the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
  facts:
    support: full
    description: Results are returned under C(ansible_facts).
notes:
  - Addresses and default routes come from C(ip -j); the boot loader is read from
    C(proxmox-boot-tool status) when the tool exists.
  - The link speed of an interface that is down is reported as null without a warning,
    because the kernel answers EINVAL for it.
seealso:
  - name: VFIO - Linux kernel documentation
    description: How devices are bound to vfio-pci and what IOMMU groups mean.
    link: https://docs.kernel.org/driver-api/vfio.html
  - name: PCI(e) Passthrough - Proxmox VE documentation
    description: The administrator guide this collection automates.
    link: https://pve.proxmox.com/wiki/PCI(e)_Passthrough
"""

EXAMPLES = r"""
- name: Gather PCI and IOMMU facts
  vfio.proxmox.pci_facts:

- name: Gather network controllers only, marking the interface Ansible came in through
  vfio.proxmox.pci_facts:
    classes: ["02"]

- name: Discover with the management address given explicitly
  vfio.proxmox.pci_facts:
    connection_address: 192.0.2.10

- name: Show the NICs and their IOMMU groups
  ansible.builtin.debug:
    msg: "{{ item.address }} {{ item.vendor }}:{{ item.device }} group {{ item.iommu_group }}"
  loop: "{{ ansible_facts.vfio_pci_devices | selectattr('is_network') }}"
"""

RETURN = r"""
check_mode:
  version_added: "0.3.0"
  description:
    - Whether the module ran in check mode - also when only the task or an included role is in check
      mode, which C(ansible_check_mode) does not show. The passthrough role decides from this.
  returned: always
  type: bool
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: complex
  contains:
    vfio_pci_devices:
      description:
        - One entry per PCI function, sorted by address.
        - IDs are lowercase hex without C(0x) - 4 digits for vendor, device and subsystem IDs,
          6 for the class, 2 for the revision.
        - A value that could not be read is null, and a warning names the file.
      returned: always
      type: list
      elements: dict
      contains:
        address:
          description: PCI address with its domain.
          type: str
          sample: "0000:02:00.0"
        vendor:
          description: Vendor ID.
          type: str
          sample: "8086"
        device:
          description: Device ID.
          type: str
          sample: "15f3"
        subsystem_vendor:
          description: Subsystem vendor ID.
          type: str
          sample: "8086"
        subsystem_device:
          description: Subsystem device ID.
          type: str
          sample: "0000"
        class:
          description: PCI class, base class, subclass and programming interface.
          type: str
          sample: "020000"
        revision:
          description: Revision ID.
          type: str
          sample: "03"
        vendor_name:
          description: The vendor's name from C(pci.ids); null without C(pci.ids).
          type: str
          sample: Intel Corporation
        device_name:
          description: The device's name from C(pci.ids).
          type: str
          sample: Ethernet Controller I225-V
        class_name:
          description: The class's name from C(pci.ids).
          type: str
          sample: Ethernet controller
        driver:
          description: The driver bound now; null when none.
          type: str
          sample: igc
        modalias:
          description: The function's modalias.
          type: str
          sample: "pci:v00008086d000015F3sv00008086sd00000000bc02sc00i00"
        modules:
          description: Kernel modules that could drive it, from C(modules.alias) of the running kernel.
          type: list
          elements: str
          sample: [igc]
        iommu_group:
          description: Its IOMMU group; null when the IOMMU is off or does not cover it.
          type: str
          sample: "14"
        iommu_group_peers:
          description: The other functions in its IOMMU group - they go to a VM with it.
          type: list
          elements: str
          sample: []
        is_bridge:
          description: A PCI bridge (never passed through).
          type: bool
        is_network:
          description: A network controller (class C(02)).
          type: bool
        numa_node:
          description: Its NUMA node; null on single-node machines.
          type: int
        reset_methods:
          description:
            - The kernel's reset methods for it (C(reset_method)), in order; empty when it cannot be reset alone.
          type: list
          elements: str
          sample: [flr, bus]
        sriov:
          description: SR-IOV state; null when the function has no SR-IOV capability.
          type: dict
          contains:
            total_vfs:
              description: The most VFs it supports (C(sriov_totalvfs)).
              type: int
            num_vfs:
              description: VFs enabled now.
              type: int
            physfn:
              description: For a VF, the address of its physical function.
              type: str
            vfs:
              description: For a PF, the addresses of its VFs.
              type: list
              elements: str
            vf_settings:
              description:
                - For a PF, each VF as it is set now (C(ip -j -d link show) of the PF's interface) - C(index),
                  C(mac), C(vlan), C(spoofchk), C(trust), C(state); null when that cannot be read
                  (see RV(ansible_facts.vfio_pci_devices.sriov.vf_settings_error)).
              type: list
              elements: dict
              version_added: "0.3.0"
            vf_settings_error:
              description: Why RV(ansible_facts.vfio_pci_devices.sriov.vf_settings) is null, or null.
              type: str
              version_added: "0.3.0"
            vf_device:
              description:
                - For a PF, the device ID its VFs have (C(sriov_vf_device), with the PF's vendor), known before any
                  VF exists; null where the kernel does not show it.
              type: str
              version_added: "0.3.0"
        mdev:
          description: It offers mediated devices (as Proxmox VE reads it).
          type: bool
          version_added: "0.3.0"
        proxmox_mapping:
          description:
            - What a Proxmox VE PCI resource mapping entry for it must carry, in Proxmox's format - C(path),
              C(id), and C(subsystem-id) and C(iommugroup) when the hardware has them.
            - For M(vfio.proxmox.pci_mapping) O(vfio.proxmox.pci_mapping#module:entries) add a C(node) and pass
              C(subsystem-id) as C(subsystem_id).
          type: dict
          sample: {path: "0000:02:00.0", id: "8086:15f3", subsystem-id: "8086:0000", iommugroup: 14}
          version_added: "0.3.0"
        storage:
          description:
            - What it holds for the node, traced from mounts, swap, device-mapper and md stacks, C(zpool status -P)
              and C(/sys/fs/btrfs). A function in this list never leaves the host.
          type: list
          elements: str
          sample: [holds /, holds swap /dev/dm-1, holds ZFS pool rpool (/)]
          version_added: "0.3.0"
        netdevs:
          description: The network interfaces on this function (none for most functions).
          type: list
          elements: dict
          contains:
            name:
              description: Interface name.
              type: str
              sample: enp2s0
            mac:
              description: Current MAC address (bond slaves share the bond's).
              type: str
              sample: "a8:a1:59:00:00:02"
            permanent_mac:
              description: The burned-in MAC address where the kernel tells it; null otherwise.
              type: str
              version_added: "0.3.0"
            operstate:
              description: C(up), C(down) and so on, as the kernel says.
              type: str
              sample: up
            speed:
              description: Link speed in Mb/s; null without link.
              type: int
              sample: 2500
            mtu:
              description: MTU.
              type: int
              sample: 1500
            master:
              description: The bridge, bond or C(ovs-system) it is enslaved to; null when none.
              type: str
            uppers:
              description: Every interface stacked on it, recursively - bridges, bonds, VLANs, Open vSwitch bridges.
              type: list
              elements: str
              sample: [vmbr0]
            addresses:
              description: The addresses of the interface and of everything stacked on it.
              type: list
              elements: dict
              contains:
                interface:
                  description: The interface that holds it.
                  type: str
                  sample: vmbr0
                family:
                  description: C(ipv4) or C(ipv6).
                  type: str
                address:
                  description: The address.
                  type: str
                  sample: 192.0.2.10
                prefixlen:
                  description: Prefix length.
                  type: int
                  sample: 24
                scope:
                  description: C(global), C(link) and so on.
                  type: str
            default_route:
              description: It or an upper carries a default route.
              type: bool
            management:
              description: It is a management path - passing it through would lock the operator out.
              type: bool
            management_reasons:
              description: Why, per interface of its stack.
              type: list
              elements: str
              sample: ["enp2s0: vmbr0: default route (ipv4)"]
            management_unknown:
              description:
                - Why its management paths could not be told (an Open vSwitch port of an unknown bridge); null
                  otherwise.
              type: str
              version_added: "0.3.0"
    vfio_proxmox_view:
      version_added: "0.3.0"
      description:
        - With O(compare_proxmox) only. C(checked) is false (with C(reason)) where there is no C(pvesh);
          C(differences) names each function where this module and Proxmox disagree.
      returned: when O(compare_proxmox=true)
      type: dict
      sample: {checked: true, reason: null, differences: []}
    vfio_iommu_groups:
      description: IOMMU group number to sorted member addresses. Empty when the IOMMU is off.
      returned: always
      type: dict
      sample: {"1": ["0000:00:01.0"], "14": ["0000:02:00.0"]}
    vfio_host:
      description: Host readiness for VFIO.
      returned: always
      type: dict
      contains:
        iommu_active:
          description: True when C(/sys/kernel/iommu_groups) has groups.
          type: bool
        interrupt_remapping:
          description: From the kernel log; null when the log is not readable or says nothing.
          type: bool
        cpu_vendor:
          description: V(intel), V(amd), V(hygon) or the raw C(vendor_id).
          type: str
        kernel_release:
          description: Running kernel release.
          type: str
        node_name:
          version_added: "0.3.0"
          description: The short host name - the name Proxmox VE knows the node by (null when unreadable).
          type: str
        cmdline:
          description: Tokens of C(/proc/cmdline), split where the kernel splits them (a quoted value is one).
          type: list
          elements: str
        cmdline_length:
          version_added: "0.3.0"
          description:
            - The length of C(/proc/cmdline) in bytes (blanks as the boot loader passed them), without its final
              newline; null when it could not be read. The role refuses parameters that would pass the 2047 bytes
              x86 Linux keeps.
          type: int
        boot_loader:
          description:
            - C(name) is V(grub), V(systemd-boot) or V(unknown); C(source) says how it was decided;
              C(efi) whether the node booted through UEFI; C(esps) the ESPs reported by
              C(proxmox-boot-tool status) with their mode.
          type: dict
        vfio_modules_loaded:
          description: vfio modules loaded or built in.
          type: list
          elements: str
        management_interfaces:
          description: Interfaces that carry a default route or hold the connection address, with the reasons.
          type: list
          elements: dict
          sample: [{"interface": "vmbr0", "reasons": ["default route (ipv4)"]}]
        connection_address:
          description: The O(connection_address) given or found in E(SSH_CONNECTION), or null.
          type: str
        corosync_addresses:
          version_added: "0.3.0"
          description:
            - Addresses of the corosync links (C(ringX_addr), C(linkX_addr)) in C(/etc/pve/corosync.conf)
              below O(etc_root); empty when the node is not in a cluster.
          type: list
          elements: str
          sample: ["192.0.2.70"]
        grub_cmdline_overrides:
          version_added: "0.3.0"
          description:
            - Lines of C(/etc/default/grub.d/*.cfg) files other than the role's drop-in that set or unset
              C(GRUB_CMDLINE_LINUX) without keeping its value (C(file), C(line), C(text)); when such a file is
              sourced after the role's drop-in, update-grub drops the role's kernel parameters, and the planner
              refuses. An unreadable file is listed with C(line) 0 and C(text) null.
          type: list
          elements: dict
          sample: [{"file": "/etc/default/grub.d/zz-admin.cfg", "line": 1, "text": "GRUB_CMDLINE_LINUX=\"quiet\""}]
        corosync_error:
          version_added: "0.3.0"
          description:
            - Why corosync.conf (C(/etc/pve/corosync.conf), else C(/etc/corosync/corosync.conf)) could not be read,
              or null - then RV(ansible_facts.vfio_host.corosync_addresses) may be incomplete.
          type: str
        link_macs:
          version_added: "0.3.0"
          description:
            - The MAC of every Ethernet link of the node (bridges and bonds too), from C(ip -j -d link show), read
              only on a node with an SR-IOV device (only SR-IOV needs them); null when not read, and then
              RV(ansible_facts.vfio_host.link_macs_error) says why. The SR-IOV planner refuses to give a VF a MAC
              then.
          type: dict
          sample: {"vmbr0": "3c:ec:ef:00:00:21"}
        link_macs_error:
          version_added: "0.3.0"
          description: Why RV(ansible_facts.vfio_host.link_macs) and the VF settings were not read, or null.
          type: str
        sysfs_conf_numvfs:
          version_added: "0.3.0"
          description:
            - Lines of Debian's sysfsutils (C(/etc/sysfs.conf), C(/etc/sysfs.d/*.conf)) that write a VF count
              (C(sriov_numvfs)) at every boot - C(file), C(line), C(attribute), C(value), and the C(address) or
              C(interface) the attribute names, or C(pattern) when it is a shell glob (the script writes every path
              C(/sys/ATTRIBUTE) matches).
          type: list
          elements: dict
        sysfs_conf_error:
          version_added: "0.3.0"
          description: Why a sysfsutils file could not be read, or null.
          type: str
        boot_numvfs:
          version_added: "0.3.0"
          description:
            - Lines of C(/etc/network/interfaces), C(/etc/network/interfaces.d/*) (ifupdown C(post-up) and the like)
              and C(/etc/udev/rules.d/*.rules) that write C(sriov_numvfs) at boot - C(file), C(line), C(text), and
              the C(addresses) and C(interfaces) each names (the C(iface) stanza for a line using C($IFACE)). A line
              that names neither may set any PF's count.
          type: list
          elements: dict
        boot_numvfs_error:
          version_added: "0.3.0"
          description: Why one of those files could not be read, or null.
          type: str
        pci_ids_found:
          description: Whether a C(pci.ids) database was found for names.
          type: bool
        modules_alias_found:
          description: Whether C(modules.alias) of the running kernel was found.
          type: bool
        installed_kernels:
          version_added: "0.3.0"
          description: Kernel releases with modules under C(/lib/modules), the running one included.
          type: list
          elements: str
        network_error:
          version_added: "0.3.0"
          description:
            - Why addresses or default routes could not be read (C(ip) missing, failing or unparsable); null
              when they were. The passthrough role refuses every network function while it is set.
          type: str
        storage_problems:
          version_added: "0.3.0"
          description:
            - What could not be traced from mounts, swap, device-mapper/md stacks, ZFS pools and btrfs file
              systems to PCI functions. Empty when everything was traced.
          type: list
          elements: str
        vfio_users:
          version_added: "0.3.0"
          description:
            - IOMMU group to the processes holding C(/dev/vfio/<group>) open (a running VM's QEMU, on Proxmox VE
              C(kvm -id VMID)), as C(PID (command line)). Read only when a device is on C(vfio-pci); empty otherwise.
            - Null when C(/proc) could not be read (see RV(ansible_facts.vfio_host.vfio_users_error)); the passthrough
              role then refuses to take any device from C(vfio-pci) or to move a virtual function.
          type: dict
          sample: {"12": ["4242 (/usr/bin/kvm -id 101)"]}
        vfio_users_error:
          version_added: "0.3.0"
          description:
            - Why C(/proc) could not be read to find the processes holding VFIO groups open; null when it was.
          type: str
        vm_pci:
          version_added: "0.3.0"
          description:
            - The PCI functions this node's VM configurations and the cluster's PCI mappings name, read from pmxcfs.
              C(vms) maps a VM ID to its C(hostpciN) lines (the current configuration and C([PENDING]), not
              snapshots) - C(option), C(value), C(pending), C(ids) (C(DDDD:BB:DD.F), or C(DDDD:BB:DD) for every
              function of a device) and C(mapping). C(mappings) maps each ID in C(/etc/pve/mapping/pci.cfg) to the
              functions its entries for this node name. C(cts) maps a container ID to the host interfaces its
              configuration moves into it (C(lxc.net.N.type) V(phys) with C(lxc.net.N.link)).
            - A stopped VM holds nothing open, yet needs these devices at its next start; the passthrough role refuses
              an SR-IOV count that removes a virtual function named here.
            - Empty on a host without C(/etc/pve); null when a Proxmox node's configurations could not be read (see
              RV(ansible_facts.vfio_host.vm_pci_error)), and the role then refuses to remove virtual functions.
          type: dict
          sample: {"vms": {"101": [{"option": "hostpci0", "value": "mapping=vf-pool,pcie=1", "pending": false,
                                    "ids": [], "mapping": "vf-pool"}]},
                   "mappings": {"vf-pool": ["0000:04:02.1"]}, "cts": {"200": ["enp4s0f0v3"]}}
        vm_pci_error:
          version_added: "0.3.0"
          description:
            - Why this node's VM configurations or PCI mappings could not be read (pmxcfs not mounted, a file
              unreadable); null when they were.
          type: str
        vfio_config:
          version_added: "0.3.0"
          description:
            - Hand-made configuration that decides bindings, with file and line - C(blacklist) and C(softdep)
              lines, C(install) lines whose command does not load the module (they keep it off like a
              blacklist), C(options), C(install), C(remove) and C(alias) lines about vfio, C(options pci-stub)
              lines and C(alias) lines for PCI modaliases in the modprobe.d directories (C(/etc), C(/run),
              C(/usr/local/lib), C(/usr/lib), C(/lib); C(*.conf) and C(*.alias), one file per name as kmod reads
              them - a file in C(/etc) masks a package's of the same name), vfio and C(pci_stub) modules listed in
              C(/etc/modules), C(/etc/initramfs-tools/modules) and the modules-load.d directories, and
              C(driverctl) overrides.
            - C(kind) is V(options), V(softdep), V(blacklist), V(install), V(remove), V(alias), V(load) or
              V(driverctl); C(ids) lists the vendor:device IDs of an C(options vfio-pci ids=) line, C(stub_ids)
              those of C(pci-stub); an V(install) line has C(command), the command kmod runs instead of loading
              the module; an V(alias) line has C(target), the module as kmod reads it.
          type: list
          elements: dict
          sample: [{"file": "/etc/modprobe.d/vfio.conf", "line": 1, "text": "options vfio-pci ids=8086:15f3",
                    "kind": "options", "module": "vfio_pci", "ids": ["8086:15f3"]}]
        handmade:
          version_added: "0.3.0"
          description:
            - Passthrough configuration made by hand (as the guide does it), the role's own files and tokens left
              out - the C(vfio_config) lines plus passthrough kernel parameters (C(intel_iommu), C(amd_iommu),
              C(iommu), C(vfio-pci.ids), C(module_blacklist), C(pcie_acs_override), ...) in C(/etc/default/grub),
              C(/etc/default/grub.d/*.cfg) and C(/etc/kernel/cmdline), C(kind) V(kernel_parameter), and udev rules
              that set a PCI device's C(driver_override), C(kind) V(udev). GRUB values are read as C(sh) reads them
              (any quoting); a GRUB line whose value cannot be read with confidence is reported whole, with a
              problem. A line outside C(/etc) (a package's or a runtime file) is listed only when it is a lockout.
            - C(problems) says what is wrong with each line - a driver that a NIC uses now kept off by a
              blacklist, an C(install) command or a blacklist kernel parameter (the management NIC named), a
              binding of the management NIC, a binding by ID of SR-IOV virtual functions, C(vfio_virqfd) on
              kernels from 6.2, C(intel_iommu) on an AMD CPU, C(amd_iommu=on), C(intel_iommu=on) where every
              kernel has it on by default, C(pcie_acs_override), a duplicate of an earlier line. Empty when the
              line is fine. C(lockout) is true when the line takes the node off its network at the next boot (its
              first problem says why) - also an C(alias) of the management NIC's modalias to another module, a
              C(pci-stub) binding of it, a C(driverctl) or udev override of it, and an C(initcall_blacklist=) the
              running kernel does not have yet.
          type: list
          elements: dict
          sample: [{"file": "/etc/modprobe.d/blacklist.conf", "line": 1, "text": "blacklist e1000e",
                    "kind": "blacklist", "problems": ["blacklists e1000e, the driver of the management NIC 0000:00:1f.6
                    (eno1) - the node loses its network at the next boot"]}]
        handmade_files:
          description:
            - State and exact text of every file below C(/etc) that holds a C(handmade) line, and of every file an
              earlier adoption took over (with the copy of its original), keyed by path - what
              C(passthrough_adopt) edits and what a rollback gives back.
            - Each has C(exists), C(type), C(mode), C(uid), C(gid), C(checksum) (SHA-1) and C(content); C(content)
              is null when the file is not UTF-8 text (adoption refuses to rewrite it), C(error) says why a file
              could not be read.
          type: dict
          version_added: "0.3.0"
          sample: {"/etc/modprobe.d/vfio.conf": {"exists": true, "type": "file", "mode": "0644", "uid": 0, "gid": 0,
                   "checksum": "6f1ed002ab5595859014ebf0951522d9e3d6a5b1",
                   "content": "options vfio-pci ids=8086:15f3\n"}}
files:
  version_added: "0.3.0"
  description: The state of each path in O(files) and O(read_files), keyed by path (empty when none were asked).
  returned: always
  type: dict
  sample:
    /etc/modprobe.d/vfio-proxmox.conf:
      path: /etc/modprobe.d/vfio-proxmox.conf
      exists: true
      type: file
      mode: "0644"
      uid: 0
      gid: 0
      checksum: 2aae6c35c94fcfb415dbe95f408b9ce91ee846ed
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._file_state import files_state
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._host import ssh_server_address
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sysfs_root": {"type": "path", "default": "/sys"},
            "procfs_root": {"type": "path", "default": "/proc"},
            "etc_root": {"type": "path", "default": "/"},
            "connection_address": {"type": "str"},
            "classes": {"type": "list", "elements": "str", "default": []},
            "files": {"type": "list", "elements": "path", "default": []},
            "read_files": {"type": "list", "elements": "path", "default": []},
            "compare_proxmox": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    result = gather(
        sysfs_root=params["sysfs_root"],
        procfs_root=params["procfs_root"],
        etc_root=params["etc_root"],
        run=module.run_command,
        which=module.get_bin_path,
        connection_address=params["connection_address"] or ssh_server_address(os.environ),
        classes=params["classes"],
    )
    for warning in result["warnings"]:
        module.warn(warning)
    try:
        files = files_state(params["files"], params["read_files"])
    except ValueError as exc:
        module.fail_json(msg="pci_facts: %s" % exc)
    if params["compare_proxmox"]:
        result["ansible_facts"]["vfio_proxmox_view"] = proxmox_view(module, result["ansible_facts"])
    module.exit_json(changed=False, ansible_facts=result["ansible_facts"], files=files, check_mode=module.check_mode)


def proxmox_view(module: AnsibleModule, facts: dict) -> dict:
    """Proxmox's own list of this node's PCI functions, compared with ours (only where pvesh exists)."""
    # Imported here: only this option needs them, and a node compiles every module a run imports.
    from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_entry import proxmox_view_differences
    from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._pvesh import Pvesh, PveshError

    pvesh = module.get_bin_path("pvesh")
    node = facts["vfio_host"].get("node_name")
    if not pvesh or not node:
        return {"checked": False, "reason": "no pvesh on this node" if not pvesh else "node name unknown",
                "differences": []}
    try:
        listed = Pvesh(module.run_command, pvesh).get("/nodes/%s/hardware/pci" % node, ["--pci-class-blacklist", ""])
    except PveshError as err:
        module.fail_json(msg="pci_facts: Proxmox's view of the PCI devices could not be read: %s" % err)
    return {"checked": True, "reason": None,
            "differences": proxmox_view_differences(facts["vfio_pci_devices"], listed or [])}


if __name__ == "__main__":
    main()
