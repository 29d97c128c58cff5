"""Hand-made passthrough configuration, as the guide leaves it - with its own mistakes - reported
file and line with what is wrong (pci_facts vfio_host.handmade)."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather

GUIDE_GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\nGRUB_CMDLINE_LINUX=""\n'
GUIDE_FILES = {
    "/etc/default/grub": GUIDE_GRUB,
    "/etc/modules": "# /etc/modules\nvfio\nvfio_iommu_type1\nvfio_pci\nvfio_virqfd\nvfio\n",
    "/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:15f3\n",
    "/etc/modprobe.d/blacklist.conf": "blacklist e1000e\nblacklist igc\n",
}


def handmade(fake_node, profile, files, mutate=None):
    def change(p):
        p["files"].update(files)
        if mutate:
            mutate(p)
    node = fake_node(profile, mutate=change)
    host = gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]["vfio_host"]
    return {(e["file"], e["line"], e["text"]): e["problems"] for e in host["handmade"]}


def test_the_guide_on_its_intel_host_with_every_mistake(fake_node):
    found = handmade(fake_node, "guide-intel", GUIDE_FILES)
    # The guide's host runs PVE's 6.8 kernel, where the Intel IOMMU is on by default.
    assert found[("/etc/default/grub", 2, "intel_iommu=on")] == [
        "intel_iommu=on is the default on every installed kernel (6.8 and later)"]
    assert found[("/etc/default/grub", 2, "iommu=pt")] == []
    assert found[("/etc/modprobe.d/vfio.conf", 1, "options vfio-pci ids=8086:15f3")] == []
    assert found[("/etc/modules", 5, "vfio_virqfd")] == [
        "vfio_virqfd does not exist on 6.8.12-4-pve (merged into vfio in 6.2): systemd-modules-load logs a failure "
        "at every boot"]
    assert found[("/etc/modules", 6, "vfio")] == ["duplicate of /etc/modules:2"]
    assert found[("/etc/modprobe.d/blacklist.conf", 1, "blacklist e1000e")] == [
        "blacklists e1000e, the driver of the management NIC 0000:00:1f.6 (eno1) - the node loses its network at "
        "the next boot"]
    assert found[("/etc/modprobe.d/blacklist.conf", 2, "blacklist igc")] == [
        "blacklists igc, which 0000:02:00.0 uses now - fine only if all of them go to VMs"]


def test_intel_switches_on_an_amd_host_and_systemd_boot_cmdline(fake_node):
    files = {"/etc/kernel/cmdline": "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on amd_iommu=on iommu=pt\n"}
    found = handmade(fake_node, "amd-zfs-uefi", files)
    assert found[("/etc/kernel/cmdline", 1, "intel_iommu=on")] == ["intel_iommu on an AMD CPU does nothing"]
    assert found[("/etc/kernel/cmdline", 1, "amd_iommu=on")] == [
        "amd_iommu=on is not a valid value (the AMD IOMMU is on by default)"]
    assert ("/etc/kernel/cmdline", 1, "root=ZFS=rpool/ROOT/pve-1") not in found


def test_the_roles_own_files_and_tokens_are_not_hand_made(fake_node):
    files = {"/etc/modprobe.d/vfio-proxmox.conf": "options vfio-pci ids=8086:15f3\n",
             "/etc/modules-load.d/vfio-proxmox.conf": "vfio\nvfio_pci\n",
             "/etc/kernel/cmdline": "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n",
             "/etc/vfio-proxmox/cmdline-added": "# written by vfio.proxmox.kernel_cmdline\niommu=pt\n"}
    assert handmade(fake_node, "amd-zfs-uefi", files) == {}


def test_the_role_will_not_reboot_a_node_into_a_blacklisted_management_nic(fake_node):
    from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan

    node = fake_node("guide-intel", mutate=lambda p: p["files"].update(
        {"/etc/modprobe.d/blacklist.conf": "blacklist e1000e\n"}))
    facts = gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]
    devices = [{"interface": "enp2s0"}]
    refused = make_plan(facts, {"devices": devices, "reboot": "if_needed"})
    assert any(e.startswith("hand-made /etc/modprobe.d/blacklist.conf:1 ('blacklist e1000e'): blacklists e1000e, "
                            "the driver of the management NIC") and "a reboot by the role would lock you out" in e
               for e in refused["errors"]), refused["errors"]
    warned = make_plan(facts, {"devices": devices, "reboot": "never"})
    assert not [e for e in warned["errors"] if "hand-made" in e]
    assert any(w.startswith("hand-made /etc/modprobe.d/blacklist.conf:1") for w in warned["warnings"])


def test_package_files_and_blacklists_of_drivers_no_device_uses_are_not_hand_made(fake_node):
    files = {"/usr/lib/modprobe.d/aliases.conf": "softdep uhci-hcd pre: ehci-hcd\n",
             "/usr/lib/modprobe.d/fbdev-blacklist.conf": "blacklist radeonfb\nblacklist igc\n",
             # Shipped by Proxmox VE's kernel package on every node.
             "/etc/modprobe.d/pve-blacklist.conf": "# not supported by Proxmox VE\nblacklist nvidiafb\n",
             "/etc/modprobe.d/vfio.conf": "softdep igc pre: vfio-pci\nsoftdep drm pre: i2c_core\n"}
    assert handmade(fake_node, "guide-intel", files) == {
        ("/etc/modprobe.d/vfio.conf", 1, "softdep igc pre: vfio-pci"): []}


def test_kvm_ignore_msrs_in_modprobe_d_is_passthrough_configuration_like_on_the_command_line(fake_node):
    files = {"/etc/modprobe.d/kvm.conf": "options kvm ignore_msrs=1 report_ignored_msrs=0\n",
             "/etc/modprobe.d/nested.conf": "options kvm_intel nested=1\n",
             "/etc/default/grub": 'GRUB_CMDLINE_LINUX_DEFAULT="quiet kvm.ignore_msrs=1"\n'}
    found = handmade(fake_node, "guide-intel", files)
    assert ("/etc/default/grub", 1, "kvm.ignore_msrs=1") in found
    assert ("/etc/modprobe.d/kvm.conf", 1, "options kvm ignore_msrs=1 report_ignored_msrs=0") in found
    assert not [k for k in found if k[0] == "/etc/modprobe.d/nested.conf"]


def test_a_hand_made_binding_of_the_management_nic_not_yet_in_force_is_a_lockout(fake_node):
    found = handmade(fake_node, "guide-intel", {"/etc/modprobe.d/vfio.conf": 'options vfio-pci ids="8086:1a1c"\n'})
    assert found[("/etc/modprobe.d/vfio.conf", 1, 'options vfio-pci ids="8086:1a1c"')] == [
        "binds 0000:00:1f.6 (eno1), the management NIC, to vfio-pci (ids 8086:1a1c) - the node loses its network "
        "at the next boot"]


MGMT = "0000:00:1f.6 (eno1)"


def test_what_else_keeps_the_management_nic_off_at_the_next_boot_is_a_lockout(fake_node):
    """Forms that take the management NIC (guide-intel: 0000:00:1f.6 eno1, e1000e, 8086:1a1c) at the next boot and
    that only vfio-pci's own forms were checked for: a modalias alias to another module (kmod takes the
    configuration's aliases first and stops there), pci-stub.ids= (the other stub driver of older guides), a new
    initcall_blacklist= (which driver's init it names cannot be told), and any of these in a package's or a runtime
    modprobe.d directory - kmod reads those as well."""
    cases = {
        ("/etc/modprobe.d/nic.conf", "alias pci:v00008086d00001A1Csv*sd*bc*sc*i* vfio-pci"):
            "makes udev load 'vfio-pci' instead of e1000e for %s, the management NIC (the alias matches its "
            "modalias) - the node loses its network at the next boot" % MGMT,
        ("/etc/modprobe.d/nic.conf", "alias pci:* off"):
            "makes udev load 'off' instead of e1000e for %s, the management NIC (the alias matches its modalias) - "
            "the node loses its network at the next boot" % MGMT,
        ("/usr/lib/modprobe.d/nic.conf", "blacklist e1000e"):
            "blacklists e1000e, the driver of the management NIC %s - the node loses its network at the next boot"
            % MGMT,
        ("/lib/modprobe.d/nic.conf", "options vfio-pci ids=8086:1a1c"):
            "binds %s, the management NIC, to vfio-pci (ids 8086:1a1c) - the node loses its network at the next "
            "boot" % MGMT,
        ("/run/modprobe.d/nic.conf", "install e1000e /bin/false"):
            "runs '/bin/false' instead of loading e1000e, the driver of the management NIC %s - the node loses its "
            "network at the next boot" % MGMT,
    }
    for (path, text), problem in cases.items():
        found = handmade(fake_node, "guide-intel", {path: text + "\n"})
        assert found == {(path, 1, text): [problem]}, (path, text, found)
    for token, problem in {
        "pci-stub.ids=8086:1a1c": "binds %s, the management NIC, to pci-stub (ids 8086:1a1c) - the node loses its "
                                  "network at the next boot" % MGMT,
        "initcall_blacklist=e1000_init_module": "the kernel parameter initcall_blacklist=e1000_init_module is not in "
                                                "force yet and keeps the named init functions from running - if one "
                                                "is the management NIC's driver's, the node loses its network at the "
                                                "next boot; boot with it once by hand first, or remove it"}.items():
        found = handmade(fake_node, "guide-intel", {"/etc/default/grub": 'GRUB_CMDLINE_LINUX_DEFAULT="%s"\n' % token})
        assert found == {("/etc/default/grub", 1, token): [problem]}, (token, found)


def test_what_does_not_touch_the_management_nic_is_no_lockout(fake_node):
    """An alias for another device's modalias, one to the NIC's own driver, a name alias (udev loads by modalias),
    pci-stub ids of the card for VMs, and an initcall_blacklist the running kernel already has."""
    running = "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro initcall_blacklist=foo_init"
    files = {"/etc/modprobe.d/nic.conf": "alias pci:v00008086d000015F3sv*sd*bc*sc*i* vfio-pci\n"
                                         "alias pci:v00008086d00001A1C* e1000e\nalias e1000e off\n",
             "/etc/default/grub": 'GRUB_CMDLINE_LINUX_DEFAULT="pci-stub.ids=8086:15f3 initcall_blacklist=foo_init"\n'}
    found = handmade(fake_node, "guide-intel", files, mutate=lambda p: p.update(cmdline=running))
    assert ("/etc/default/grub", 1, "pci-stub.ids=8086:15f3") in found  # seen, and fine
    assert not [p for problems in found.values() for p in problems if "management NIC" in p], found


def test_a_lockout_in_a_package_file_is_refused_without_offering_adoption(fake_node):
    from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan

    node = fake_node("guide-intel", mutate=lambda p: p["files"].update(
        {"/usr/lib/modprobe.d/vendor.conf": "blacklist e1000e\n"}))
    facts = gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]
    refused = make_plan(facts, {"devices": [{"interface": "enp2s0"}], "reboot": "if_needed", "adopt": True})
    assert ("hand-made /usr/lib/modprobe.d/vendor.conf:1 ('blacklist e1000e'): blacklists e1000e, the driver of the "
            "management NIC 0000:00:1f.6 (eno1) - the node loses its network at the next boot - a reboot by the role "
            "would lock you out: remove that line first, or set passthrough_reboot: never and deal with it yourself"
            in refused["errors"]), refused["errors"]


def test_a_udev_rule_overrides_only_what_it_matches(fake_node):
    """A udev rule setting driver_override is a lockout when it reaches the management NIC - by address, by its
    IDs, or naming no device at all (it may reach every one) - and not when it names another device or clears
    the override."""
    rules = "/etc/udev/rules.d/99-vfio.rules"
    reach = {'SUBSYSTEM=="pci", ATTR{vendor}=="0x8086", ATTR{device}=="0x1a1c", ATTR{driver_override}="vfio-pci"',
             'ACTION=="add", SUBSYSTEM=="pci", ATTR{driver_override}="vfio-pci"',
             'KERNEL=="0000:00:1f.*", ATTR{driver_override}="pci-stub"'}
    for rule in reach:
        found = handmade(fake_node, "guide-intel", {rules: rule + "\n"})
        assert [p for p in found[(rules, 1, rule)] if "the management NIC" in p], (rule, found)
    fine = ['KERNEL=="0000:02:00.0", ATTR{driver_override}="vfio-pci"',
            'KERNEL=="0000:00:1f.6", ATTR{driver_override}=""',
            'ATTR{vendor}=="0x8086", ATTR{device}=="0x15f3", ATTR{driver_override}="vfio-pci"']
    for rule in fine:
        found = handmade(fake_node, "guide-intel", {rules: rule + "\n"})
        assert not [p for problems in found.values() for p in problems if "management NIC" in p], (rule, found)


def test_only_the_first_line_of_kernel_cmdline_reaches_the_kernel(fake_node):
    """proxmox-boot-tool copies the first line of /etc/kernel/cmdline into the boot entries and nothing after it
    (zz-proxmox-boot: get_first_line): a binding on a later line binds nothing and is not hand-made configuration."""
    files = {"/etc/kernel/cmdline": "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\nvfio-pci.ids=8086:125c\n"}
    found = handmade(fake_node, "amd-zfs-uefi", files)
    assert ("/etc/kernel/cmdline", 1, "iommu=pt") in found
    assert not [key for key in found if "vfio-pci.ids=8086:125c" in key[2]], found
