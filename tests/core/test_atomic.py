"""The one atomic-write helper: complete file or the old one, never a temp file left behind."""

from __future__ import annotations

import os
import stat

import pytest

from weightless_core.io.atomic import atomic_open, atomic_path, write_text_atomic


def test_text_replaces_the_old_file_and_leaves_only_it(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")
    write_text_atomic(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert os.listdir(tmp_path) == ["report.html"]


def test_a_failing_stream_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "model.wlss"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target, "wb", fsync=True) as f:
        f.write(b"half")
        assert os.listdir(tmp_path) != ["model.wlss"]  # the temp file sits next to it
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.wlss"]


def test_path_form_for_writers_that_want_a_name(tmp_path):
    target = tmp_path / "m.pt"
    with atomic_path(target, prefix=".upload-", suffix="") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".upload-") and tmp.exists()
        assert not target.exists()
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x" and os.listdir(tmp_path) == ["m.pt"]


def test_permissions_follow_the_umask_or_stay_private(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a", "a")
        with atomic_open(tmp_path / "b", perms=0o600) as f:
            f.write(b"b")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o600
