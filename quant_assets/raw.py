"""The raw zone: vendor files landed byte for byte, each with a provenance record beside it.

<root>/<vendor key>                 e.g. data/raw/us_stocks_sip/minute_aggs_v1/2026/02/2026-02-03.csv.gz
<root>/<vendor key>.json            key, ETag, size, sha256, source, landing time
<root>/_replaced/<key without .csv.gz>.etag-<etag>.csv.gz   a version the vendor has since replaced
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from quant_assets.datasets import Dataset
from quant_assets.flatfiles import (
    AccessDenied,
    FlatFileError,
    FlatFileMissing,
    FlatFilePermissionError,
    ObjectMissing,
    SourceError,
    vendor_key,
)
from quant_assets.lake import sweep_temporaries

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
    stem = key.removesuffix(".csv.gz")
    return Path(root) / "_replaced" / f"{stem}.etag-{etag.strip(chr(34))}.csv.gz"


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
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def land(source: FlatFileSource, dataset: Dataset, session: dt.date, root: str | os.PathLike) -> LandedFile:
    """Copy `dataset`'s file for `session` from `source` into the raw zone, unless the landed copy is current.

    The copy is streamed to a temporary file and renamed into place, so a failed download leaves the previous
    copy (if any) untouched. A file whose ETag and size are unchanged is not downloaded again; one the vendor
    replaced is downloaded, and the old version is moved to `_replaced/`, not deleted.
    """
    key = vendor_key(dataset, session)
    path = raw_path(root, dataset, session)
    sweep_temporaries(path.parent, path.name)
    try:
        info = source.head(key)
    except ObjectMissing as exc:
        raise FlatFileMissing(dataset.name, session, key, f"the source has no file for this session ({exc})") from None
    except AccessDenied as exc:
        raise FlatFilePermissionError(dataset.name, session, key, str(exc)) from None
    except SourceError as exc:
        raise FlatFileError(dataset.name, session, key, str(exc)) from None

    previous = read_landed(root, dataset, session)
    if previous and previous.etag == info.etag and previous.size == info.size and path.stat().st_size == info.size:
        return LandedFile(**{**asdict(previous), "downloaded": False})

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        try:
            source.download(info, tmp)
        except ObjectMissing as exc:
            raise FlatFileMissing(dataset.name, session, key, str(exc)) from None
        except AccessDenied as exc:
            raise FlatFilePermissionError(dataset.name, session, key, str(exc)) from None
        except SourceError as exc:
            raise FlatFileError(dataset.name, session, key, str(exc)) from None
        size = tmp.stat().st_size
        if size != info.size:
            raise FlatFileError(dataset.name, session, key, f"downloaded {size} bytes, the source said {info.size}")
        if source.head(key).etag != info.etag:  # replaced mid-download: these bytes may be either version
            raise FlatFileError(
                dataset.name, session, key, "the source replaced the file during the download; run the session again"
            )
        landed = LandedFile(
            key=key,
            etag=info.etag,
            size=size,
            sha256=sha256_of(tmp),
            source=source.describe(),
            landed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            path=str(path),
            downloaded=True,
            replaced_etag=previous.etag if previous and previous.etag != info.etag else "",
        )
        if landed.replaced_etag and path.exists():
            keep = replaced_path(root, key, previous.etag)
            keep.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, keep)
            os.replace(_sidecar(path), keep.with_name(keep.name + ".json"))
        os.replace(tmp, path)
        _write_json_atomic(_sidecar(path), asdict(landed))
        return landed
    finally:
        tmp.unlink(missing_ok=True)
