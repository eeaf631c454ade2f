"""Bad input on `inspector run --headless`: one line naming the thing, exit 2, no traceback.

Each case runs the real command line in a child process, so what is pinned is everything
the user sees on stderr (not only what typer's test runner captures).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_REPLAY = 'name = "bad-replay"\n[[cameras]]\nid = "rep"\nkind = "replay"\nsource = "{source}"\n'
_INF = 'name = "bad-inf"\n[storage]\narchive_max_gb = inf\n[[cameras]]\nid = "c"\nkind = "simulated"\n'
_HUGE = ('name = "bad-bank"\n[[cameras]]\nid = "huge-cam"\nkind = "simulated"\nwidth = 8192\nheight = 8192\n'
         "bank_size = 64\n")


#: The real command line, which at exit writes its own peak RSS (VmHWM of its address space) to the file
#: named by $PEAK_RSS_FILE. Not wait4's ru_maxrss: Linux carries the parent's peak over into a vforked
#: child at exec, so a test process at 3 GiB would read as a child at 3 GiB.
_CHILD = (
    "import atexit, os, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            open(os.environ['PEAK_RSS_FILE'], 'w').write(str(int(line.split()[1]) * 1024))\n"
    "atexit.register(_peak)\n"
    "from inspector.cli import run_cli\n"
    "run_cli(sys.argv[1:])\n"
)


def _run_headless(config: Path) -> tuple[int, list[str], int]:
    """``inspector run --headless`` on ``config``: exit status, stderr lines, the child's own peak RSS (bytes)."""
    peak_file = config.with_name(config.name + ".peak-rss")
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, "run", "--headless", "--config", str(config), "--db", "none",
         "--no-archive", "--duration", "2", "--quiet"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PEAK_RSS_FILE": str(peak_file)},
    )
    killer = threading.Timer(120, proc.kill)
    killer.start()
    try:
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.wait()
    finally:
        killer.cancel()
        proc.stderr.close()  # type: ignore[union-attr]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return proc.returncode, lines, int(peak_file.read_text())


def _one_line(lines: list[str]) -> str:
    # FFmpeg's own "[mov,mp4,... @ 0x...] moov atom not found" must not show either (the
    # packages set OPENCV_FFMPEG_LOGLEVEL before OpenCV loads)
    ours = lines
    assert not any("Traceback" in ln for ln in lines), "\n".join(lines)
    assert len(ours) == 1, "\n".join(lines)
    assert ours[0].startswith("inspector: "), ours[0]
    return ours[0]


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not a video\n", b"", os.urandom(4096)],
    ids=["text", "empty", "random-bytes"],
)
def test_replay_source_that_is_not_a_video(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "x.mp4"
    source.write_bytes(content)
    cfg = tmp_path / "station.toml"
    cfg.write_text(_REPLAY.format(source=source))
    code, lines, _ = _run_headless(cfg)
    line = _one_line(lines)
    assert code == 2, lines
    assert str(source) in line and "rep" in line, line


def test_archive_max_gb_inf_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "station.toml"
    cfg.write_text(_INF)
    code, lines, _ = _run_headless(cfg)
    line = _one_line(lines)
    assert code == 2, lines
    assert "storage.archive_max_gb" in line and str(cfg) in line, line


def test_simulated_bank_too_large_is_refused_before_allocating(tmp_path: Path) -> None:
    cfg = tmp_path / "station.toml"
    cfg.write_text(_HUGE)
    code, lines, peak_rss = _run_headless(cfg)
    line = _one_line(lines)
    assert code == 2, lines
    assert peak_rss < 3 * 2**30, f"peak RSS {peak_rss / 2**30:.1f} GiB: the 12 GiB bank was allocated"
    assert "huge-cam" in line and "bank_size" in line, line
