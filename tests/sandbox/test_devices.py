"""The /dev directory bound into sandboxes on root hosts (see _devices)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from bastion.sandbox import _devices

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root makes the directory")


@needs_root
def test_the_directory_holds_exactly_the_usual_nodes_owned_by_root() -> None:
    d = _devices.device_dir()
    assert d is not None
    st = os.stat(d)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755)
    for name, (major, minor) in _devices._NODES.items():
        node = os.lstat(os.path.join(d, name))
        assert stat.S_ISCHR(node.st_mode) and node.st_uid == 0
        assert (os.major(node.st_rdev), os.minor(node.st_rdev)) == (major, minor)
        assert stat.S_IMODE(node.st_mode) == 0o666
    assert set(os.listdir(d)) == set(_devices._NODES) | set(_devices._LINKS) | {"shm"}
    assert _devices.dev_args(1 << 20)[:3] == ["--dev-bind", d, "/dev"]


@needs_root
def test_a_parent_others_can_write_to_is_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # world-writable, no sticky bit: another user could swap ours
    monkeypatch.setattr(tempfile, "tempdir", str(open_dir))
    with pytest.raises(OSError, match="sticky"):
        _devices._make()
    assert list(open_dir.iterdir()) == []
    open_dir.chmod(0o1777)  # as /tmp: sticky, so only root renames root's entries
    made = _devices._make()
    assert Path(made).parent == open_dir


def test_without_the_directory_bwrap_builds_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_devices, "device_dir", lambda: None)
    assert _devices.dev_args(1 << 20) == ["--dev", "/dev"]
