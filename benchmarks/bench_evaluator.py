"""Evaluator speed: one challenge round (1000 epochs = 1001 passes, DSA, test on the full 10,000
image test set) on a 100-image Fashion-MNIST set (10 random real images per class), the fast
formulation against the straightforward one (`Protocol(fast=False)`: fp32, eager, NCHW,
GroupNorm(128, 128), test batches of 256, default allocator), side by side.

Each variant runs in its own process (the fast one tunes the process's allocator, which must not
leak into the reference), one after the other, with the same set and seed.

    python benchmarks/bench_evaluator.py                 # full rounds, both variants
    python benchmarks/bench_evaluator.py --epochs 50     # a quick look
    python benchmarks/bench_evaluator.py --variant fast --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def run_variant(args) -> dict:
    import torch

    from gendd.baselines import random_real
    from gendd.data import load_dataset
    from gendd.evaluate import challenge_protocol, evaluate_set
    from gendd.runtime import compile_enabled, default_device

    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset("fashion-mnist", args.data_root)
    dset = random_real(ds, args.ipc, args.set_seed)
    protocol = challenge_protocol(epochs=args.epochs, rounds=args.rounds,
                                  fast=args.variant == "fast")
    t0 = time.perf_counter()
    r = evaluate_set(dset, ds, protocol, seed=args.seed, progress=not args.quiet)
    return {"variant": args.variant, "wall_s": round(time.perf_counter() - t0, 1),
            "per_round_s": round((time.perf_counter() - t0) / args.rounds, 1),
            "accuracy": r["accuracy"], "threads": torch.get_num_threads(),
            "compile": compile_enabled(default_device()) and args.variant == "fast"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=["both", "fast", "reference"], default="both")
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    if args.variant != "both":
        print("RESULT " + json.dumps(run_variant(args)), flush=True)
        return
    results = []
    for variant in ("fast", "reference"):
        cmd = [sys.executable, __file__, "--variant", variant] + [
            a for a in sys.argv[1:] if a not in ("--variant", "both")]
        # Both variants get the same OpenMP setting: the environment's. On a quiet machine
        # leave it unset (PASSIVE slowed the fast variant's many small kernels by 16%); on a
        # shared one, OMP_WAIT_POLICY=PASSIVE keeps spinning threads from slowing everyone.
        env = dict(os.environ)
        load = os.getloadavg()[0]
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, env=env).stdout
        line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
        results.append(json.loads(line[len("RESULT "):]))
        results[-1]["load_avg_1min_before"] = round(load, 2)
        results[-1]["omp_wait_policy"] = env.get("OMP_WAIT_POLICY", "default")
        print(f"{variant:>9}: {results[-1]['per_round_s']:7.1f} s/round  accuracy "
              f"{results[-1]['accuracy']['rounds']}", flush=True)
    fast, ref = results
    summary = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.processor() or
               platform.machine(), "cpus": os.cpu_count(), "epochs": args.epochs,
               "ipc": args.ipc, "fast": fast, "reference": ref,
               "speedup": round(ref["per_round_s"] / fast["per_round_s"], 2)}
    print(f"speed-up: {summary['speedup']}x  (reference {ref['per_round_s']} s / fast "
          f"{fast['per_round_s']} s per round)")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
