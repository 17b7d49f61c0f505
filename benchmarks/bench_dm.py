"""Distribution Matching speed: seconds per iteration at a given IPC on Fashion-MNIST, the
compiled embedding (one network re-drawn in place, pooling fused with norm and ReLU; the
default on the CPU) against the eager one (`GENDD_COMPILE=0`: what every iteration cost
before), side by side, each in its own process, one after the other. Compile time is included
(it is paid once per run), so more iterations favour the compiled variant. With
`--allocators` the compiled embedding under glibc's malloc (no LD_PRELOAD, as `python`
runs it) against tcmalloc preloaded (what the `gendd` command does where the system
has it, `gendd.utils.malloc`) instead. The refinement is the default configuration's at that
IPC, with `--refine` JSON changing `refine.*` settings (the iteration count is --iterations).

    python benchmarks/bench_dm.py --ipc 10 --iterations 50
    python benchmarks/bench_dm.py --ipc 50 --iterations 20 --allocators
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def run_variant(args) -> dict:
    from gendd.config import RunConfig, with_overrides
    from gendd.data import load_dataset
    from gendd.refine import refine, settings_at

    ds = load_dataset("fashion-mnist", args.data_root)
    changes = {**json.loads(args.refine), "iterations": args.iterations}
    cfg = with_overrides(RunConfig(), {f"refine.{k}": v for k, v in changes.items()})
    t = time.perf_counter()
    refine(ds, args.ipc, settings_at(cfg.refine, args.ipc), 0)
    wall = time.perf_counter() - t
    return {"wall_s": round(wall, 1),
            "s_per_iteration": round(wall / (args.iterations + 1), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--refine", default="{}", help="refine.* settings to change, as JSON")
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
          f"(IPC {args.ipc}, refine changes {args.refine})")


if __name__ == "__main__":
    main()
