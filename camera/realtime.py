"""Timing-critical threads ahead of the rest: a reject output's pulses, a line's deadline timer.

On a loaded 2-core PC an ordinary thread that wakes for a deadline waits for a core behind
every busy thread (inference workers, the GUI, other programs): measured 17-56 ms p99 late
under load. `raise_thread_priority` puts the calling thread in the real-time class
(``SCHED_FIFO``) where the OS permits it (root, or ``CAP_SYS_NICE``, or an RLIMIT_RTPRIO), else
at nice -10, else leaves it. A thread raised so must only wait and do short work: it never
spins, or it would starve the core.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

#: SCHED_FIFO priority of the raised threads: above every ordinary thread, low among real-time ones
#: (the kernel's own threads, an IRQ thread of the camera's NIC, keep precedence).
FIFO_PRIORITY = 10
#: The nice value tried where real-time scheduling is not permitted.
NICE = -10


def raise_thread_priority(priority: int = FIFO_PRIORITY) -> str:
    """Run the calling thread ahead of ordinary threads, as far as permitted.

    Returns:
        What it got: ``"SCHED_FIFO 10"``, ``"nice -10"`` or ``"normal"``.
    """
    name = threading.current_thread().name
    try:  # Linux: 0 is the calling thread, not the process
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        log.debug("thread %s: SCHED_FIFO %d", name, priority)
        return f"SCHED_FIFO {priority}"
    except (OSError, AttributeError):
        pass
    try:  # on Linux a thread id in PRIO_PROCESS sets that thread's nice
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        log.debug("thread %s: nice %d", name, NICE)
        return f"nice {NICE}"
    except (OSError, AttributeError):
        log.info("thread %s: ordinary priority (real-time scheduling and a negative nice are not "
                 "permitted: run as the service user with CAP_SYS_NICE for on-time deadlines)", name)
        return "normal"
