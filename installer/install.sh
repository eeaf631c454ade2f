#!/usr/bin/env bash
# Install a station on a Debian/Ubuntu factory PC: a virtual environment under /opt/inspector,
# the desktop entry, the udev rules and (optionally) the headless service.
#   sudo installer/install.sh [--service]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/inspector
# python3-venv and Qt's system libraries (QtWidgets and its xcb platform plugin): a fresh Debian 12
# or Ubuntu lacks several, and then Qt aborts. The list is gui/qt_probe.py's APT_PACKAGES (a test
# keeps the two, the README and .ci/run equal).
qt_packages="libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 libx11-xcb1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1"
if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq || echo "install: apt-get update failed; installing from the lists already here" >&2
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv $qt_packages
else
    echo "install: no apt-get here; install python3-venv and these libraries (Debian names): $qt_packages" >&2
fi
python3 -m venv "$prefix/.venv"
"$prefix/.venv/bin/pip" install -q "$here[gui]"
ln -sf "$prefix/.venv/bin/inspector" /usr/local/bin/inspector
# what `inspector gui` checks before Qt loads: one line, the missing libraries if any
"$prefix/.venv/bin/python" -m gui.qt_probe --platform xcb || true
install -m 644 "$here/installer/inspector.desktop" /usr/share/applications/inspector.desktop
install -m 644 "$here/installer/99-machine-vision.rules" /etc/udev/rules.d/99-machine-vision.rules
udevadm control --reload || true
# more USB buffer memory for several USB3 Vision cameras (takes effect now and at boot)
echo 1000 > /sys/module/usbcore/parameters/usbfs_memory_mb || true
if [[ "${1:-}" == "--service" ]]; then
    id inspector >/dev/null 2>&1 || useradd --system --groups video --create-home inspector
    install -d -m 755 /etc/inspector
    install -m 644 "$here/installer/inspector-headless.service" /etc/systemd/system/inspector-headless.service
    # the desktop user who ran sudo may open the GUI onto the service (the control link's group)
    if [[ -n "${SUDO_USER:-}" && "${SUDO_USER}" != root ]]; then usermod -a -G inspector "$SUDO_USER" || true; fi
    # the first admin, unattended: INSPECTOR_NEW_PASSWORD=... installer/install.sh --service
    # (without it: `inspector users add admin --role admin`, or the GUI's first login; inspection never waits)
    if [[ -n "${INSPECTOR_NEW_PASSWORD:-}" ]]; then
        runuser -u inspector -- env INSPECTOR_NEW_PASSWORD="$INSPECTOR_NEW_PASSWORD" \
            "$prefix/.venv/bin/inspector" users add admin --role admin \
            || echo "install: the first admin was not added (users exist already?)" >&2
    fi
    systemctl daemon-reload
    echo "put the station config in /etc/inspector/station.toml, then: systemctl enable --now inspector-headless"
fi
