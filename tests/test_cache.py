"""Kiln's cache within its budget: real recompiles and runs of small images fill a private cache
past a small KILN_CACHE_MAX; the limit is reached and held, what was used last stays, what is in
use is never removed, and processes recompiling, running and pruning at once all get right
answers. Every program's output is compared with the same program run natively."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from corpus.build import CorpusBinary, build_corpus, run_native

BIN = Path(sys.executable).parent
RECOMPILE = str(BIN / "recompile")
KILN = str(BIN / "kiln")
REPO = Path(__file__).resolve().parent.parent

# Small musl programs of similar size, each printing a deterministic result.
NAMES = ("crc32", "bitops", "struct_copy", "switch_table", "sort_stdin")


@pytest.fixture(scope="module")
def programs() -> dict[str, CorpusBinary]:
    return {b.name: b for b in build_corpus(variants=["musl-static"], names=list(NAMES))}


@pytest.fixture(scope="module")
def native(programs: dict[str, CorpusBinary]) -> dict[str, tuple[bytes, int]]:
    out = {}
    for name, b in programs.items():
        stdout, _, status = run_native(b)
        out[name] = (stdout, status)
    return out


def _env(base: Path, max_size: int | str | None = None) -> dict[str, str]:
    """A private cache under ``base`` (byte code elsewhere, no user config), budget ``max_size``."""
    env = dict(os.environ, KILN_CACHE=str(base / "cache"), XDG_CONFIG_HOME=str(base / "config"),
               PYTHONPYCACHEPREFIX=str(base / "pyc"))
    env.pop("KILN_CACHE_MAX", None)
    if max_size is not None:
        env["KILN_CACHE_MAX"] = str(max_size)
    return env


def _rootfs(base: Path, b: CorpusBinary) -> Path:
    root = base / "src" / b.name
    if not root.exists():
        (root / "bin").mkdir(parents=True)
        shutil.copy2(b.path, root / "bin" / b.name)
    return root


def _recompile(base: Path, b: CorpusBinary, env: dict[str, str], out: Path) -> dict:
    proc = subprocess.run([RECOMPILE, str(_rootfs(base, b)), "-o", str(out), "--json"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _run_argv(image: Path, b: CorpusBinary) -> list[str]:
    return [KILN, "run", *[f"--env={k}={v}" for k, v in b.env], "--workdir", "/", str(image), "--",
            f"/bin/{b.name}", *b.args]


def _run(image: Path, b: CorpusBinary, env: dict[str, str]) -> tuple[bytes, int]:
    proc = subprocess.run(_run_argv(image, b), input=b.stdin, env=env, capture_output=True,
                          timeout=300)
    assert proc.returncode == 0 or not proc.stderr.startswith(b"error:"), proc.stderr
    return proc.stdout, proc.returncode


def _kiln_cache(env: dict[str, str], *args: str) -> dict:
    proc = subprocess.run([KILN, "cache", *args, "--json"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _du(path: Path) -> int:
    return int(subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def test_budget_is_reached_and_held_and_the_recently_used_image_stays(
        tmp_path: Path, programs: dict[str, CorpusBinary], native: dict[str, tuple[bytes, int]]) -> None:
    a, b, c = (programs[n] for n in ("crc32", "bitops", "struct_copy"))
    free = _env(tmp_path)
    # What one image costs, and what a second one adds (the core module's artifacts are shared).
    for p in (a, b):
        _recompile(tmp_path, p, free, tmp_path / f"{p.name}.img")
        assert _run(tmp_path / f"{p.name}.img", p, free) == native[p.name]
        if p is a:
            one = _kiln_cache(free, "ls")["total_bytes"]
    two = _kiln_cache(free, "ls")["total_bytes"]
    per_image = two - one
    limit = one + per_image * 3 // 2          # room for two images and a half
    assert two <= limit
    held = _env(tmp_path, limit)

    totals = []
    report = _recompile(tmp_path, a, held, tmp_path / "a2.img")     # a is used again, after b
    assert report["elves_from_cache"] == 1
    assert _run(tmp_path / "a2.img", a, held) == native[a.name]
    totals.append(_kiln_cache(held, "ls")["total_bytes"])
    _recompile(tmp_path, c, held, tmp_path / "c.img")               # over the budget: b goes
    assert _run(tmp_path / "c.img", c, held) == native[c.name]
    listing = _kiln_cache(held, "ls")
    totals.append(listing["total_bytes"])

    assert listing["max_bytes"] == limit and listing["max_from"] == "KILN_CACHE_MAX"
    assert all(t <= limit for t in totals), (totals, limit)
    assert totals[-1] > limit - per_image, "eviction removed more than it had to"
    # The listing is what is on disk (du counts the same blocks), cache by cache.
    assert listing["total_bytes"] == _du(tmp_path / "cache")
    by_name = {x["name"]: x for x in listing["caches"]}
    for name in ("units", "bundles", "megabinary"):
        assert by_name[name]["bytes"] == _du(tmp_path / "cache" / name)
    assert by_name["bundles"]["entries"] == len(list((tmp_path / "cache" / "bundles").iterdir()))
    assert by_name["bundles"]["oldest_use"] <= by_name["bundles"]["newest_use"]

    # a (used after b) is still cached; b, the least recently used, was lifted again.
    assert _recompile(tmp_path, a, held, tmp_path / "a3.img")["elves_from_cache"] == 1
    report = _recompile(tmp_path, b, held, tmp_path / "b2.img")
    assert report["elves_from_cache"] == 0
    assert _run(tmp_path / "b2.img", b, held) == native[b.name]
    assert _kiln_cache(held, "ls")["total_bytes"] <= limit
    assert _kiln_cache(held, "prune")["removed"] == []               # nothing left to do


def test_prune_keeps_the_bundle_of_a_running_image(
        tmp_path: Path, programs: dict[str, CorpusBinary], native: dict[str, tuple[bytes, int]]) -> None:
    p = programs["sort_stdin"]
    env = _env(tmp_path)
    image = tmp_path / "img"
    _recompile(tmp_path, p, env, image)
    bundles = tmp_path / "cache" / "bundles"
    run = subprocess.Popen(_run_argv(image, p), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120       # the bundle is leased before it is published
        while not list(bundles.glob("*/.kiln-bundle-complete")):
            assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
            time.sleep(0.05)
        report = _kiln_cache(env, "prune", "--max", "0")
        assert [e["cache"] for e in report["in_use"]] == ["bundles"]
        assert {e["cache"] for e in report["removed"]} >= {"units", "link", "aot", "megabinary"}
        assert report["errors"] == []
        assert [d.name for d in bundles.iterdir()] == [report["in_use"][0]["entry"].split("/")[1]]
        out, err = run.communicate(p.stdin, timeout=300)
    finally:
        run.kill()
        run.wait()
    assert (out, run.returncode) == native[p.name], err
    # Once the run has ended its bundle goes like any other entry, and a new run makes it again.
    report = _kiln_cache(env, "prune", "--max", "0")
    assert [e["cache"] for e in report["removed"]].count("bundles") == 1
    assert report["in_use"] == []
    assert [c["entries"] for c in _kiln_cache(env, "ls")["caches"] if c["name"] == "bundles"] == [0]
    assert _run(image, p, env) == native[p.name]


def test_budget_settings_and_bad_values(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert _kiln_cache(env, "ls")["max_from"] == "default"
    config = tmp_path / "config" / "kiln" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[cache]\nmax = "3M"\n')
    got = _kiln_cache(env, "ls")
    assert (got["max_bytes"], got["max_from"]) == (3 << 20, str(config))
    got = _kiln_cache(_env(tmp_path, "1.5g"), "ls")                 # the environment wins
    assert (got["max_bytes"], got["max_from"]) == (3 << 29, "KILN_CACHE_MAX")
    human = subprocess.run([KILN, "cache", "ls"], env=env, capture_output=True, text=True, timeout=60)
    assert human.returncode == 0 and "3.0 MiB (budget from" in human.stdout

    bad = subprocess.run([KILN, "cache", "ls"], env=_env(tmp_path, "lots"), capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: KILN_CACHE_MAX 'lots' is not a size")
    assert "hint:" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run([KILN, "cache", "prune", "--max", "12 parsecs", "--json"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "is not a size" in json.loads(bad.stderr)["error"]
    config.write_text("[cache\nmax = 3\n")
    bad = subprocess.run([KILN, "cache", "ls"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and str(config) in bad.stderr and "Traceback" not in bad.stderr


def test_a_directory_that_is_not_kilns_is_never_pruned(tmp_path: Path) -> None:
    # KILN_CACHE set by mistake to a directory holding other things (a home directory).
    home = tmp_path / "home"
    for d in ("Documents/thesis", "work/project"):
        (home / d).mkdir(parents=True)
        (home / d / "notes.txt").write_text("mine\n")
    env = dict(_env(tmp_path), KILN_CACHE=str(home))
    bad = subprocess.run([KILN, "cache", "prune", "--max", "0"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith(f"error: {home} holds files that are not")
    hint = bad.stderr.split("hint: ", 1)[1]
    assert (home / "work/project/notes.txt").read_text() == "mine\n"
    assert not (home / "CACHEDIR.TAG").exists()
    # Marked as the hint says (the cache directory tag convention), it is Kiln's to prune.
    subprocess.run(["sh", "-c", hint[hint.index("printf"):].strip()], check=True)
    removed = _kiln_cache(env, "prune", "--max", "0")["removed"]
    assert sorted(e["entry"] for e in removed) == ["Documents/thesis", "work/project"]


def test_eviction_removes_a_tree_of_any_depth(tmp_path: Path) -> None:
    # An unpacked rootfs may nest directories deeper than Python's recursion allows, and hold
    # directories nobody may enter: sizing and eviction get through both.
    env = _env(tmp_path)
    entry = tmp_path / "cache" / "work" / "rootfs-left-behind"
    entry.mkdir(parents=True)
    fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(1200):               # Python's own tree functions give up past ~1000
        os.mkdir("d", dir_fd=fd)
        if level % 100 == 0:
            with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
                f.write(b"x" * 5000)
        nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.mkdir("locked", 0o000, dir_fd=fd)
    os.close(fd)
    try:
        _kiln_cache(env, "ls")              # its first scan writes the sizes memo (.kiln-sizes)
        listing = _kiln_cache(env, "ls")
        assert listing["total_bytes"] == _du(tmp_path / "cache")
        report = _kiln_cache(env, "prune", "--max", "0")
        assert [e["entry"] for e in report["removed"]] == ["work/rootfs-left-behind"]
        assert report["removed"][0]["bytes"] == listing["caches"][0]["bytes"] - 4096
        assert report["errors"] == []
        assert list((tmp_path / "cache" / "work").iterdir()) == []
    finally:                                # pytest's own clean-up cannot remove such a tree
        from formats.trees import remove_tree_at
        parent = os.open(entry.parent, os.O_RDONLY | os.O_DIRECTORY)
        remove_tree_at(parent, entry.name)
        os.close(parent)


def test_concurrent_recompiles_and_runs_while_a_pruner_empties_the_cache(
        tmp_path: Path, programs: dict[str, CorpusBinary], native: dict[str, tuple[bytes, int]]) -> None:
    # Every write is followed by eviction down to one byte, and a pruner empties the cache in a
    # loop; two workers recompile and run the same image (same cache keys, same bundle).
    env = _env(tmp_path, 1)
    work = [programs[n] for n in ("crc32", "crc32", "switch_table")]
    failures: list[str] = []
    prunes: list[dict] = []
    done = threading.Event()

    def worker(i: int, p: CorpusBinary) -> None:
        try:
            for round_ in range(2):
                image = tmp_path / f"w{i}-{round_}.img"
                _recompile(tmp_path, p, env, image)
                got = _run(image, p, env)
                if got != native[p.name]:
                    failures.append(f"{p.name} (worker {i}, round {round_}): {got!r}")
        except Exception as e:              # noqa: BLE001 (reported below, with the others)
            failures.append(f"{p.name} (worker {i}): {type(e).__name__}: {e}")

    def pruner() -> None:
        try:
            while not done.is_set():
                prunes.append(_kiln_cache(env, "prune", "--max", "0"))
        except Exception as e:              # noqa: BLE001 (reported below)
            failures.append(f"pruner: {type(e).__name__}: {e}")

    for p in work:
        _rootfs(tmp_path, p)                # made before the workers share it
    threads = [threading.Thread(target=worker, args=(i, p)) for i, p in enumerate(work)]
    cleaner = threading.Thread(target=pruner)
    cleaner.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    cleaner.join()
    assert failures == []
    assert prunes and all(r["errors"] == [] for r in prunes)
    assert sum(len(r["removed"]) for r in prunes) > 0
    # Nothing half made or half removed is left: with nobody using the cache, a prune to zero
    # leaves only directories, Kiln's own records, locks and the cache directory tag.
    _kiln_cache(env, "prune", "--max", "0")
    left = [str(f.relative_to(tmp_path / "cache")) for f in (tmp_path / "cache").rglob("*")
            if not f.is_dir() and not f.name.startswith(".kiln-") and not f.name.endswith(".lock")]
    assert left == ["CACHEDIR.TAG"]


def test_two_benchmark_runs_at_once_both_succeed() -> None:
    # Both recompile the benchmark programs, unpack a bundle and run `true` natively and under
    # Kiln, in Kiln's usual cache (they used to share one working directory there, and one
    # failed). As root, `kiln run --rootfs /` needs an idmapped mount of the host's /, which
    # some machines refuse: the Kiln column then fails alike in both runs (the run's own
    # error), and each run must still have prepared it (recompiled and unpacked) without error.
    argv = [sys.executable, str(REPO / "bench" / "run.py"), "--kiln", "--only", "true", "--runs", "1",
            "--no-qemu", "--scale", "0.01", "--json"]
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=1200)
        assert "error:" not in err and out, err
        (result,) = json.loads(out)["benchmarks"]
        assert result["name"] == "true" and result["native"]["status"] == "ok", result
        kiln = result["kiln"]
        if kiln["status"] == "failed" and os.geteuid() == 0 and "idmapped mounts" in kiln["note"]:
            assert run.returncode == 1
            continue
        assert run.returncode == 0 and kiln["status"] == "ok", kiln
        assert kiln["output_blake3"] == result["native"]["output_blake3"]


def test_a_file_is_published_and_copied_out_whole_without_being_read_in(tmp_path: Path) -> None:
    """How the recompiler keeps a megabinary (gigabytes for a distribution): published from
    its file (a hard link on the cache's file system, a kernel copy across file systems) and,
    on a hit, copied out of the cache under a lease."""
    from formats.cache import copy_leased, publish_copy, use
    src = tmp_path / "cache" / "work" / "mb.kmb"
    src.parent.mkdir(parents=True)
    data = os.urandom(3 << 20) + b"tail"
    src.write_bytes(data)
    entry = tmp_path / "cache" / "megabinary" / "x.kmb"
    publish_copy(entry, src)
    assert entry.read_bytes() == data and entry.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in entry.parent.iterdir()) == ["x.kmb"]      # no temporary left
    shm = Path("/dev/shm")
    if shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        across = shm / f"kiln-test-{os.getpid()}" / "x.kmb"
        try:
            publish_copy(across, src)                 # no hard link across file systems
            assert across.read_bytes() == data and across.stat().st_nlink == 1
        finally:
            shutil.rmtree(across.parent, ignore_errors=True)
    lease = use(entry)
    assert lease is not None
    with lease:
        copy_leased(lease, tmp_path / "out.kmb")
        with pytest.raises(FileExistsError):
            copy_leased(lease, tmp_path / "out.kmb")
    assert (tmp_path / "out.kmb").read_bytes() == data
