"""Does ``precision = "auto"`` run the fastest gated precision as the station runs? (issue 32.1)

First `precision_choice.measure` times every gated precision as ``auto`` does (the station's scheduler over
``--cameras`` saturated cameras, in turns, median of the rounds) and names its winner; then the whole station
(simulated cameras, database, sinks) runs at each of those precisions in turn, ``--rounds`` times, each round in
another order, and its median fps per precision says which really is fastest. The winner passes when its
station runs within 3% of the fastest station. Nothing is written to the precision cache.

    python benchmarks/precision_check.py --cameras 8
    python benchmarks/precision_check.py --cameras 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="Station rounds (each precision once per round).")
    ap.add_argument("--seconds", type=float, default=4.0, help="Measured seconds of each station run.")
    ap.add_argument("--model", default="defect-yolo11p-320")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from inspector.bench import cpu_description
    from inspector.bench.pipeline import measure_station, station_config
    from inspector.pipeline.backends import precision_choice as pc
    from inspector.pipeline.model_repo import load_card

    pc.BACKGROUND = False
    cfg0 = station_config(args.cameras, 0.0, args.model, "openvino", 0, 320, 320, 8)
    sc, mc = cfg0.scheduler, cfg0.model
    settings = pc.Settings("CPU", sc.max_batch, mc.threads, mc.streams, sc.in_flight, mc.iou_threshold,
                           min(args.cameras, sc.max_batch))
    load0 = os.getloadavg()[0]
    m = pc.measure(load_card(args.model), settings)
    won = pc.pick(m.rounds)
    print(f"auto's timing: {m.summary()}; {won.describe()}; winner {won.precision} (timed with {m.cpu_share:.0%} of "
          f"the cores); rounds: " + "; ".join(f"{p} {' '.join(f'{v:.0f}' for v in r)}" for p, r in m.rounds.items()))
    names = list(m.fps)
    station: dict[str, list[float]] = {p: [] for p in names}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for p in names[r % len(names):] + names[: r % len(names)]:
                cfg = station_config(args.cameras, 0.0, args.model, "openvino", 0, 320, 320, 8, precision=p)
                out = measure_station(cfg, f"sqlite:///{Path(tmp) / f'{p}{r}.db'}", 3.0, args.seconds)
                station[p].append(out["fps"])
    med = {p: statistics.median(v) for p, v in station.items()}
    best = max(med, key=lambda p: med[p])
    behind = 1 - med[won.precision] / med[best]
    cpu = cpu_description()
    print("station fps by precision (median of rounds): " + ", ".join(
        f"{p} {med[p]:.1f} ({' '.join(f'{v:.0f}' for v in station[p])})" for p in sorted(med, key=lambda q: -med[q])))
    print(f"{args.cameras} cameras: auto runs {won.precision}, the fastest station ran {best}; auto's is "
          f"{behind:.1%} behind it: {'PASS' if behind <= pc.TIE else 'FAIL'} (within {pc.TIE:.0%}); CPU {cpu['model']} "
          f"({' '.join(cpu['isa'])}), load {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
