"""Distribution Matching speed: seconds per iteration at a given IPC on Fashion-MNIST, the
compiled embedding (one network re-drawn in place, pooling fused with norm and ReLU; the
default on the CPU) against the eager one (`GENDD_COMPILE=0`: what every iteration cost
before), side by side, each in its own process, one after the other. Compile time is included
(it is paid once per run), so more iterations favour the compiled variant.

    python benchmarks/bench_dm.py --ipc 10 --iterations 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def run_variant(args) -> dict:
    from gendd.baselines import distribution_matching
    from gendd.data import load_dataset

    ds = load_dataset("fashion-mnist", args.data_root)
    t = time.perf_counter()
    distribution_matching(ds, args.ipc, 0, args.iterations, batch_real=args.batch_real)
    wall = time.perf_counter() - t
    return {"compile": os.environ.get("GENDD_COMPILE", "1"), "wall_s": round(wall, 1),
            "s_per_iteration": round(wall / (args.iterations + 1), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--batch-real", type=int, default=256)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--variant", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print("RESULT " + json.dumps(run_variant(args)), flush=True)
        return
    rows = []
    for flag in ("0", "1"):
        out = subprocess.run([sys.executable, __file__, "--variant", *sys.argv[1:]], text=True,
                             stdout=subprocess.PIPE, check=True,
                             env=dict(os.environ, GENDD_COMPILE=flag)).stdout
        rows.append(json.loads(out.splitlines()[-1][len("RESULT "):]))
        print(("eager   " if flag == "0" else "compiled") + f": {rows[-1]['s_per_iteration']} "
              f"s/iteration ({rows[-1]['wall_s']} s for {args.iterations + 1})", flush=True)
    print(f"speed-up: {rows[0]['wall_s'] / rows[1]['wall_s']:.2f}x "
          f"({time.strftime('%Y-%m-%d')}, IPC {args.ipc}, batch_real {args.batch_real})")


if __name__ == "__main__":
    main()
