"""Login throttling for network links (OPC UA), per source address and per user name, in memory.

Why not the users table's per-account counters (`UserStore.authenticate`, the GUI's)? Five
wrong passwords from anyone who reaches the port would lock the PLC's own account for
15 minutes, and every attempt would need the database's write lock. Here:

- **per source address**: after `FREE_FAILURES` failures in a row, each further attempt
  must wait a doubling delay; after `LOCK_AFTER` failures the *address* is locked out for
  `ADDRESS_LOCKOUT_S`. A success from the address clears it. Attempts refused early cost
  no password check. At most one password check per address at a time.
- **per user name, known or not**: at most `NAME_BURST` failed checks of one name per
  `NAME_WINDOW_S` across all addresses (guessing one account from many addresses);
  beyond that, attempts for the name are refused unchecked.
- **a name that has logged in from an address** since the station started (the PLC from
  its own address) is throttled apart, by its own failures from there only (the doubling
  delay, never a lockout): someone else's failures from that address or for that name do
  not keep the PLC out. Before the PLC's first login after a station restart, someone with
  many addresses can delay it, but only while they keep failing from fresh ones.

Failed and refused attempts are counted in `FailedLogins` and audited in aggregate: one
row per source address per period, never one per attempt. The tables are bounded (least
recently used entries go first), so made-up names cannot grow memory.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

FREE_FAILURES = 2
DELAY_BASE_S = 0.5
DELAY_MAX_S = 30.0
LOCK_AFTER = 10
ADDRESS_LOCKOUT_S = 300.0
NAME_BURST = 20
NAME_WINDOW_S = 60.0
_TABLE_SIZE = 4096


@dataclass
class _Address:
    failures: int = 0
    last_failed: float = 0.0
    locked_until: float = 0.0
    checking: bool = False
    good_names: dict[str, list[float]] = field(default_factory=dict)  # name -> [failures, last failed]


class LoginThrottle:
    """Decides whether a login attempt from ``address`` as ``name`` may have its password checked.

    Args:
        clock: Monotonic seconds (tests inject one).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._addresses: collections.OrderedDict[str, _Address] = collections.OrderedDict()
        self._names: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def admit(self, address: str, name: str) -> str | None:
        """None when the password may be checked now (the caller must then call `done`), else why not."""
        now = self.clock()
        with self._lock:
            a = self._address(address)
            if a.checking:
                return f"address {address}: a login is being checked already"
            own = a.good_names.get(name)
            if own is not None:
                wait = own[1] + delay(int(own[0])) - now
                if wait > 0:
                    return f"user {name!r} from {address}: {int(own[0])} failed logins, next attempt in {math.ceil(wait)} s"
                a.checking = True
                return None
            if now < a.locked_until:
                return f"address {address} locked for {math.ceil(a.locked_until - now)} s after {a.failures} failed logins"
            wait = a.last_failed + delay(a.failures) - now
            if wait > 0:
                return f"address {address}: {a.failures} failed logins, next attempt in {math.ceil(wait)} s"
            failures = self._names.get(name)
            if (name not in a.good_names and failures is not None and len(failures) >= NAME_BURST
                    and now - failures[0] < NAME_WINDOW_S):
                return f"user {name!r}: {len(failures)} failed logins within {NAME_WINDOW_S:.0f} s"
            a.checking = True
            return None

    def done(self, address: str, name: str, ok: bool | None) -> None:
        """The outcome of an admitted check: True success, False wrong password, None not decided."""
        now = self.clock()
        with self._lock:
            a = self._address(address)
            a.checking = False
            if ok is None:
                return
            own = a.good_names.get(name)
            if ok:
                a.good_names[name] = [0, 0.0]
                if own is None:
                    a.failures, a.locked_until = 0, 0.0
                return
            if own is not None:
                own[0], own[1] = own[0] + 1, now
                return
            a.failures += 1
            a.last_failed = now
            if a.failures >= LOCK_AFTER:
                a.locked_until = now + ADDRESS_LOCKOUT_S
            failures = self._names.get(name)
            if failures is None:
                failures = self._names[name] = collections.deque(maxlen=NAME_BURST)
                while len(self._names) > _TABLE_SIZE:
                    self._names.popitem(last=False)
            self._names.move_to_end(name)
            failures.append(now)

    def _address(self, address: str) -> _Address:
        a = self._addresses.get(address)
        if a is None:
            a = self._addresses[address] = _Address()
            while len(self._addresses) > _TABLE_SIZE:
                self._addresses.popitem(last=False)
        self._addresses.move_to_end(address)
        return a


def delay(failures: int) -> float:
    """How long after the last of ``failures`` failures in a row from one address the next attempt waits."""
    if failures <= FREE_FAILURES:
        return 0.0
    return float(min(DELAY_BASE_S * 2 ** (failures - FREE_FAILURES - 1), DELAY_MAX_S))


@dataclass(frozen=True)
class FailedLoginRow:
    """One audit row for the failed logins from one address in one period."""

    address: str
    names: str  # the names tried: "plc", or "a, b, c (+57 more)"
    summary: str  # "3 failed: 2 wrong name or password, 1 throttled"


class FailedLogins:
    """Failed and refused logins, counted per source address until `take` makes audit rows of them.

    Bounded: at most `max_addresses` addresses (the rest counted under ``"(other)"``), at
    most `max_names` names remembered per address.
    """

    def __init__(self, max_addresses: int = 64, max_names: int = 3) -> None:
        self.max_addresses, self.max_names = max_addresses, max_names
        self._by_address: dict[str, tuple[collections.Counter[str], list[str], set[str]]] = {}
        self._lock = threading.Lock()

    def note(self, address: str, name: str, why: str) -> None:
        """Count one failed or refused attempt (``why``: a short kind, e.g. ``wrong name or password``)."""
        with self._lock:
            if address not in self._by_address and len(self._by_address) >= self.max_addresses:
                address = "(other)"
            kinds, names, seen = self._by_address.setdefault(address, (collections.Counter(), [], set()))
            kinds[why] += 1
            if name not in seen and len(seen) < 10_000:
                seen.add(name)
                if len(names) < self.max_names:
                    names.append(name)

    def take(self) -> list[FailedLoginRow]:
        """The rows for everything counted since the last call (and forget it)."""
        with self._lock:
            taken, self._by_address = self._by_address, {}
        rows = []
        for address, (kinds, names, seen) in taken.items():
            more = f" (+{len(seen) - len(names)} more)" if len(seen) > len(names) else ""
            total = sum(kinds.values())
            detail = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
            rows.append(FailedLoginRow(address, ", ".join(names) + more, f"{total} failed from {address}: {detail}"))
        return rows
