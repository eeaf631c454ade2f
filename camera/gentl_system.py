"""GenTL producers and the process's one harvesters `Harvester` (discovery, acquirers).

Quirks of harvesters 1.4.3 and genicam's ``viky.cti`` that shape this module are noted
where they are handled.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import signal
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

from camera.genicam_tree import DEVICE_ERRORS, short_error
from camera.protocol import CameraInfo

try:
    from harvesters.core import Harvester  # type: ignore[import-untyped]

    HAVE_HARVESTERS = True
except ImportError:  # pragma: no cover - harvesters is a runtime dependency
    HAVE_HARVESTERS = False

log = logging.getLogger(__name__)

#: Environment variable listing the folders that hold GenTL producers (``*.cti``).
GENTL_PATH_VARIABLE = "GENICAM_GENTL64_PATH"

_INFO_ERRORS: tuple[type[Exception], ...] = (AttributeError, *DEVICE_ERRORS)  # a device's producer path unreadable


def _require_harvesters() -> None:
    if not HAVE_HARVESTERS:
        raise ImportError("harvesters/genicam are not installed: pip install harvesters genicam")


# --------------------------------------------------------------------------- producers
def _bundled_producers() -> list[Path]:
    """The simulated producer (``viky.cti``) that ships inside the genicam wheel."""
    spec = importlib.util.find_spec("genicam")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [p for loc in spec.submodule_search_locations for p in sorted(Path(loc).rglob("viky.cti"))]


def find_producers(env: Mapping[str, str] | None = None, *, include_simulated: bool = True) -> list[Path]:
    """Every GenTL producer on this machine, de-duplicated.

    Args:
        env: Environment to read `GENTL_PATH_VARIABLE` from (default: ``os.environ``).
        include_simulated: Also return genicam's bundled ``viky.cti`` (three simulated devices).

    Returns:
        Resolved ``*.cti`` paths: those in the variable's folders first, then the bundled one.
    """
    env = os.environ if env is None else env
    candidates: list[Path] = []
    for entry in env.get(GENTL_PATH_VARIABLE, "").split(os.pathsep):
        if not entry.strip():
            continue
        folder = Path(entry.strip())
        if folder.is_file() and folder.suffix.lower() == ".cti":  # some installers list the file itself
            candidates.append(folder)
        elif folder.is_dir():
            try:
                candidates.extend(sorted(p for p in folder.iterdir() if p.suffix.lower() == ".cti"))
            except OSError as exc:  # unreadable folder: skip it, the others may still hold producers
                log.warning("gentl: cannot list %s: %s", folder, exc)
    if include_simulated:
        candidates.extend(_bundled_producers())
    found: list[Path] = []
    for path in candidates:
        resolved = path.resolve()
        if resolved.is_file() and resolved not in found:
            found.append(resolved)
    return found


# --------------------------------------------------------------------------- system
class GenTLSystem:
    """The process's one harvesters `Harvester`: producers, discovery and acquirers.

    Use as a context manager. Cameras share it; it serialises access to the Harvester.
    Close the cameras before the system: closing it destroys their acquirers.

    Args:
        producers: ``*.cti`` files to load (default: `find_producers`).
    """

    def __init__(self, producers: Iterable[Path | str] | None = None) -> None:
        self.producers = [Path(p) for p in (find_producers() if producers is None else producers)]
        self._harvester: Harvester | None = None
        self._acquirers: list[Any] = []
        self._lock = threading.RLock()

    def open(self) -> None:
        """Load the producers and enumerate devices."""
        _require_harvesters()
        with self._lock:
            if self._harvester is not None:
                return
            self._harvester = Harvester()
            for path in self.producers:
                self._harvester.add_file(str(path))
            self._harvester.update()
            log.info("gentl: %d producer(s), %d device(s)", len(self.producers), len(self._harvester.device_info_list))

    def close(self) -> None:
        """Destroy every acquirer and unload the producers."""
        with self._lock:
            for ia in list(self._acquirers):
                self.release_acquirer(ia)
            if self._harvester is not None:
                self._harvester.reset()
                self._harvester = None

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._harvester is not None

    def _require(self) -> Harvester:
        if self._harvester is None:
            raise RuntimeError("GenTL system is not open: use `with GenTLSystem() as system:`")
        return self._harvester

    def update(self) -> None:
        """Enumerate devices again (after plugging cameras in).

        harvesters' ``update`` destroys every existing acquirer, so it is refused while
        cameras are open.
        """
        with self._lock:
            harvester = self._require()
            if self._acquirers:
                raise RuntimeError(
                    f"gentl: cannot re-enumerate while {len(self._acquirers)} camera(s) are open; close them first"
                )
            harvester.update()

    def devices(self) -> list[CameraInfo]:
        """The devices the producers report, as `CameraInfo` (id is ``model-serial``)."""
        with self._lock:
            return [_device_info(d) for d in self._require().device_info_list]

    def find(self, key: str) -> CameraInfo | None:
        """The device whose serial, device id or `CameraInfo` id is ``key``, or None."""
        with self._lock:
            device = self._find(key)
            return _device_info(device) if device is not None else None

    def _find(self, key: str) -> Any | None:
        matches = [
            d
            for d in self._require().device_info_list
            if key in (d.property_dict.get("serial_number"), d.property_dict.get("id_"), _device_info(d).id)
        ]
        if len(matches) > 1:
            raise LookupError(f"GenTL camera {key!r} is ambiguous ({len(matches)} devices match); use its device id")
        return matches[0] if matches else None

    def create_acquirer(self, key: str) -> Any:
        """Open the device whose serial, device id or `CameraInfo` id is ``key``.

        Returns:
            A harvesters ``ImageAcquirer``; give it back with `release_acquirer`.

        Raises:
            LookupError: No (or more than one) device matches.
            RuntimeError: The device exists but cannot be opened (e.g. in use).
        """
        with self._lock:
            harvester = self._require()
            device = self._find(key)
            if device is None and not self._acquirers:  # a replugged device may need a fresh list
                harvester.update()
                device = self._find(key)
            if device is None:
                raise LookupError(f"GenTL camera {key!r} not found; `inspector cameras list` shows the connected ones")
            # harvesters installs a SIGINT handler (that destroys the acquirer) when created on
            # the main thread; the engine owns Ctrl-C, so the previous handler is put back.
            on_main = threading.current_thread() is threading.main_thread()
            previous = signal.getsignal(signal.SIGINT) if on_main else None
            try:
                ia = harvester.create(device)
            except DEVICE_ERRORS as exc:
                raise RuntimeError(
                    f"GenTL camera {key!r} cannot be opened (in use by another camera or program?): {short_error(exc)}"
                ) from None
            finally:
                if previous is not None:
                    signal.signal(signal.SIGINT, previous)
            self._acquirers.append(ia)
            return ia

    def release_acquirer(self, ia: Any) -> None:
        """Destroy an acquirer from `create_acquirer` (stops it, closes the device)."""
        with self._lock:
            if ia in self._acquirers:
                self._acquirers.remove(ia)
            try:
                ia.destroy()
            except DEVICE_ERRORS as exc:  # a lost device may fail to close; it is gone anyway
                log.warning("gentl: destroying an acquirer failed: %s", short_error(exc))
            harvester = self._harvester
            # harvesters keeps destroyed acquirers in its list; drop ours so reconnects don't pile up
            if harvester is not None and ia in harvester.image_acquirers:
                harvester.image_acquirers.remove(ia)


def _device_info(d: Any) -> CameraInfo:
    props = d.property_dict
    model = str(props.get("model") or "")
    serial = str(props.get("serial_number") or "")
    device_id = str(props.get("id_") or "")
    ident = re.sub(r"\s+", "_", f"{model}-{serial}") if model and serial else device_id
    try:
        producer = str(d.parent.parent.parent.path_name)  # Interface -> System -> Producer
    except _INFO_ERRORS:
        producer = ""
    return CameraInfo(
        id=ident, kind="gentl", vendor=str(props.get("vendor") or ""), model=model, serial=serial, producer=producer
    )
