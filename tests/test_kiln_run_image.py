"""`kiln run IMAGE`: container-runtime semantics of Entrypoint, Cmd, Env, WorkingDir, and refusals."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from examples.busybox.build import build_busybox_image

KILN = [sys.executable, "-m", "vkernel.cli"]
RECOMPILE = [sys.executable, "-m", "recompiler.cli"]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("runimg")
    src = build_busybox_image(base / "busybox")
    out = base / "recompiled"
    proc = subprocess.run([*RECOMPILE, str(src), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


def _run(args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([*KILN, "run", *args], input=stdin, capture_output=True, timeout=300)


def test_default_cmd_is_the_image_shell(image: Path) -> None:
    got = _run([str(image)], stdin=b"echo from-default-cmd; exit 5\n")
    assert got.stdout == b"from-default-cmd\n"
    assert got.returncode == 5


def test_command_replaces_cmd_and_env_merges(image: Path) -> None:
    got = _run(["--env", "GREETING=hi there", str(image), "--", "/bin/sh", "-c", 'echo "$GREETING|$PATH"'])
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"hi there|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"


def test_env_overrides_image_env(image: Path) -> None:
    got = _run(["-e", "PATH=/bin", str(image), "--", "/bin/sh", "-c", 'echo "$PATH"'])
    assert got.stdout == b"/bin\n"


def test_workdir(image: Path) -> None:
    got = _run(["--workdir", "/etc", str(image), "--", "/bin/pwd"])
    assert (got.stdout, got.returncode) == (b"/etc\n", 0)


def test_entrypoint_override(image: Path) -> None:
    got = _run(["--entrypoint", "/bin/echo", str(image), "--", "a", "b"])
    assert (got.stdout, got.returncode) == (b"a b\n", 0)


def test_writes_do_not_touch_the_image_and_upper_keeps_them(image: Path, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    got = _run(["--upper", str(upper), str(image), "--", "/bin/sh", "-c",
                "echo new > /etc/created && rm /etc/group && cat /etc/created"])
    assert (got.stdout, got.returncode) == (b"new\n", 0), got.stderr
    assert (upper / "etc/created").read_text() == "new\n"
    assert (upper / "etc/.wh.group").exists()
    again = _run([str(image), "--", "/bin/cat", "/etc/group"])
    assert again.returncode == 0 and b"root" in again.stdout


def test_unrecompiled_image_is_refused(tmp_path: Path) -> None:
    src = build_busybox_image(tmp_path / "plain")
    got = _run([str(src), "--", "/bin/true"])
    assert got.returncode == 2
    err = got.stderr.decode()
    assert "has not been recompiled" in err and "hint: run: recompile" in err
    assert "Traceback" not in err


def test_megabinary_swapped_in_image_is_refused(image: Path, tmp_path: Path) -> None:
    """An image whose megabinary layer was replaced (annotation no longer matches) does not run."""
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(image, bad)
    index = json.loads((bad / "index.json").read_text())
    mdigest = index["manifests"][0]["digest"].split(":")[1]
    manifest_path = bad / "blobs/sha256" / mdigest
    manifest = json.loads(manifest_path.read_text())
    manifest["annotations"]["io.kiln.megabinary.digest"] = "blake3:" + "00" * 32
    data = json.dumps(manifest).encode()
    import hashlib
    new = hashlib.sha256(data).hexdigest()
    (bad / "blobs/sha256" / new).write_bytes(data)
    index["manifests"][0]["digest"] = f"sha256:{new}"
    index["manifests"][0]["size"] = len(data)
    (bad / "index.json").write_text(json.dumps(index))
    got = _run([str(bad), "--", "/bin/true"])
    assert got.returncode == 2
    err = got.stderr.decode()
    assert "does not match" in err and "Traceback" not in err
