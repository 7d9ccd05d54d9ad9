"""The raw zone: vendor files landed byte for byte, each with a provenance record beside it.

<root>/<vendor key>                 e.g. data/raw/us_stocks_sip/minute_aggs_v1/2026/02/2026-02-03.csv.gz
<root>/<vendor key>.json            key, ETag, size, sha256, source, landing time
<root>/_replaced/<key without .csv.gz>.etag-<etag>.csv.gz   a version the vendor has since replaced
<root>/_rejected/<key without .csv.gz>.etag-<etag>.csv.gz   a download that failed verification (kept, not landed)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from isal import isal_zlib

from quant_assets.datasets import Dataset
from quant_assets.flatfiles import (
    AccessDenied,
    FlatFileError,
    FlatFileMissing,
    FlatFilePermissionError,
    ObjectInfo,
    ObjectMissing,
    SourceError,
    session_from_key,
    vendor_key,
)
from quant_assets.lake import sweep_temporaries, temporary_path
from quant_assets.locks import locked
from quant_assets.names import UnsafeName, child, component

if TYPE_CHECKING:  # the source is a Dagster resource; this module only calls its methods
    from quant_assets.sources import FlatFileSource


@dataclass(frozen=True)
class LandedFile:
    """Provenance of one raw file."""

    key: str
    etag: str
    size: int
    sha256: str
    source: str
    landed_at: str
    path: str
    downloaded: bool  # False when the landed copy was already current
    replaced_etag: str = ""  # the ETag of the version this one replaced, if the vendor replaced the file
    corrupt: str = ""  # set when the lake found the landed copy unreadable: the next landing fetches it again

    @classmethod
    def of(cls, path: str | os.PathLike, key: str, source: str = "local") -> LandedFile:
        """The record of a file already on disk (a test fixture, the benchmark's input), hashed now."""
        path = Path(path)
        stat = path.stat()
        return cls(
            key=key,
            etag=f'"{stat.st_size:x}"',
            size=stat.st_size,
            sha256=sha256_of(path),
            source=source,
            landed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            path=str(path),
            downloaded=False,
        )

    def provenance(self) -> dict[str, str]:
        return {
            "key": self.key,
            "etag": self.etag,
            "size": str(self.size),
            "sha256": self.sha256,
            "source": self.source,
        }


def raw_path(root: str | os.PathLike, dataset: Dataset, session: dt.date) -> Path:
    return Path(root) / vendor_key(dataset, session)


def replaced_path(root: str | os.PathLike, key: str, etag: str) -> Path:
    """Where the version of `key` with `etag` is kept once the vendor has replaced it."""
    return _kept_path(root, "_replaced", key, etag)


def _kept_path(root: str | os.PathLike, zone: str, key: str, etag: str) -> Path:
    """`<root>/<zone>/<key without .csv.gz>.etag-<etag>.csv.gz`: the key is ours (`vendor_key`), the ETag is the
    vendor's, so the file name goes through `names.child`; an ETag that cannot be part of a file name (a `/`, a
    control character, too long) is named by its sha256 instead, so that the version is still kept."""
    stem = Path(key.removesuffix(".csv.gz"))
    name = f"{stem.name}.etag-{etag.strip(chr(34))}.csv.gz"
    try:
        component(name)
    except UnsafeName:
        name = f"{stem.name}.etag-sha256-{hashlib.sha256(etag.encode()).hexdigest()}.csv.gz"
    return child(Path(root) / zone / stem.parent, name)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_landed(root: str | os.PathLike, dataset: Dataset, session: dt.date) -> LandedFile | None:
    """The provenance of the landed copy of `dataset` on `session`, or None if nothing is landed."""
    path = raw_path(root, dataset, session)
    sidecar = _sidecar(path)
    if not (path.is_file() and sidecar.is_file()):
        return None
    return LandedFile(**json.loads(sidecar.read_text()))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(4 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = temporary_path(path)
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def verify(path: Path) -> tuple[str, str, str | None]:
    """(sha256, md5, problem) of a downloaded file, in one pass: the whole gzip stream (every member) is inflated
    and its CRC checked while the bytes are hashed; `problem` says what is wrong, or is None."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    inflater, problem, members = isal_zlib.decompressobj(31), None, 0
    with open(path, "rb") as stream:
        while chunk := stream.read(2**20):
            sha.update(chunk)
            md5.update(chunk)
            data = chunk
            while data and problem is None:
                try:
                    inflater.decompress(data, 16 * 2**20)  # the text is not kept: only the CRC matters here
                except isal_zlib.error as exc:
                    problem = f"not a valid gzip file ({exc})"
                    break
                if inflater.eof:
                    members += 1
                    data = inflater.unused_data
                    inflater = isal_zlib.decompressobj(31)
                else:
                    data = inflater.unconsumed_tail
    if problem is None and sha.digest() == hashlib.sha256(b"").digest():
        problem = "the file is empty (0 bytes)"
    elif problem is None and (not members or inflater.decompress(b"") or _mid_member(inflater)):
        problem = "the gzip stream is truncated (download cut short?)"
    return sha.hexdigest(), md5.hexdigest(), problem


def _mid_member(inflater) -> bool:
    """Whether a member was started after the last complete one (its bytes ran out before its end)."""
    try:
        inflater.flush()
    except isal_zlib.error:
        return True
    return False


def single_part_md5(etag: str) -> str | None:
    """The MD5 a single-part upload's ETag is (32 hex digits), or None for a multipart ETag (`<md5>-<parts>`)."""
    value = etag.strip('"').lower()
    return value if len(value) == 32 and all(c in "0123456789abcdef" for c in value) else None


def rejected_path(root: str | os.PathLike, key: str, etag: str) -> Path:
    """Where a download that failed verification is kept (nothing is lost), outside the raw zone proper."""
    return _kept_path(root, "_rejected", key, etag)


def taken_etag(root: str | os.PathLike, dataset: Dataset, info: ObjectInfo) -> str | None:
    """The ETag of the version of `info`'s file that the raw zone has taken: the landed copy's (unless marked
    corrupt), or `info`'s own when a run downloaded that very version whole and rejected it as the vendor sent it
    (a truncated or corrupt gzip, kept under `_rejected/` at its full size), since fetching it again would give the
    same answer until the vendor replaces it. A cut-off download is kept shorter and does not count."""
    landed = read_landed(root, dataset, session_from_key(info.key))
    etag = landed.etag if landed and not landed.corrupt else None
    if etag != info.etag:
        try:
            if rejected_path(root, info.key, info.etag).stat().st_size == info.size:
                return info.etag
        except OSError:
            pass
    return etag


def mark_corrupt(root: str | os.PathLike, dataset: Dataset, session: dt.date, problem: str) -> None:
    """Record that the landed copy turned out corrupt (the lake could not read it): the next landing fetches the
    file again instead of calling it current."""
    path = raw_path(root, dataset, session)
    with locked(path):
        landed = read_landed(root, dataset, session)
        if landed is not None:
            _write_json_atomic(_sidecar(path), {**asdict(landed), "corrupt": problem})


def matches_source(landed: LandedFile | None, info) -> bool:
    """Whether the landed copy's record says it is the source's version: same ETag and size, not marked corrupt
    (without hashing its bytes again)."""
    return landed is not None and not landed.corrupt and landed.etag == info.etag and landed.size == info.size


def _current(previous: LandedFile | None, info, path: Path) -> bool:
    """Whether the landed copy is the source's version, intact: it matches the source (`matches_source`) and its
    bytes still hash to the recorded sha256."""
    if not matches_source(previous, info):
        return False
    return path.stat().st_size == info.size and sha256_of(path) == previous.sha256


def land(source: FlatFileSource, dataset: Dataset, session: dt.date, root: str | os.PathLike) -> LandedFile:
    """Copy `dataset`'s file for `session` from `source` into the raw zone, unless the landed copy is current.

    The copy is streamed to a temporary file, verified (the whole gzip stream decodes with valid CRCs; a
    single-part ETag equals the MD5 of the bytes; the ETag did not change during the download) and only then
    renamed into place, so a failed or corrupt download leaves the previous copy (if any) untouched; the corrupt
    bytes are kept under `_rejected/`. A file whose ETag and size are unchanged and whose bytes still match their
    sha256 is not downloaded again; one the vendor replaced is, and the old version is moved to `_replaced/`, never
    overwriting an archived version. Runs landing the same file take turns (`locks.py`).
    """
    key = vendor_key(dataset, session)
    path = raw_path(root, dataset, session)
    with locked(path):
        sweep_temporaries(path.parent, path.name, older_than=0)  # under the lock: only dead runs leave these
        return _land(source, dataset, session, root, key, path)


def _land(source, dataset: Dataset, session: dt.date, root, key: str, path: Path) -> LandedFile:
    def error(problem: str, cls=FlatFileError):
        return cls(dataset.name, session, key, problem)

    try:
        info = source.head(key)
    except ObjectMissing as exc:
        raise error(f"the source has no file for this session ({exc})", FlatFileMissing) from None
    except AccessDenied as exc:
        raise error(str(exc), FlatFilePermissionError) from None
    except SourceError as exc:
        raise error(str(exc)) from None

    previous = read_landed(root, dataset, session)
    if _current(previous, info, path):
        return LandedFile(**{**asdict(previous), "downloaded": False})

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        try:
            source.download(info, tmp)
        except ObjectMissing as exc:
            raise error(str(exc), FlatFileMissing) from None
        except AccessDenied as exc:
            raise error(str(exc), FlatFilePermissionError) from None
        except SourceError as exc:
            raise error(str(exc)) from None
        size = tmp.stat().st_size
        sha256, md5, problem = verify(tmp)
        expected_md5 = single_part_md5(info.etag)
        if problem is None and size != info.size:
            problem = f"downloaded {size:,} bytes, the source said {info.size:,}"
        if problem is None and expected_md5 and md5 != expected_md5:
            problem = f"the MD5 of the downloaded bytes ({md5}) is not the ETag {info.etag}"
        if problem:
            keep = rejected_path(root, key, info.etag)
            keep.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, keep)
            raise error(
                f"the download is corrupt: {problem}; not landed (the bytes are kept at {keep}, the previous "
                "copy, if any, is untouched)"
            )
        if source.head(key).etag != info.etag:  # replaced mid-download: these bytes may be either version
            raise error("the source replaced the file during the download; run the session again")
        landed = LandedFile(
            key=key,
            etag=info.etag,
            size=size,
            sha256=sha256,
            source=source.describe(),
            landed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            path=str(path),
            downloaded=True,
            replaced_etag=previous.etag if previous and previous.etag != info.etag else "",
        )
        if landed.replaced_etag and path.exists():
            _archive(root, key, previous, path)
        os.replace(tmp, path)
        _write_json_atomic(_sidecar(path), asdict(landed))
        return landed
    finally:
        tmp.unlink(missing_ok=True)


def _archive(root, key: str, previous: LandedFile, path: Path) -> None:
    """Move the replaced version to `_replaced/`; an archive of the same ETag that holds other bytes is never
    overwritten (the new one gets a numbered name)."""
    keep = replaced_path(root, key, previous.etag)
    keep.parent.mkdir(parents=True, exist_ok=True)
    number = 1
    while keep.exists() and sha256_of(keep) != previous.sha256:
        keep = keep.with_name(f"{replaced_path(root, key, previous.etag).name.removesuffix('.csv.gz')}.{number}.csv.gz")
        number += 1
    os.replace(path, keep)
    os.replace(_sidecar(path), keep.with_name(keep.name + ".json"))
