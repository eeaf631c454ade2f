"""``python -m inspector.cli``: the engine's command line, without the GUI."""

from __future__ import annotations

from inspector.cli.root import main

main()
