"""The ``inspector`` command line. User errors: one line on stderr, exit status 2.

One module per command group (`run`, `cameras`, `history`, `dataset`, `models`, `bench`,
`plc`, `users`, `audit`); what they share is in `common` (and `login` for ``--as``); `root`
registers them in one app. The engine's app and its runner are this package's API.
"""

from __future__ import annotations

from inspector.cli.root import app, make_app, run_cli

__all__ = ["app", "make_app", "run_cli"]
