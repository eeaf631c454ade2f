"""`NgArchive`: keeps the images of NG parts on disk, within a retention budget, and a sample of OK ones.

Files live under ``root/<camera_id>/<YYYY-MM-DD>/<camera_id>_<sequence>_<epoch ms>.<ext>``
(date in UTC, like every time the engine stores). With ``ok_sample_every = N``, the OK frames
whose camera sequence is a multiple of N are kept too, under ``root/@ok/<camera_id>/...``
(``@`` never appears in a camera's folder name), so a part that escaped can still be labelled;
the database retention gives them their own age and size limits (`OK_FOLDER`). The path is a pure function of the
result (`NgArchive.path_for`), so the database writer can store it without waiting for
the image: an image dropped (full queue, full disk) or later deleted by retention leaves
a path that no longer exists, and readers must expect that.

An NG result scored by an anomaly model also keeps its heat map beside the image, at
`heat_map_path` of the image's path (``..._<epoch ms>.heat.png``: the row's ``image_path`` names
both): a grey u8 PNG over the whole frame, at most 160 px on its longer side, grey level = score
x 127.5 (`inspector.anomaly.station.HEAT_LEVELS_PER_SCORE`). It counts with its image's bytes and
goes whenever its image goes (age, size, free space, or a purged database row).

Retention deletes the oldest images first when they are older than ``max_age_days``, when
the archive grows past ``max_total_bytes``, or when the filesystem's free space falls
below the free-space floor (the emergency purge). The floor is ``min_free_bytes`` or
`FLOOR_FRACTION` of the filesystem, whichever is less: a 500 MB floor on a 2 GB card
would otherwise purge every image at each write. Retention runs before writes and, on
its own timer thread, every ``retention_interval_s`` while the line is idle, so old
images go on time even when no NG part comes. A full disk never stops inspection: the
image is counted as dropped and `alarm` is raised until a write succeeds again.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from inspector.pipeline.results import InspectionResult
from inspector.pipeline.sinks import QueuedSink

log = logging.getLogger(__name__)

_FORMATS = {"jpg": ".jpg", "jpeg": ".jpg", "png": ".png"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
#: The archive's sub-folder of sampled OK images.
OK_FOLDER = "@ok"
#: Most of the filesystem the free-space floor may ask to keep free.
FLOOR_FRACTION = 0.05
#: What a heat map's file name ends with, in place of the image's extension.
HEAT_MAP_SUFFIX = ".heat.png"


def heat_map_path(image_path: str | Path) -> Path:
    """Where the heat map of an archived image is (`NgArchive`): ``x/cam_7_1712.jpg`` -> ``x/cam_7_1712.heat.png``."""
    p = Path(image_path)
    return p.with_name(p.stem + HEAT_MAP_SUFFIX)


class NgArchive(QueuedSink):
    """Saves NG frames as JPEG or PNG and enforces retention; OK frames are ignored unless sampled.

    Each queued result holds its frame slot until the image is written, so the queue
    is kept short: when images cannot be written fast enough, NG frames are skipped
    (counted) rather than starving the cameras' frame pools.

    Args:
        root: Archive folder (created).
        fmt: ``"jpg"`` or ``"png"``.
        jpeg_quality: 0..100, for JPEG.
        max_age_days: Delete images older than this (None: keep).
        max_total_bytes: Keep the archive below this size (None: no limit).
        min_free_bytes: Purge oldest images while the filesystem has less free space
            (capped at `FLOOR_FRACTION` of the filesystem's size).
        retention_interval_s: How often the worker re-applies retention.
        name: Sink name (logs, metrics).
        maxsize: Queue capacity (frames held meanwhile).
        ok_sample_every: Also keep each OK frame whose camera sequence is a multiple of this
            (0: no OK image is kept).
    """

    needs_pixels = True

    def __init__(
        self,
        root: Path | str,
        *,
        fmt: str = "jpg",
        jpeg_quality: int = 90,
        max_age_days: float | None = 30.0,
        max_total_bytes: int | None = None,
        min_free_bytes: int = 0,
        retention_interval_s: float = 300.0,
        name: str = "archive",
        maxsize: int = 16,
        ok_sample_every: int = 0,
    ) -> None:
        super().__init__(name, maxsize=maxsize, max_batch=8, linger_s=0.0)
        key = fmt.lower().lstrip(".")
        if key not in _FORMATS:
            raise ValueError(f"archive.fmt: {fmt!r} is not one of jpg, png")
        if not 0 <= jpeg_quality <= 100:
            raise ValueError(f"archive.jpeg_quality: {jpeg_quality} is not within 0..100")
        if ok_sample_every < 0:
            raise ValueError(f"storage.ok_sample_every: {ok_sample_every} must be 0 (off) or more")
        self.root = Path(root).expanduser().absolute()
        self.ok_root = self.root / OK_FOLDER
        self.ok_sample_every = int(ok_sample_every)
        self.ok_sample_bytes = 0  # of the files under ok_root (their own size limit)
        self.written_ok = 0
        self.ext = _FORMATS[key]
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if self.ext == ".jpg" else []
        self.max_age_days = max_age_days
        self.max_total_bytes = max_total_bytes
        self.min_free_bytes = min_free_bytes
        self._interval = retention_interval_s
        self._next_retention = 0.0
        # oldest first: (mtime, size, path); appended in write order, so stays sorted
        self._files: collections.deque[tuple[float, int, Path]] = collections.deque()
        self._dirs: set[Path] = set()
        self._lock = threading.RLock()
        self._scanned = False
        self.written = 0
        self.ignored_ok = 0
        self.dropped_disk_full = 0
        self.failed_writes = 0
        self.deleted = 0  # by age / size retention
        self.purged = 0  # by the low-free-space purge
        self.archive_bytes = 0
        self.alarm = False
        #: told when an image could not be written for lack of space (the retention that owns the space)
        self.on_disk_full: Callable[[], None] | None = None
        #: an NG result's u8 heat map (None: it has none); set by the station when it runs anomaly models
        self.heat_map_for: Callable[[InspectionResult], np.ndarray | None] | None = None
        self.heat_maps_written = 0
        self._timer_stop = threading.Event()
        self._timer: threading.Thread | None = None

    def hand_space_to(self, retention: object, *, grace_days: float = 1.0) -> None:
        """Let a database retention own this archive's size and free-space limits.

        The database and the archive then share one disk budget, and an image goes with its row
        (`inspector.storage.retention`): this archive no longer deletes images for size or free
        space, and its own age purge, ``grace_days`` after the retention's, only takes images no
        row points to any more (left by a crash between a row's deletion and its image's).

        Args:
            retention: Has ``wake()``, called when an image is dropped for lack of space.
        """
        with self._lock:
            self.max_total_bytes = None
            self.min_free_bytes = 0
            if self.max_age_days is not None:
                self.max_age_days += grace_days
            self.on_disk_full = getattr(retention, "wake", None)

    def delete_images(self, paths: Sequence[str]) -> int:
        """Delete these images (of purged rows) if they are in this archive; returns how many were deleted.

        Paths outside the archive are left alone (a row's path is data, not a command).
        """
        root = os.path.realpath(self.root)
        wanted = {Path(p) for p in paths if p and os.path.realpath(p).startswith(root + os.sep)}
        if not wanted:
            return 0
        n = 0
        with self._lock:
            self._scan_once()
            kept: collections.deque[tuple[float, int, Path]] = collections.deque()
            for entry in self._files:
                if entry[2] in wanted:
                    self._forget(entry)
                    wanted.discard(entry[2])
                    n += self._unlink(entry[2])
                else:
                    kept.append(entry)
            self._files = kept
            for path in wanted:  # not indexed (written after a crash?): delete it all the same
                n += self._unlink(path)
            self.deleted += n
        return n

    # ------------------------------------------------------------------ paths
    def samples(self, result: InspectionResult) -> bool:
        """Whether ``result`` is an OK frame this archive keeps (every ``ok_sample_every``-th of its camera)."""
        return not result.ng and self.ok_sample_every > 0 and result.sequence % self.ok_sample_every == 0

    def path_for(self, result: InspectionResult) -> str | None:
        """Where the image of ``result`` is (or would be) archived; None for OK results not sampled."""
        if result.ng:
            base = self.root
        elif self.samples(result):
            base = self.ok_root
        else:
            return None
        cam = _UNSAFE.sub("_", result.camera_id) or "_"
        if cam.startswith("."):  # ".." or "." would leave the archive, ".x" would hide from it
            cam = "_" + cam
        day = datetime.fromtimestamp(result.acquired_at, UTC).strftime("%Y-%m-%d")
        ms = round(result.acquired_at * 1000.0)
        return str(base / cam / day / f"{cam}_{result.sequence}_{ms}{self.ext}")

    def index(self) -> None:
        """Index the archive folder now if not yet done (its byte totals count from then on)."""
        with self._lock:
            self._scan_once()

    def _is_ok_sample(self, path: Path) -> bool:
        return path.is_relative_to(self.ok_root)

    # ------------------------------------------------------------------ sink
    def wants(self, result: InspectionResult) -> bool:
        """NG results and sampled OK ones: the fan-out skips (and does not retain frames for) the rest."""
        return result.ng or self.samples(result)

    def submit(self, result: InspectionResult) -> bool:
        """Queue an NG or sampled OK result's frame for writing; other OK results release their frame at once."""
        if not result.ng and not self.samples(result):
            self.ignored_ok += 1
            if result.frame is not None:
                result.frame.release()
            return True
        return super().submit(result)

    def stats(self) -> dict[str, float]:
        out = super().stats()
        out.update(
            written=self.written,
            written_ok=self.written_ok,
            heat_maps_written=self.heat_maps_written,
            ok_sample_bytes=self.ok_sample_bytes,
            ignored_ok=self.ignored_ok,
            dropped_disk_full=self.dropped_disk_full,
            failed_writes=self.failed_writes,
            deleted=self.deleted,
            purged=self.purged,
            archive_bytes=self.archive_bytes,
            alarm=float(self.alarm),
        )
        return out

    def start(self) -> None:
        super().start()
        if self._timer is None:
            self._timer_stop.clear()
            self._timer = threading.Thread(
                target=self._retention_timer, name=f"sink-{self.name}-retention", daemon=True
            )
            self._timer.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._timer_stop.set()
        t, self._timer = self._timer, None
        if t is not None:
            t.join(timeout)
        super().stop(timeout)

    def _retention_timer(self) -> None:
        """Apply retention while the line is idle (the writer applies it between writes too)."""
        while not self._timer_stop.wait(min(self._interval, 60.0)):
            self._retention_if_due()

    def _run(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("archive: cannot create %s (%s); NG images will not be saved", self.root, exc.strerror or exc)
        self._retention_if_due()  # index the existing archive and trim it before writing
        super()._run()

    def handle_batch(self, batch: list[InspectionResult]) -> None:
        self._retention_if_due()
        for r in batch:
            if (r.ng or self.samples(r)) and r.frame is not None:
                self._archive(r)

    def _archive(self, r: InspectionResult) -> None:
        assert r.frame is not None
        path = Path(self.path_for(r) or "")
        if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(self.root)):
            self.failed_writes += 1  # a link in the archive pointing elsewhere: never write through it
            log.error("archive: %s resolves outside %s; image not saved", path, self.root)
            return
        try:
            data = _encode(r.frame.image, r.frame.pixel_format, self.ext, self._params)
        except (cv2.error, ValueError) as exc:
            self.failed_writes += 1
            log.error("archive: cannot encode %s#%d (%s)", r.camera_id, r.sequence, exc)
            return
        if self.min_free_bytes and self._free_bytes() < self.floor_bytes() + len(data):
            self._purge_for_space(len(data))
        try:
            self._ensure_dir(path.parent)
            self._write_bytes(path, data)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                self.dropped_disk_full += 1
                if not self.alarm:
                    log.error("archive: disk full at %s; NG images are being dropped", self.root)
                self.alarm = True
                if self.min_free_bytes:
                    self._purge_for_space(len(data))
                if self.on_disk_full is not None:
                    self.on_disk_full()
            else:
                self.failed_writes += 1
                log.error("archive: cannot write %s (%s)", path, exc.strerror or exc)
            return
        if self.alarm:
            log.warning("archive: writing again after %d dropped images", self.dropped_disk_full)
        self.alarm = False
        self.written += 1
        data_len = len(data) + (self._archive_heat_map(r, path) if r.ng else 0)  # one entry: they go together
        with self._lock:
            self._files.append((time.time(), data_len, path))
            self.archive_bytes += data_len
            if not r.ng:
                self.written_ok += 1
                self.ok_sample_bytes += data_len
            over = self.max_total_bytes is not None and self.archive_bytes > self.max_total_bytes
        if over:
            self.enforce_retention()

    def _archive_heat_map(self, r: InspectionResult, image: Path) -> int:
        """Write ``r``'s heat map beside its image (when it has one); returns the bytes written."""
        if self.heat_map_for is None or r.anomaly_map is None:
            return 0
        try:
            heat = self.heat_map_for(r)
            if heat is None:
                return 0
            ok, buf = cv2.imencode(".png", np.ascontiguousarray(heat, np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 6])
            if not ok:
                raise ValueError("OpenCV could not encode the PNG")
            self._write_bytes(heat_map_path(image), buf.tobytes())
        except (OSError, ValueError, cv2.error) as exc:  # the image is kept: a missing heat map is no lost result
            self.failed_writes += 1
            log.error("archive: cannot write the heat map of %s (%s)", image, exc)
            return 0
        self.heat_maps_written += 1
        return len(buf)

    def _write_bytes(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically (a reader never sees half an image)."""
        tmp = path.with_name(path.name + ".part")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def _ensure_dir(self, folder: Path) -> None:
        if folder not in self._dirs:
            folder.mkdir(parents=True, exist_ok=True)
            self._dirs.add(folder)

    # ------------------------------------------------------------------ retention
    def enforce_retention(self) -> int:
        """Delete the oldest images beyond the age and size limits, and for free space.

        The first call indexes the archive folder; later calls use the running index.

        Returns:
            How many images were deleted.
        """
        with self._lock:
            self._scan_once()
            n = 0
            if self.max_age_days is not None:
                cutoff = time.time() - self.max_age_days * 86400.0
                while self._files and self._files[0][0] < cutoff:
                    n += self._delete_oldest()
            if self.max_total_bytes is not None:
                while self._files and self.archive_bytes > self.max_total_bytes:
                    n += self._delete_oldest()
            self.deleted += n
        if self.min_free_bytes:
            n += self._purge_for_space(0)
        return n

    def _retention_if_due(self) -> None:
        with self._lock:  # the writer and the idle timer both come here
            now = time.monotonic()
            if now < self._next_retention:
                return
            self._next_retention = now + self._interval
            try:
                self.enforce_retention()
            except OSError as exc:
                log.error("archive: retention pass failed (%s)", exc)

    def _purge_for_space(self, incoming: int) -> int:
        """Delete oldest images until the filesystem has `floor_bytes` + ``incoming`` free."""
        n = 0
        floor = self.floor_bytes()
        with self._lock:
            self._scan_once()
            while self._files:
                missing = floor + incoming - self._free_bytes()
                if missing <= 0:
                    break
                freed = 0
                # free what is missing, then look at the filesystem again
                while self._files and freed < missing:
                    freed += self._files[0][1]
                    n += self._delete_oldest()
            self.purged += n
        if n:
            log.warning("archive: low disk space on %s; purged %d oldest images", self.root, n)
        return n

    def floor_bytes(self) -> int:
        """The free space retention keeps: ``min_free_bytes``, at most `FLOOR_FRACTION` of the disk."""
        try:
            total = shutil.disk_usage(self.root).total
        except OSError:
            return self.min_free_bytes
        return min(self.min_free_bytes, int(total * FLOOR_FRACTION))

    def _free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self.root).free
        except OSError:
            return 1 << 62  # root not there yet: nothing to purge

    def _delete_oldest(self) -> int:
        entry = self._files.popleft()
        self._forget(entry)
        return self._unlink(entry[2])

    def _forget(self, entry: tuple[float, int, Path]) -> None:
        """Take an indexed image's bytes off the totals (it is being deleted)."""
        self.archive_bytes -= entry[1]
        if self._is_ok_sample(entry[2]):
            self.ok_sample_bytes -= entry[1]

    def _unlink(self, path: Path) -> int:
        try:
            heat_map_path(path).unlink(missing_ok=True)  # goes with its image, first: never left behind alone
            path.unlink()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.error("archive: cannot delete %s (%s)", path, exc.strerror or exc)
            return 0
        try:
            path.parent.rmdir()  # only succeeds once the day folder is empty
            self._dirs.discard(path.parent)
        except OSError:
            pass
        return 1

    def _scan_once(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        found: list[tuple[float, int, Path]] = []
        heat: dict[Path, int] = {}  # image path -> its heat map's bytes (counted with the image)
        if self.root.is_dir():
            for dirpath, _dirs, files in os.walk(self.root):
                for f in files:
                    p = Path(dirpath, f)
                    if f.endswith(".part"):  # left by a crash mid-write
                        p.unlink(missing_ok=True)
                        continue
                    if not f.endswith((".jpg", ".png")):
                        continue
                    try:
                        st = p.stat()
                    except OSError:
                        continue
                    if f.endswith(HEAT_MAP_SUFFIX):
                        heat[Path(dirpath, f[: -len(HEAT_MAP_SUFFIX)])] = st.st_size
                        continue
                    found.append((st.st_mtime, st.st_size, p))
        found = [(t, s + heat.get(p.with_suffix(""), 0), p) for t, s, p in found]
        found.sort()
        self._files.extendleft(reversed(found))
        self.archive_bytes += sum(s for _, s, _ in found)
        self.ok_sample_bytes += sum(s for _, s, p in found if self._is_ok_sample(p))
        if found:
            log.info("archive: %d images (%.1f MB) in %s", len(found), self.archive_bytes / 1e6, self.root)


def _encode(image: np.ndarray, pixel_format: str, ext: str, params: list[int]) -> bytes:
    """Encode a Mono8 (H, W) or colour (H, W, 3|4) u8 frame; RGB formats are swapped to BGR."""
    if image.dtype != np.uint8:
        raise ValueError(f"frame dtype {image.dtype} is not uint8")
    img = image
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    elif img.ndim == 3 and img.shape[2] == 4:
        code = cv2.COLOR_RGBA2BGR if pixel_format.upper().startswith("RGB") else cv2.COLOR_BGRA2BGR
        img = cv2.cvtColor(img, code)
    elif img.ndim == 3 and img.shape[2] == 3:
        if pixel_format.upper().startswith("RGB"):
            img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim != 2:
        raise ValueError(f"frame shape {image.shape} is neither (H, W) nor (H, W, 3|4)")
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode {ext}")
    return buf.tobytes()
