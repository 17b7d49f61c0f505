"""Distribution Matching speed: seconds per iteration at a given IPC on Fashion-MNIST, the
compiled embedding (one network re-drawn in place, pooling fused with norm and ReLU; the
default on the CPU) against the eager one (`GENDD_COMPILE=0`: what every iteration cost
before), side by side, each in its own process, one after the other. Compile time is included
(it is paid once per run), so more iterations favour the compiled variant. With
`--allocators` the compiled embedding under glibc's malloc (no LD_PRELOAD, as `python`
runs it) against tcmalloc preloaded (what the `gendd` command does where the system
has it, `gendd.utils.malloc`) instead; `--kwargs` passes more keyword arguments to DM.

    python benchmarks/bench_dm.py --ipc 10 --iterations 50
    python benchmarks/bench_dm.py --ipc 50 --iterations 20 --allocators --kwargs '{"feature_blocks": "all"}'
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
    distribution_matching(ds, args.ipc, 0, args.iterations, batch_real=args.batch_real,
                          **json.loads(args.kwargs))
    wall = time.perf_counter() - t
    return {"wall_s": round(wall, 1),
            "s_per_iteration": round(wall / (args.iterations + 1), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--batch-real", type=int, default=256)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--kwargs", default="{}", help="more keyword arguments of DM, as JSON")
    ap.add_argument("--allocators", action="store_true",
                    help="compare glibc's malloc with tcmalloc instead of eager with compiled")
    ap.add_argument("--variant", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print("RESULT " + json.dumps(run_variant(args)), flush=True)
        return
    if args.allocators:
        from gendd.utils.malloc import tcmalloc_library

        library = tcmalloc_library()
        if library is None:
            sys.exit("no tcmalloc library installed (Debian: libtcmalloc-minimal4)")
        variants = [("glibc malloc", {"LD_PRELOAD": ""}), ("tcmalloc", {"LD_PRELOAD": library})]
    else:
        variants = [("eager", {"GENDD_COMPILE": "0"}), ("compiled", {"GENDD_COMPILE": "1"})]
    rows = []
    for label, env in variants:
        out = subprocess.run([sys.executable, __file__, "--variant", *sys.argv[1:]], text=True,
                             stdout=subprocess.PIPE, check=True,
                             env={**os.environ, **env}).stdout
        rows.append(json.loads(out.splitlines()[-1][len("RESULT "):]))
        print(f"{label:>12}: {rows[-1]['s_per_iteration']} s/iteration "
              f"({rows[-1]['wall_s']} s for {args.iterations + 1})", flush=True)
    print(f"speed-up: {rows[0]['wall_s'] / rows[1]['wall_s']:.2f}x "
          f"({time.strftime('%Y-%m-%d')}, IPC {args.ipc}, batch_real {args.batch_real}, "
          f"DM keyword arguments {args.kwargs})")


if __name__ == "__main__":
    main()
