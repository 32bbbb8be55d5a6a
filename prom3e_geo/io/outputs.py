"""Safe output paths: refuse to clobber, write under a temporary name, rename when complete.

A crash, a Ctrl-C or a bad input never leaves a half-written file under the final name, and an
existing output is only replaced when the caller asked for it (`overwrite=True`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from prom3e_geo.errors import InputError, Prom3eGeoError, RunFailed
from prom3e_geo.partials import partial_path, remove, remove_stale_partials


def check_output(path: str | Path, overwrite: bool = False) -> Path:
    """Validate an output path before any work is done; return it as a Path.

    An existing output is replaced only with `overwrite`, and only if it is of the same kind: a
    file for a file output, a Zarr store (a folder with Zarr metadata) for a `.zarr` output. A
    user's unrelated folder is never deleted.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist")
    check_writable(path.parent)
    if not path.exists():
        return path
    if not overwrite:
        raise InputError(f"output {path} already exists (pass --overwrite to replace it)")
    if path.is_dir():
        from prom3e_geo.stores.grid_store import is_zarr_store  # xarray, zarr: only for folders

        if not is_zarr_store(path):
            raise InputError(
                f"output {path} is a folder that is not a Zarr store; refusing to replace it"
            )
    return path


@dataclass(frozen=True)
class OutputSpec:
    """A layer command's outputs: a COG, and optionally its Zarr twin and a PNG quicklook."""

    out: Path
    zarr: Path | str | None = None  # a path, or an object-storage URL (s3://, gs://, az://)
    zarr_format: int = 2
    png: Path | None = None
    overwrite: bool = False

    def paths(self) -> list[Path]:
        """The outputs on this machine's disk."""
        return [Path(p) for p in (self.out, self.zarr, self.png) if p is not None and is_local(p)]

    def check(self, inputs: Sequence[Path | str | None] = ()) -> None:
        """Refuse, before any work, outputs that exist (without overwrite), sit in a missing
        folder, repeat each other, name an input or carry the extension of another format."""
        for path in self.paths():
            check_output(path, self.overwrite)
        if self.zarr is not None and not is_local(self.zarr):
            check_remote_output(self.zarr, self.overwrite)
        check_distinct(self.paths(), list(inputs))
        check_extension(self.out, GEOTIFF_SUFFIXES, "a GeoTIFF (COG)")
        if self.zarr is not None:
            check_extension(Path(str(self.zarr)), (".zarr",), "a Zarr store")
        if self.png is not None:
            check_extension(self.png, (".png",), "a PNG image")


GEOTIFF_SUFFIXES = (".tif", ".tiff")


def is_local(path: str | Path) -> bool:
    """Whether an output names this machine's disk (not an object-storage URL)."""
    from prom3e_geo.stores.location import Location

    return Location.parse(path).is_local


def check_remote_output(url: str | Path, overwrite: bool = False) -> None:
    """Validate a Zarr output on object storage before any work: a scheme prom3e-geo writes,
    credentials that work, and no existing output (or, with `overwrite`, a Zarr store)."""
    from prom3e_geo.stores.location import Location

    location = Location.parse(url)
    location.check_writable()
    if not location.exists():
        return
    if not overwrite:
        raise InputError(f"output {url} already exists (pass --overwrite to replace it)")
    if not location.has_zarr_group():
        raise InputError(
            f"output {url} holds objects that are not a Zarr store; refusing to replace it"
        )


def check_extension(path: Path, suffixes: Sequence[str], written: str) -> None:
    """Refuse an output name whose extension says another format than the one written (a
    GeoTIFF named `.jpg` opens nowhere as what its name promises)."""
    if Path(path).suffix.lower() not in suffixes:
        raise InputError(
            f"output {path}: this option writes {written}; name it with {' or '.join(suffixes)}"
        )


def check_writable(folder: Path) -> None:
    """Refuse a folder where no file can be created (read-only, /proc, a full disk)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".prom3e-geo-probe-"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write in {folder}: {exc.strerror or exc}") from None


def check_distinct(outputs: Sequence[Path | None], inputs: Sequence[Path | str | None]) -> None:
    """Refuse an output path that repeats another output or names an input."""
    seen: set[Path] = set()
    ins = {Path(p).resolve() for p in inputs if p is not None}
    for p in outputs:
        if p is None:
            continue
        r = Path(p).resolve()
        if r in ins:
            raise InputError(f"output {p} is also an input; choose another name")
        if r in seen:
            raise InputError(f"output {p} is named twice")
        seen.add(r)


class WriteFailed(RunFailed):
    """The world failed a write (a full disk, a folder made read-only or closed to this user
    mid-run): the message names what happened and the path; nothing partial is left."""


FAULTS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
WRITE_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # only a write can meet these
FULL_BYTES = 1 << 20  # less free space than this after a failed write: the disk filled up


def write_fault(exc: BaseException, path: Path) -> WriteFailed | None:
    """`WriteFailed` when `exc`, raised while writing `path`, comes from the file system: an
    OSError with one of the `FAULTS` numbers, or any error (GDAL's own, for example) raised
    while the output's folder is full or read-only. None for anything else."""
    if isinstance(exc, Prom3eGeoError):  # already says what is wrong
        return None
    reason = FAULTS.get(exc.errno) if isinstance(exc, OSError) and exc.errno else None
    if reason is None:
        try:
            stat = os.statvfs(path.parent)
        except OSError:
            return None
        if stat.f_flag & os.ST_RDONLY:
            reason = FAULTS[errno.EROFS]
        elif stat.f_bavail * stat.f_frsize < FULL_BYTES:
            reason = FAULTS[errno.ENOSPC]
        else:
            return None
    return WriteFailed(f"{reason} writing {path}")


_TOGETHER: ContextVar[list[tuple[Path, Path | str, bool]] | None] = ContextVar(
    "prom3e_geo_outputs_together", default=None
)


class OutputAppeared(InputError):
    """An output that did not exist when the run started appeared before it finished (another
    run writing the same outputs): this run's outputs are dropped, the other's are kept."""


@contextmanager
def committed_together() -> Iterator[None]:
    """Outputs finished inside the block (by `atomic_output`) are renamed into place together
    when the whole block succeeds; if any part fails, none of them appears."""
    finished: list[tuple[Path, Path | str, bool]] = []
    token = _TOGETHER.set(finished)
    try:
        yield
    except BaseException:
        for tmp, _, _ in finished:
            remove(tmp)
        raise
    finally:
        _TOGETHER.reset(token)
    _commit(finished)


@contextmanager
def atomic_output(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds
    (inside `committed_together`: when every output of that block has succeeded)."""
    path = check_output(path, overwrite)
    remove_stale_partials(path)
    tmp = partial_path(path)
    remove(tmp)
    try:
        yield tmp
    except Exception as exc:
        fault = write_fault(exc, path)  # before the partial output is removed (freeing space)
        remove(tmp)
        if fault is None:
            raise
        raise fault from None
    except BaseException:
        remove(tmp)
        raise
    together = _TOGETHER.get()
    if together is not None:
        together.append((tmp, path, overwrite))
    else:
        _commit([(tmp, path, overwrite)])


@contextmanager
def remote_zarr_output(url: str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a local temporary folder for a Zarr store bound for object storage; upload it only
    if the block succeeds (inside `committed_together`: with the other outputs of the block)."""
    check_remote_output(url, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix="prom3e-geo-upload-")) / "store.zarr"
    try:
        yield tmp
    except BaseException:
        remove(tmp.parent)
        raise
    together = _TOGETHER.get()
    if together is not None:
        together.append((tmp, url, overwrite))
    else:
        _commit([(tmp, url, overwrite)])


def _upload_zarr(tmp: Path, url: str, overwrite: bool) -> None:
    """Put a finished local Zarr store at `url`. Object storage has no rename, so the order of
    writes keeps readers safe: an old store being replaced is deleted first, then the chunks
    go up, and the metadata objects (`.zmetadata`, `.zgroup`, `zarr.json`, ...) last: until
    they are in place, xarray and GDAL find no store there, never a partial one. Two runs
    uploading to the same URL take turns under the store's lock object
    (`stores.object_lock`): the second finds the first's store and keeps it."""
    from prom3e_geo.stores.location import Location
    from prom3e_geo.stores.object_lock import object_lock

    location = Location.parse(url)
    with object_lock(location, doing="writing"):
        if location.exists():
            if not overwrite:
                raise OutputAppeared(
                    f"output {url} appeared while this run was writing it (another run writing the "
                    "same outputs?); kept it, wrote nothing (pass --overwrite to replace it)"
                )
            location.remove()
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        metadata = {".zmetadata", ".zgroup", ".zattrs", ".zarray", "zarr.json"}
        fs = location.filesystem()
        try:
            for group in (
                [p for p in files if p.name not in metadata],
                [p for p in files if p.name in metadata],
            ):
                # the arrays' metadata before the group's, consolidated metadata last of all
                for file in sorted(group, key=lambda p: (p.name == ".zmetadata", -len(p.parts))):
                    fs.put_file(str(file), location.child(file.relative_to(tmp).as_posix()))
        except Exception as exc:
            location.remove()
            raise WriteFailed(
                f"uploading {url} failed ({type(exc).__name__}: {exc}); nothing kept"
            ) from None


def _commit(finished: list[tuple[Path, Path | str, bool]]) -> None:
    """Move finished temporary outputs into place, all or none against a concurrent writer.

    Every output's lock file (`.NAME.lock`, `flock`: released by the kernel if the process
    dies) is held while the set is checked again and renamed, so of two runs writing the same
    outputs exactly one wins the whole set; the other finds an output that appeared meanwhile,
    removes its temporaries and raises `OutputAppeared` (unless it may overwrite). An old
    output being replaced is moved aside first and deleted last."""
    uploads = [
        (tmp, str(url), overwrite) for tmp, url, overwrite in finished if not isinstance(url, Path)
    ]
    local = [(tmp, path, overwrite) for tmp, path, overwrite in finished if isinstance(path, Path)]
    try:  # the uploads first: the world's failures are likelier there, and then nothing is kept
        for tmp, url, overwrite in uploads:
            _upload_zarr(tmp, url, overwrite)
    except BaseException:
        for tmp, _, _ in finished:
            remove(tmp)
        for tmp, _, _ in uploads:
            remove(tmp.parent)
        raise
    for tmp, _, _ in uploads:
        remove(tmp.parent)
    finished_local: list[tuple[Path, Path, bool]] = local
    with ExitStack() as stack:
        for path in sorted({path.resolve() for _, path, _ in finished_local}):
            stack.enter_context(_locked(path))
        appeared = [path for _, path, ow in finished_local if not ow and path.exists()]
        if appeared:
            for tmp, _, _ in finished_local:
                remove(tmp)
            raise OutputAppeared(
                f"output {appeared[0]} appeared while this run was writing it (another run "
                "writing the same outputs?); kept it, wrote nothing (pass --overwrite to replace it)"
            )
        for tmp, path, _ in finished_local:
            try:
                _move_into_place(tmp, path)
            except OSError as exc:
                fault = write_fault(exc, path)
                if fault is None:
                    raise
                raise fault from None


def _move_into_place(tmp: Path, path: Path) -> None:
    if path.exists():  # overwrite: move the old output aside, then swap, then delete it
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        remove(old)
    else:
        os.replace(tmp, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of output `path`. Its lock file is removed on the way out (no
    leftovers beside the outputs): a writer that opened it before and gets the lock next, like
    one that creates it anew, finds the set committed or refused, and checks again."""
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)
