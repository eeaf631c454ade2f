#!/usr/bin/env bash
# Install a station on a Debian/Ubuntu factory PC: a virtual environment under /opt/inspector,
# the desktop entry, the udev rules and (optionally) the headless service.
#   sudo installer/install.sh [--service]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/inspector
python3 -m venv "$prefix/.venv"
"$prefix/.venv/bin/pip" install -q "$here[gui]"
ln -sf "$prefix/.venv/bin/inspector" /usr/local/bin/inspector
install -m 644 "$here/installer/inspector.desktop" /usr/share/applications/inspector.desktop
install -m 644 "$here/installer/99-machine-vision.rules" /etc/udev/rules.d/99-machine-vision.rules
udevadm control --reload || true
# more USB buffer memory for several USB3 Vision cameras (takes effect now and at boot)
echo 1000 > /sys/module/usbcore/parameters/usbfs_memory_mb || true
if [[ "${1:-}" == "--service" ]]; then
    id inspector >/dev/null 2>&1 || useradd --system --groups video --create-home inspector
    install -d -m 755 /etc/inspector
    install -m 644 "$here/installer/inspector-headless.service" /etc/systemd/system/inspector-headless.service
    systemctl daemon-reload
    echo "put the station config in /etc/inspector/station.toml, then: systemctl enable --now inspector-headless"
fi
