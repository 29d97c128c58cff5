"""file_state's view of one file, on real files in a temporary directory."""

from __future__ import annotations

import hashlib
import os

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._file_state import MAX_READ_BYTES, file_state


def test_a_regular_file_with_checksum_mode_owner_and_text(tmp_path):
    path = tmp_path / "vfio.conf"
    path.write_text("options vfio-pci ids=8086:15f3\n")
    os.chmod(path, 0o640)
    state = file_state(str(path), read=True)
    assert state == {"path": str(path), "exists": True, "type": "file", "mode": "0640",
                     "uid": os.getuid(), "gid": os.getgid(),
                     "checksum": hashlib.sha1(b"options vfio-pci ids=8086:15f3\n").hexdigest(),
                     "content": "options vfio-pci ids=8086:15f3\n"}
    assert "content" not in file_state(str(path))


def test_missing_paths_directories_and_links(tmp_path):
    assert file_state(str(tmp_path / "none"), read=True) == {"path": str(tmp_path / "none"), "exists": False}
    assert file_state(str(tmp_path))["type"] == "directory"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "none")
    state = file_state(str(link), read=True)
    assert (state["type"], "checksum" in state, "content" in state) == ("link", False, False)


def test_text_is_read_only_from_small_files(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"x" * (MAX_READ_BYTES + 1))
    with pytest.raises(ValueError, match="more than the"):
        file_state(str(path), read=True)
    assert file_state(str(path))["checksum"] == hashlib.sha1(b"x" * (MAX_READ_BYTES + 1)).hexdigest()


def test_undecodable_bytes_are_replaced(tmp_path):
    path = tmp_path / "latin1"
    path.write_bytes(b"caf\xe9\n")
    assert file_state(str(path), read=True)["content"] == "caf\ufffd\n"
