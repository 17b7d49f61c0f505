"""DM refinement variants of one set, each evaluated under the challenge protocol: the screen
behind the "Refinement variants" table of docs/BENCHMARKS.md (Issue 7). Each variant is
NAME:JSON, the JSON being keyword arguments of `gendd.baselines.distribution_matching`; the
refined sets and one result JSON per variant go to OUT_DIR (variants already there are
skipped, so an interrupted screen resumes).

    python benchmarks/refine_variants.py runs/q/distilled/ipc10.sampled.safetensors runs/screen \\
        'base300:{"iterations": 300}' 'lr3:{"iterations": 300, "lr_img": 3.0}' --rounds 1
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
    args = ap.parse_args()

    from gendd.baselines import distribution_matching
    from gendd.data import load_dataset
    from gendd.data.base import normalised_range
    from gendd.evaluate import challenge_protocol, evaluate_set
    from gendd.sets import load_set, save_set
    from gendd.utils.atomic import write_json

    init = load_set(args.init)
    ds = load_dataset(init.metadata.get("dataset", "fashion-mnist"), args.data_root)
    ipc = len(init.labels) // ds.num_classes
    args.out_dir.mkdir(parents=True, exist_ok=True)
    lo, hi = normalised_range(ds.mean, ds.std)
    for spec in args.variants:
        name, kwargs = spec.split(":", 1)
        kwargs = json.loads(kwargs)
        result = args.out_dir / f"{name}.json"
        if result.exists():
            continue
        t = time.perf_counter()
        refined, floats = distribution_matching(ds, ipc, args.seed, init=init,
                                                return_float=True, **kwargs)
        dm_s = time.perf_counter() - t
        # How much the set file's clamp onto [0, 1] changes the optimised images.
        outside = (floats < lo) | (floats > hi)
        save_set(args.out_dir / f"{name}.safetensors", refined)
        r = evaluate_set(refined, ds, challenge_protocol(rounds=args.rounds), seed=args.seed,
                         progress=False)
        r.update(dm_s=round(dm_s, 1), dm_kwargs=kwargs,
                 outside_range_share=round(float(outside.float().mean()), 4))
        write_json(result, r)
        print(name, kwargs, f"DM {dm_s:.0f} s", "accuracy", r["accuracy"]["rounds"],
              f"outside [0, 1]: {r['outside_range_share']:.2%}", flush=True)


if __name__ == "__main__":
    main()
