"""The recompile pipeline: image → rootfs → inventory → lifted units → megabinary → output image.

Each stage is timed for the report. Lifted units are cached by the BLAKE3 of
the ELF and the lifter's own source hash, so re-recompiling an image where
one file changed lifts only that file.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from formats import abi
from formats.cache import after_write, cache_root, publish_file, read_entry, scratch
from formats.annotations import (ANNOTATION_ABI_VERSION, ANNOTATION_LAYER_ROLE, LAYER_ROLE_MEGABINARY, ANNOTATION_ENGINES,
                                 ANNOTATION_MEGABINARY_DIGEST, ANNOTATION_MEGABINARY_VERSION,
                                 ANNOTATION_SIGNED_BY, ANNOTATION_SOURCE_DIGEST,
                                 ANNOTATION_TOOL_VERSION, LABEL_MEGABINARY_DIGEST, LABEL_RECOMPILED,
                                 MEGABINARY_PATH, OCI_BASE_DIGEST, SIGNATURE_PATH, format_engines)
from formats.errors import KilnError
from formats.megabinary import FORMAT_MAJOR, FORMAT_MINOR, Metadata, read_megabinary
from formats.signature import identity_of, make_signature
from recompiler.assemble import Build, build_megabinary
from recompiler.image import ExtraLayer, file_entry, open_image, write_image
from recompiler.inventory import ElfInventory, ElfKind, ElfRecord, take_inventory
from recompiler.x86_64.errors import WorkerDied

if TYPE_CHECKING:
    from formats.keys import SigningKey

__all__ = ["RecompileOptions", "RecompileReport", "UnitReport", "recompile_image", "tool_version"]

def tool_version() -> str:
    """The installed Kiln version (the ``kiln`` distribution)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("kiln")
    except PackageNotFoundError:
        return "0+unknown"


def _lifter_fingerprint() -> str:
    """A hash of the lifter's own sources: a changed lifter never reuses old cached units."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    files = sorted([*here.joinpath("x86_64").rglob("*.py"), *here.joinpath("wasm").rglob("*.py"),
                    here / "lift_api.py", Path(abi.__file__).resolve()])
    for f in files:
        h.update(str(f.relative_to(here.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class RecompileOptions:
    """What shapes a recompile (recorded in the megabinary's metadata where it matters)."""
    fmt: str = "oci"
    platform: str | None = None
    jobs: int = 1
    tag: str = "latest"
    cache: Path | None = None
    use_cache: bool = True
    signing_key: "SigningKey | None" = None
    """Sign the megabinary with this key (a signature file beside it in the layer)."""


@dataclass
class UnitReport:
    """One ELF's fate: recompiled (with its numbers) or skipped (with why).

    ``unsupported`` counts the lifted instructions with no semantics by mnemonic; ``trap_sites``
    counts the unit's trap sites (addresses that fault when reached) by mnemonic, those of
    functions the lifter failed on included; ``internal_errors`` lists those functions as
    [address, reason] (a lifter bug each)."""
    path: str
    blake3: str
    status: str                      # "recompiled" | "cached" | "skipped"
    reason: str = ""
    instructions: int = 0
    functions: int = 0
    unsupported: dict[str, int] = field(default_factory=dict)
    trap_sites: dict[str, int] = field(default_factory=dict)
    trap_site_count: int = 0
    internal_errors: list = field(default_factory=list)


@dataclass
class RecompileReport:
    """What ``recompile`` did, for people (``render``) and scripts (``to_dict``)."""
    image: str
    output: str
    fmt: str
    source_digest: str
    megabinary_digest: str = ""
    manifest_digest: str = ""
    signed_by: str = ""
    """Key id of the key that signed the megabinary, empty when unsigned."""
    units: list[UnitReport] = field(default_factory=list)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        unsupported: dict[str, int] = {}
        traps: dict[str, int] = {}
        for u in self.units:
            for m, n in u.unsupported.items():
                unsupported[m] = unsupported.get(m, 0) + n
            for m, n in u.trap_sites.items():
                traps[m] = traps.get(m, 0) + n
        return {
            "image": self.image, "output": self.output, "format": self.fmt,
            "source_digest": self.source_digest, "manifest_digest": self.manifest_digest,
            "megabinary_digest": self.megabinary_digest, "signed_by": self.signed_by or None,
            "elves_recompiled": sum(u.status in ("recompiled", "cached") for u in self.units),
            "elves_from_cache": sum(u.status == "cached" for u in self.units),
            "elves_skipped": sum(u.status == "skipped" for u in self.units),
            "functions": sum(u.functions for u in self.units),
            "instructions": sum(u.instructions for u in self.units),
            "unsupported_by_mnemonic": dict(sorted(unsupported.items(), key=lambda kv: (-kv[1], kv[0]))),
            "trap_sites": sum(u.trap_site_count for u in self.units),
            "trap_sites_by_mnemonic": dict(sorted(traps.items(), key=lambda kv: (-kv[1], kv[0]))),
            "internal_errors": sum(len(u.internal_errors) for u in self.units),
            "units": [u.__dict__ for u in self.units],
            "other_files_skipped": [{"path": p, "reason": r} for p, r in self.skipped_files],
            "stage_seconds": self.stage_seconds,
        }

    def render(self) -> str:
        d = self.to_dict()
        lines = [f"recompiled {d['elves_recompiled']} ELF file(s) "
                 f"({d['elves_from_cache']} from cache), skipped {d['elves_skipped']}",
                 f"  functions lifted:    {d['functions']}",
                 f"  instructions lifted: {d['instructions']}"]
        if d["trap_sites_by_mnemonic"]:
            top = ", ".join(f"{m}×{n}" for m, n in list(d["trap_sites_by_mnemonic"].items())[:12])
            lines.append(f"  trap sites:          {d['trap_sites']} ({top})")
        if d["internal_errors"]:
            lines.append(f"  lifter errors:       {d['internal_errors']} function(s) became trap sites "
                         "(a lifter bug each; --json lists them)")
        for u in self.units:
            if u.status == "skipped":
                lines.append(f"  skipped {u.path}: {u.reason}")
            else:
                top = ", ".join(f"{m}×{n}" for m, n in sorted(u.trap_sites.items(), key=lambda kv: -kv[1])[:4])
                lines.append(f"  {u.path}: {u.functions} functions, {u.instructions} instructions, "
                             f"{u.trap_site_count} trap sites" + (f" ({top})" if top else ""))
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in self.stage_seconds.items())
        lines.append(f"  time: {stages}")
        lines.append(f"megabinary {self.megabinary_digest}")
        if self.signed_by:
            lines.append(f"signed by key {self.signed_by} ({SIGNATURE_PATH})")
        lines.append(f"wrote {self.fmt} image {self.output} (manifest {self.manifest_digest})")
        return "\n".join(lines)


def _cache_root(opts: RecompileOptions) -> Path:
    return Path(opts.cache) if opts.cache is not None else cache_root()


def _liftable(rec: ElfRecord) -> str | None:
    """None if the recompiler takes this ELF now, else why not: every x86-64 program and
    shared object is (ABI 3: each its own module), relocatable objects and core dumps are not."""
    if rec.kind not in (ElfKind.EXEC, ElfKind.PIE, ElfKind.SHARED):
        return f"{rec.kind.value if hasattr(rec.kind, 'value') else rec.kind} files are not loadable"
    return None


def _lift_one(args: tuple[str, str, str, Path | None], jobs: int = 1) -> tuple[str, bytes | None, str]:  # noqa: C901
    """Lift one ELF (or load it from the cache) with ``jobs`` processes; returns (blake3, unit bytes, status)."""
    host_path, guest_path, digest, cache_file = args
    from recompiler.lift_api import lift_elf
    if cache_file is not None and (data := read_entry(cache_file)) is not None:
        return digest, data, "cached"   # parsed (and re-lifted if damaged) by the caller
    try:
        unit = lift_elf(Path(host_path), name=guest_path, jobs=jobs)
    except WorkerDied:
        raise                              # not this ELF's fault: the recompile stops
    except KilnError as err:
        return digest, None, f"failed: {err.message}"
    except Exception as exc:  # a lifter bug must not sink the other ELFs of the image
        return digest, None, f"failed: internal lifter error {type(exc).__name__}: {exc}"[:500]
    data = unit.to_bytes()
    if cache_file is not None:
        publish_file(cache_file, data)
    return digest, data, "recompiled"


ProgressFn = Callable[[str, int, int], None]

_SPLIT_ELF_BYTES = 1 << 20
"""ELF files at least this large are lifted by all workers together (batches of functions)."""


def recompile_image(image: Path | str, out: Path | str, opts: RecompileOptions = RecompileOptions(),
                    *, progress: ProgressFn | None = None) -> RecompileReport:
    """Recompile ``image`` into ``out``. Raises KilnError subclasses with what to do."""
    image, out = Path(image), Path(out)
    stage: dict[str, float] = {}
    cache = _cache_root(opts)
    t = time.monotonic()
    with open_image(image, platform=opts.platform) as src, scratch(cache / "work", "recompile-") as work:
        rootfs = Path(work) / "rootfs"
        src.unpack(rootfs)
        stage["unpack"] = time.monotonic() - t

        t = time.monotonic()
        inv = take_inventory(rootfs)
        stage["inventory"] = time.monotonic() - t
        report = RecompileReport(image=str(image), output=str(out), fmt=opts.fmt,
                                 source_digest=src.manifest_digest or src.config_digest)
        report.skipped_files = [(s.path, s.reason) for s in inv.skipped]

        t = time.monotonic()
        records, unit_bytes, statuses = _lift_stage(inv, rootfs, cache, opts, report, progress)
        stage["lift"] = time.monotonic() - t

        metadata = Metadata(tool_version=tool_version(), source_image=report.source_digest,
                            parameters={"platform": opts.platform or "linux/amd64",
                                        "lifter": _lifter_fingerprint()})
        build = Build(_lifter_fingerprint(), cache if opts.use_cache else None,
                      Path(work) / "megabinary", opts.jobs)
        fingerprint, mb_file, mb_digest = build_megabinary(records, unit_bytes, metadata, build,
                                                           stage, progress)
        report.megabinary_digest = mb_digest
        t = time.monotonic()
        annotations = {
            ANNOTATION_MEGABINARY_DIGEST: mb_digest,
            ANNOTATION_MEGABINARY_VERSION: f"{FORMAT_MAJOR}.{FORMAT_MINOR}",
            ANNOTATION_ABI_VERSION: str(abi.ABI_VERSION),
            ANNOTATION_ENGINES: format_engines([fingerprint.canonical]),
            ANNOTATION_TOOL_VERSION: tool_version(),
        }
        if src.manifest_digest:
            annotations[ANNOTATION_SOURCE_DIGEST] = src.manifest_digest
            annotations[OCI_BASE_DIGEST] = src.manifest_digest
        files = [file_entry(MEGABINARY_PATH, mb_file, 0o444)]
        if opts.signing_key is not None:
            with read_megabinary(mb_file) as mb:
                signature = make_signature(identity_of(mb), opts.signing_key)
            files.append(file_entry(SIGNATURE_PATH, signature, 0o444))
            report.signed_by = annotations[ANNOTATION_SIGNED_BY] = opts.signing_key.key_id
        layer = ExtraLayer(tuple(files),
                           created_by=f"kiln recompile {tool_version()}",
                           comment="Kiln megabinary: every ELF recompiled to WebAssembly",
                           annotations={ANNOTATION_LAYER_ROLE: LAYER_ROLE_MEGABINARY})
        written = write_image(src, out, extra_layers=[layer], annotations=annotations,
                              config_labels={LABEL_RECOMPILED: "true", LABEL_MEGABINARY_DIGEST: mb_digest},
                              fmt=opts.fmt, tag=opts.tag)
        report.manifest_digest = written.manifest_digest
        stage["write"] = time.monotonic() - t
    if opts.use_cache:
        after_write(cache)                  # keep the cache within its budget (formats/cache.py)
    report.stage_seconds = {k: round(v, 3) for k, v in stage.items()}
    return report


def _lift_stage(inv: ElfInventory, rootfs: Path, cache: Path, opts: RecompileOptions,
                report: RecompileReport, progress: ProgressFn | None
                ) -> tuple[list[ElfRecord], dict[str, bytes], dict[str, str]]:
    todo: list[ElfRecord] = []
    for rec in inv.elves:
        why = _liftable(rec)
        if why is not None:
            report.units.append(UnitReport(rec.path, rec.blake3, "skipped", why))
        else:
            todo.append(rec)
    if not todo:
        return [], {}, {}
    fp = _lifter_fingerprint()
    jobs = []
    for rec in todo:
        cache_file = (cache / "units" / fp / f"{rec.blake3}.unit") if opts.use_cache else None
        jobs.append((str(rootfs / rec.path.lstrip("/")), rec.path, rec.blake3, cache_file))
    unit_bytes: dict[str, bytes] = {}
    statuses: dict[str, str] = {}
    done = 0

    def finished(digest: str, data: bytes | None, status: str) -> None:
        nonlocal done
        unit_bytes[digest], statuses[digest] = data, status
        done += 1
        if progress:
            progress("lift", done, len(jobs))

    # Cached units are read here. A large ELF (or the only one to lift) is split into batches
    # of functions lifted by every worker; the other ELFs are lifted one per worker.
    fresh = [j for j in jobs if j[3] is None or not j[3].is_file()]
    for job in jobs:
        if job not in fresh:
            finished(*_lift_one(job))
    big = [j for j in fresh if len(fresh) == 1 or Path(j[0]).stat().st_size >= _SPLIT_ELF_BYTES]
    small = [j for j in fresh if j not in big]
    for job in big:
        finished(*_lift_one(job, opts.jobs))
    if opts.jobs > 1 and len(small) > 1:
        ctx = __import__("multiprocessing").get_context("fork")
        try:
            with concurrent.futures.ProcessPoolExecutor(max_workers=opts.jobs, mp_context=ctx) as pool:
                for result in pool.map(_lift_one, small):
                    finished(*result)
        except concurrent.futures.process.BrokenProcessPool:
            raise WorkerDied("lifting ELF files") from None
    else:
        for job in small:
            finished(*_lift_one(job))
    lifted: list[ElfRecord] = []
    for rec in todo:
        status = statuses[rec.blake3]
        if unit_bytes.get(rec.blake3) is None:
            report.units.append(UnitReport(rec.path, rec.blake3, "skipped",
                                           status.removeprefix("failed: ")))
            continue
        from recompiler.lift_api import LiftedUnit
        try:
            st = LiftedUnit.from_bytes(unit_bytes[rec.blake3]).stats
        except KilnError:
            if status != "cached":
                raise
            job = next(j for j in jobs if j[2] == rec.blake3)     # a damaged cache entry: lift again
            job[3].unlink(missing_ok=True)
            _, unit_bytes[rec.blake3], status = _lift_one(job)
            if unit_bytes[rec.blake3] is None:
                report.units.append(UnitReport(rec.path, rec.blake3, "skipped", status.removeprefix("failed: ")))
                continue
            st = LiftedUnit.from_bytes(unit_bytes[rec.blake3]).stats
        traps = {str(m): int(n) for m, n in dict(st.get("trap_sites", {})).items()}
        report.units.append(UnitReport(rec.path, rec.blake3, status,
                                       instructions=int(st.get("instructions", 0)),
                                       functions=int(st.get("functions", 0)),
                                       unsupported=dict(st.get("unsupported", {})),
                                       trap_sites=traps, trap_site_count=sum(traps.values()),
                                       internal_errors=[list(x) for x in st.get("internal_errors", [])]))
        lifted.append(rec)
    return lifted, unit_bytes, statuses
