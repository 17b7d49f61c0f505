"""Refinement variants of one set, each evaluated under the challenge protocol: the screens
behind docs/ABLATIONS.md. Each variant is NAME:JSON, the JSON being `refine.*` settings that
change the default configuration's (a setting given holds at every IPC, as with --set); the
refined sets and one result JSON per variant go to OUT_DIR (variants already there are
skipped, so an interrupted screen resumes). With --stored RUN the refinement runs against RUN's
stored real-data statistics (`refine.method` stored) instead of the real training set.

    python benchmarks/refine_variants.py runs/q/distilled/ipc10.sampled.safetensors runs/screen \\
        'default:{}' 'lr3:{"lr": 3.0}' --rounds 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("init", type=Path, help="the set to refine (IPC images per class)")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("variants", nargs="+", metavar="NAME:JSON")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--stored", type=Path, metavar="RUN",
                    help="refine against RUN's stored statistics instead of the real data")
    args = ap.parse_args()

    from gendd.config import RunConfig, with_overrides
    from gendd.data import load_dataset
    from gendd.evaluate import challenge_protocol, evaluate_set
    from gendd.real_statistics import load_statistics
    from gendd.refine import refine, settings_at
    from gendd.sets import load_set, save_set
    from gendd.utils.atomic import write_json

    init = load_set(args.init)
    ds = load_dataset(init.metadata.get("dataset", "fashion-mnist"), args.data_root)
    ipc = len(init.labels) // ds.num_classes
    source = load_statistics(args.stored) if args.stored else ds
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for spec in args.variants:
        name, changes = spec.split(":", 1)
        changes = json.loads(changes)
        result = args.out_dir / f"{name}.json"
        if result.exists():
            continue
        cfg = with_overrides(RunConfig(), {f"refine.{k}": v for k, v in changes.items()})
        t = time.perf_counter()
        refined = refine(source, ipc, settings_at(cfg.refine, ipc), args.seed, init=init)
        dm_s = time.perf_counter() - t
        save_set(args.out_dir / f"{name}.safetensors", refined)
        r = evaluate_set(refined, ds, challenge_protocol(rounds=args.rounds), seed=args.seed,
                         progress=False)
        r.update(dm_s=round(dm_s, 1), refine_changes=changes)
        write_json(result, r)
        print(name, changes, f"DM {dm_s:.0f} s", "accuracy", r["accuracy"]["rounds"], flush=True)


if __name__ == "__main__":
    main()
