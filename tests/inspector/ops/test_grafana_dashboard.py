"""The plant dashboard only asks for metrics a running triggered station really exports."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from inspector.config import parse_config
from inspector.ops.metrics import StationMetrics
from inspector.station import Station
from tests.inspector.line.test_line_station import line_config

DASHBOARD = Path(__file__).resolve().parents[3] / "installer" / "grafana" / "inspector-plant.json"


def test_every_metric_the_dashboard_queries_is_exported(tmp_path: Path) -> None:
    dash = json.loads(DASHBOARD.read_text())
    wanted = {m for p in dash["panels"] for t in p["targets"] for m in re.findall(r"inspector_[a-z_]+", t["expr"])}
    wanted |= set(re.findall(r"inspector_[a-z_]+", json.dumps(dash["templating"])))
    st = Station(parse_config(line_config(n=2)), db_url=f"sqlite:///{tmp_path / 'm.db'}", archive=False)
    metrics = StationMetrics(st)
    st.metrics = metrics
    with st:
        time.sleep(1.5)
    exported = {line.split("{")[0].split(" ")[0] for line in metrics.render().decode().splitlines()
                if line and not line.startswith("#")}
    assert len(wanted) >= 10
    assert wanted <= exported, f"not exported: {sorted(wanted - exported)}"
