"""Safe extraction: malicious tar and zip members are refused and nothing lands outside the
target folder; a well-formed archive (with a link inside it) extracts fully."""

import io
import os
import stat
import tarfile
import zipfile

import pytest
from data_writers import data_env, write_tar_gz, write_zip  # noqa: F401

from gendd.data.archives import read_tar_members, safe_extract
from gendd.errors import GenddError


def _tar(path, entries):
    """entries: (name, kind, payload) with kind file | dir | sym | hard | fifo."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = payload or ""
            tar.addfile(info)
    return path


def _zip_symlink(path, name, target, files=()):
    with zipfile.ZipFile(path, "w") as zf:
        for fname, data in files:
            zf.writestr(fname, data)
        info = zipfile.ZipInfo(name)
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return path


def test_a_good_archive_extracts_fully(tmp_path):
    archive = _tar(tmp_path / "good.tar.gz", [
        ("top", "dir", None), ("top/a.txt", "file", b"alpha"), ("top/sub/b.txt", "file", b"beta"),
        ("top/link", "sym", "sub/b.txt"), ("top/hard", "hard", "top/a.txt"), ("./top/c", "file", b"c")])
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "top/a.txt").read_bytes() == b"alpha"
    assert (out / "top/link").is_symlink() and (out / "top/link").read_bytes() == b"beta"
    assert (out / "top/hard").read_bytes() == b"alpha" and (out / "top/c").read_bytes() == b"c"
    z = write_zip(tmp_path / "good.zip", {"top/x.txt": b"x", "top/d/y.txt": b"y"})
    out = safe_extract(z, tmp_path / "zout")
    assert (out / "top/d/y.txt").read_bytes() == b"y"


@pytest.mark.parametrize("entries, message", [
    ([("../evil", "file", b"x")], "absolute path or '..'"),
    ([("top/../../evil", "file", b"x")], "absolute path or '..'"),
    ([("/tmp/gendd-evil-abs", "file", b"x")], "absolute path or '..'"),
    ([("link", "sym", "../outside")], "may only point down"),
    ([("link", "sym", "/etc")], "may only point down"),
    ([("esc", "sym", "../outside"), ("esc/evil", "file", b"x")], "may only point down"),
    # Links that resolve inside when extracted, until a later link on their path changes.
    ([("dir", "sym", "."), ("dir/up", "sym", "..")], "may only point down"),
    ([("q", "sym", "d/e"), ("p", "sym", "q/../.."), ("d", "sym", "."), ("p/evil", "file", b"x")],
     "may only point down"),
    ([("hard", "hard", "../../etc/passwd")], "absolute path or '..'"),
    ([("pipe", "fifo", None)], "not a file, folder or link"),
])
def test_malicious_tar_members_are_refused(tmp_path, entries, message):
    archive = _tar(tmp_path / "evil.tar.gz", [("ok.txt", "file", b"fine")] + entries)
    target = tmp_path / "box" / "target"
    with pytest.raises(GenddError, match=message) as e:
        safe_extract(archive, target)
    assert str(archive) in str(e.value) and "\n" not in str(e.value)
    # Nothing outside the target folder: its parent holds only the target itself.
    assert [p.name for p in (tmp_path / "box").iterdir()] == ["target"]
    assert not (tmp_path / "outside").exists() and not (tmp_path / "evil").exists()


def test_malicious_zip_members_are_refused(tmp_path):
    target = tmp_path / "box" / "target"
    for name in ("../evil.txt", "a/../../evil.txt", "/abs-evil.txt"):
        z = write_zip(tmp_path / "evil.zip", {"ok.txt": b"ok", name: b"x"})
        with pytest.raises(GenddError, match="refusing member"):
            safe_extract(z, target)
    z = _zip_symlink(tmp_path / "link.zip", "link", "../../outside")
    with pytest.raises(GenddError, match="may only point down"):
        safe_extract(z, target)
    assert [p.name for p in (tmp_path / "box").iterdir()] == ["target"]
    # A zip link that stays inside is recreated as a link.
    z = _zip_symlink(tmp_path / "ok.zip", "top/link", "f.txt", files=[("top/f.txt", b"f")])
    out = safe_extract(z, tmp_path / "ok")
    assert (out / "top/link").is_symlink() and (out / "top/link").read_bytes() == b"f"


def test_streaming_reader_takes_only_regular_members(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [("d", "dir", None), ("d/x", "file", b"xx"),
                                           ("d/l", "sym", "x"), ("d/y", "file", b"yy")])
    assert read_tar_members(archive, {"d/x", "d/l", "d/missing"}) == {"d/x": b"xx"}
    write_tar_gz(tmp_path / "b.tar.gz", {"d/x": os.urandom(100000)})
    data = (tmp_path / "b.tar.gz").read_bytes()
    (tmp_path / "b.tar.gz").write_bytes(data[:50000])
    with pytest.raises(GenddError, match="corrupt or truncated archive"):
        read_tar_members(tmp_path / "b.tar.gz", {"d/x"})
    with pytest.raises(GenddError, match="corrupt or unreadable archive"):
        safe_extract(tmp_path / "b.tar.gz", tmp_path / "out")
