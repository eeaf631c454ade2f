"""Child process of the kill -9 test: a DbWriter writing in bursts until it is killed.

Usage: ``python -m tests.reliability.crash_child DB_FILE COMMITTED_FILE SEED``. The uids of
every transaction are appended to COMMITTED_FILE *after* the commit returned, so each
one listed there was reported as written and must survive the kill.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from inspector.storage.db import migrate, open_database
from inspector.storage.writer import DbWriter
from tests.inspector.factories import make_result


def main() -> None:
    db, committed, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    engine = open_database(f"sqlite:///{db}")
    migrate(engine)
    fd = os.open(committed, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def on_commit(uids: list[str]) -> None:
        # one write(2) per commit; SIGKILL can still cut a large write short, so each starts on
        # a new line and the test counts only whole uids (a fragment reports nothing)
        os.write(fd, ("\n" + "\n".join(uids) + "\n").encode())

    writer = DbWriter(engine, spool_path=db.with_suffix(".spool.jsonl"), max_batch=64, linger_s=0.002,
                      on_commit=on_commit)
    writer.start()
    print("ready", flush=True)
    rng = random.Random(seed)
    seq = seed * 1_000_000
    while True:
        for _ in range(rng.randint(1, 80)):
            seq += 1
            writer.submit(make_result(f"cam{seq % 4}", seq, "NG" if seq % 5 == 0 else "OK",
                                      [("scratch", 0.9)] if seq % 5 == 0 else []))
        time.sleep(rng.uniform(0.0, 0.01))


if __name__ == "__main__":
    main()
