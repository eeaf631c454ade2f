"""The station as a service: a local control link (Unix socket) the GUI attaches to.

`inspector service` runs a station headless from boot and serves `server.ControlServer`
on a Unix socket; ``inspector gui`` attaches to it (``gui/remote.py``) or, where none
answers, runs a station of its own. `protocol` holds what both sides agree on.
"""
