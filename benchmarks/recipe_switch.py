"""Product changeover under load: line-demo switches between two recipes on two models every N s.

Two recipe files (the shipped model, and a renamed copy of it so that every frame's
provenance says which model inspected it), line-demo at 300 parts/min, a switch every
``--every`` seconds for ``--seconds``. Counts parts lost (triggered without a verdict),
parts inspected by a mix (frames of more than one model, or not their recipe's model) and
parts whose result does not name a recipe. Exit 1 on any.

    python benchmarks/recipe_switch.py --seconds 120 --every 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = """[recipe]
name = "{name}"
number = {number}
version = 1
[model]
name = "{model}"
[verdict]
class_thresholds = {{ scratch = 0.5 }}
"""


def two_model_recipes(tmp: Path) -> Path:
    """Recipes 1 and 2 on the shipped model and a renamed copy of it (models under ``tmp``, made the
    models folder of this process); returns the recipes folder."""
    copy = tmp / "models" / "defect-copy"
    shutil.copytree(ROOT / "models" / "defect-yolo11p-320", copy)
    card = copy / "card.toml"
    card.write_text(card.read_text().replace('name = "defect-yolo11p-320"', 'name = "defect-copy"', 1))
    os.environ["INSPECTOR_MODELS_DIR"] = str(tmp / "models")
    folder = tmp / "recipes"
    folder.mkdir()
    (folder / "a.toml").write_text(RECIPE.format(name="housing-a", number=1, model="defect-yolo11p-320"))
    (folder / "b.toml").write_text(RECIPE.format(name="housing-b", number=2, model="defect-copy"))
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--every", type=float, default=20.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="recipes_"))
    folder = two_model_recipes(tmp)
    models = {"housing-a v1": "defect-yolo11p-320", "housing-b v1": "defect-copy"}

    from inspector.config import StationConfig, load_station
    from inspector.station import Station

    raw = load_station("line-demo").model_dump()
    raw["recipes"] = {"dir": str(folder), "select": 1}
    st = Station(StationConfig.model_validate(raw), db_url="none", archive=False)
    parts = []
    st.events.part_ready.connect(parts.append)
    switches = []
    with st:
        t0 = time.monotonic()
        key = 1
        while time.monotonic() - t0 < args.seconds:
            time.sleep(min(args.every, max(0.0, args.seconds - (time.monotonic() - t0))))
            if time.monotonic() - t0 >= args.seconds:
                break
            key = 2 if key == 1 else 1
            t = time.perf_counter()
            label = st.select_recipe(key)
            switches.append((label, time.perf_counter() - t))
    st.recipes.wait_retired()
    rep = st.report()["parts"]
    mixed = [p.part_id for p in parts if {f.provenance.model_name for f in p.frames} != {models.get(p.recipe)}]
    unnamed = [p.part_id for p in parts if p.recipe not in models]
    lost = rep["triggered"] - rep["verdicts"]
    by_recipe = {r: sum(p.recipe == r for p in parts) for r in models}
    prep = ", ".join(f"{s:.1f} s" for _, s in switches)
    print(f"{rep['triggered']} parts triggered in {args.seconds:g} s, {rep['verdicts']} verdicts, {lost} lost, "
          f"{len(mixed)} inspected by a mix, {len(unnamed)} without their recipe; {len(switches)} switches "
          f"(prepare + switch took {prep}); parts per recipe {by_recipe}; incomplete {rep['incomplete']}, "
          f"p99 trigger->verdict {rep['trigger_to_verdict_ms']['p99']:.0f} ms")
    return 0 if not (lost or mixed or unnamed) else 1


if __name__ == "__main__":
    sys.exit(main())
