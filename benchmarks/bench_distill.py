"""Issue 2's targets: the quick preset's whole `distill` on Fashion-MNIST (train + generate +
evaluate with the full protocol, one round; wall time per stage), then its IPC-10 set and random
real images evaluated by the same evaluator in the same run, `--rounds` rounds each.

    python benchmarks/bench_distill.py --out runs/bench-distill --rounds 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def gendd(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gendd.cli", *args], check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/bench-distill"))
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--preset", default="quick")
    a = p.parse_args()
    t0 = time.perf_counter()
    gendd("distill", "--dataset", "fashion-mnist", "--ipc", str(a.ipc), "--preset", a.preset,
          "--out", str(a.out), "--set", "eval.rounds=1")
    wall = time.perf_counter() - t0
    ours_set = a.out / "distilled" / f"ipc{a.ipc}.safetensors"
    gendd("evaluate", str(ours_set), "--dataset", "fashion-mnist", "--rounds", str(a.rounds),
          "--json-out", str(a.out / "eval" / f"ipc{a.ipc}_rounds{a.rounds}.json"), "--quiet")
    rand = a.out / f"random_ipc{a.ipc}.safetensors"
    gendd("baseline", "random", "--dataset", "fashion-mnist", "--ipc", str(a.ipc), "--seed", "0",
          "--out", str(rand), "--force")
    gendd("evaluate", str(rand), "--dataset", "fashion-mnist", "--rounds", str(a.rounds),
          "--json-out", str(a.out / "eval" / f"random_ipc{a.ipc}.json"), "--quiet")
    ours = json.loads((a.out / "eval" / f"ipc{a.ipc}_rounds{a.rounds}.json").read_text())["accuracy"]
    base = json.loads((a.out / "eval" / f"random_ipc{a.ipc}.json").read_text())["accuracy"]
    times = json.loads((a.out / "summary.json").read_text())["times_s"]
    print(f"distill wall time (1 evaluation round): {wall:.0f} s  (" + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + ")")
    print(f"gendd  IPC {a.ipc}: {ours['mean']:.2f} ± {ours['std']:.2f} %  rounds {ours['rounds']}")
    print(f"random IPC {a.ipc}: {base['mean']:.2f} ± {base['std']:.2f} %  rounds {base['rounds']}")
    print(f"difference: {ours['mean'] - base['mean']:+.2f} points")


if __name__ == "__main__":
    main()
