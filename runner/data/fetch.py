"""Download a dataset archive: resumable, checksum-verified before it gets its final name.

The archive is downloaded to `DEST/<archive>.part`. If a .part exists, the request asks for the
rest with an HTTP Range header and appends; a server that answers 200 instead of 206 sends the
whole file, and the .part is restarted. A dropped connection is retried (resuming) a few times.
When the .part is complete its checksum is verified (the official md5 by default, or the
sha256 passed by the caller for a mirror or synthetic archive); only then is it renamed to
`DEST/<archive>`. A complete .part that fails the check is deleted.

No network (this project's machines cannot reach cs.toronto.edu) gives one DatasetError line.
The URL is a parameter, never an environment variable.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from runner.data.files import CHUNK, file_digests
from runner.data.registry import get_dataset
from runner.errors import DatasetError, DatasetRefused

Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)

_USER_AGENT = "runner-data-fetch/1"


def fetch(name: str, dest: str | Path, url: str | None = None, sha256: str | None = None,
          *, progress: bool | Progress = False, retries: int = 3, timeout: float = 30.0) -> Path:
    """Download dataset `name`'s archive into `dest`; return the verified archive path.

    `url` overrides the canonical URL (a mirror, or a local server in tests). `sha256`, when
    given, replaces the official md5 as the expected checksum. `progress=True` shows a rich
    progress bar; a callable receives (done, total) instead.
    """
    info = get_dataset(name)
    if info.layout is None:
        raise DatasetError(f"{name} cannot be fetched", field="dataset",
                           fix=f"{name} is not downloadable by runner; see {info.homepage}")
    layout = info.layout
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / layout.archive
    part = dest / (layout.archive + ".part")
    src = url or layout.url
    expected = _Expected(layout.archive_md5 if sha256 is None else None, _hex(sha256), layout.archive)

    for path in (final, part):  # a FIFO would block the open; a linked .part would be written through
        if (path.exists() and not path.is_file()) or (path is part and path.is_symlink()):
            raise DatasetRefused("is a special file or link, not a download", file=path,
                                 fix="remove it and fetch again")
    if final.exists():
        if not expected.matches(final):
            raise DatasetError("already exists but does not match the expected checksum", file=final,
                               fix="remove it and fetch again")
        return final

    report = _progress_reporter(progress, layout.archive)
    try:
        for attempt in range(retries + 1):
            try:
                _download(src, part, report.update, timeout)
                break
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
                if attempt == retries:
                    kept = part.stat().st_size if part.exists() else 0
                    raise DatasetError(f"download of {src} was interrupted ({type(exc).__name__}); "
                                       f"{kept} bytes kept", file=part,
                                       fix="run the same fetch again to resume") from None
    finally:
        report.close()

    if not expected.matches(part):
        part.unlink(missing_ok=True)
        raise DatasetError(f"download from {src} does not match the expected checksum; the partial file "
                           "was removed", file=final, fix="check the URL or mirror and fetch again")
    os.replace(part, final)
    return final


class _Expected:
    def __init__(self, md5: str | None, sha256: str | None, name: str) -> None:
        self.md5, self.sha256, self.name = md5, sha256, name

    def matches(self, path: Path) -> bool:
        _, sha, md5 = file_digests(path)
        return sha == self.sha256 if self.sha256 is not None else md5 == self.md5


def _hex(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip().lower()
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise DatasetError(f"sha256 must be 64 hex digits, got {value!r}", field="--sha256")
    return v


def _download(url: str, part: Path, report: Progress, timeout: float) -> None:
    """One request: append the rest to `part` (206) or restart it (200); raise if cut short."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - URL is the user's choice
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is already complete
            return
        raise DatasetError(f"cannot download {url}: HTTP {exc.code} {exc.reason}", file=part,
                           fix="check the URL, or copy the archive into the destination by hand") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DatasetError(f"cannot download {url}: {reason} (offline?)", file=part,
                           fix="download the archive on a machine with internet and copy it here, "
                               "or pass --url to a reachable mirror") from None
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        if status == 206 and have and _range_start(response.headers.get("Content-Range")) == have:
            mode, done = "ab", have
            total = have + int(length) if length is not None else None
        elif status == 200:
            mode, done = "wb", 0  # server ignored Range (or fresh start): restart from zero
            total = int(length) if length is not None else None
        elif status == 206:
            part.unlink(missing_ok=True)  # resumed at an offset we did not ask for: start over
            raise ConnectionError("server answered the range request at another offset")
        else:
            raise DatasetError(f"cannot download {url}: unexpected HTTP {status}", file=part)
        report(done, total)
        with open(part, mode) as out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except http.client.IncompleteRead as exc:
                    out.write(exc.partial)
                    raise
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                report(done, total)
            out.flush()
            os.fsync(out.fileno())
        if total is not None and done < total:
            raise http.client.IncompleteRead(b"", total - done)


def _range_start(content_range: str | None) -> int | None:
    """Start offset of 'bytes START-END/TOTAL', or None."""
    if not content_range or not content_range.startswith("bytes "):
        return None
    start, _, _ = content_range[6:].partition("-")
    return int(start) if start.isdigit() else None


class _Reporter:
    def __init__(self, update: Progress, close: Callable[[], None]) -> None:
        self.update, self.close = update, close


def _progress_reporter(progress: bool | Progress, label: str) -> _Reporter:
    if callable(progress):
        return _Reporter(progress, lambda: None)
    if not progress:
        return _Reporter(lambda done, total: None, lambda: None)
    from rich.progress import (  # lazily: only the CLI's fetch shows a bar
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn(), transient=False)
    task = bar.add_task(label, total=None)
    bar.start()

    def update(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)

    return _Reporter(update, bar.stop)
