"""Issue 6's targets on a trained run: sampling speed (images/s from noise, decode and write
included, no DM refinement) at
1, 2, 4, 8, 16 and 32 DPM-Solver++ steps, side by side with the same model sampled by the
1000-step DDPM ancestral sampler (the naive baseline), and optionally the IPC-10 accuracy of
some of those sets; then the time-budget mode (IPC reached per budget).

Every set is made by `gendd generate` in its own process, as a user would run it.

    python benchmarks/bench_generation.py runs/q                       # speeds only
    python benchmarks/bench_generation.py runs/q --evaluate 4 20 --rounds 3
    python benchmarks/bench_generation.py runs/q --budgets 30 60 300 --budget-steps 4 20 --no-steps
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from gendd.sets import load_set


def gendd(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gendd.cli", *args], check=True, stdout=subprocess.DEVNULL)


def set_meta(path: Path) -> dict:
    return load_set(path).metadata


def evaluate(path: Path, rounds: int) -> dict:
    out = path.with_suffix(".eval.json")
    gendd("evaluate", str(path), "--dataset", set_meta(path)["dataset"], "--rounds", str(rounds), "--json-out", str(out), "--quiet")
    return json.loads(out.read_text())["accuracy"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--no-steps", action="store_true", help="Skip the steps sweep.")
    p.add_argument("--ddpm-steps", type=int, default=1000)
    p.add_argument("--evaluate", type=int, nargs="*", default=[], metavar="STEPS",
                   help="Evaluate the sets of these solver step counts and the DDPM set.")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--budgets", type=float, nargs="*", default=[], metavar="SECONDS")
    p.add_argument("--budget-steps", type=int, nargs="+", default=[None],
                   help="Solver step counts to run each budget with (steps vs count; default: "
                        "the run's).")
    a = p.parse_args()
    out = a.run / "bench-generation"
    out.mkdir(exist_ok=True)

    rows = []
    variants = [] if a.no_steps else [("dpm++", s) for s in a.steps] + [("ddpm", a.ddpm_steps)]
    for solver, steps in variants:
        path = out / f"{solver}-{steps}.safetensors"
        gendd("generate", str(a.run), "--ipc", str(a.ipc), "--solver", solver, "--steps",
              str(steps), "--set", "sampler.init=noise", "--refine", "none", "--out", str(path),
              "--force")
        meta = set_meta(path)
        row = {"solver": solver, "steps": steps, "images_per_s": meta["images_per_s"],
               "wall_s": meta["generation_wall_time_s"]}
        if steps in a.evaluate or (solver == "ddpm" and a.evaluate):
            row["accuracy"] = evaluate(path, a.rounds)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if rows:
        ddpm = rows[-1]["images_per_s"]
        print(f"\n| solver | steps | images/s | x DDPM-{a.ddpm_steps} | IPC-{a.ipc} accuracy % |")
        print("| --- | --- | --- | --- | --- |")
        for r in rows:
            acc = r.get("accuracy")
            acc_text = f"{acc['mean']:.2f} ± {acc['std']:.2f} ({len(acc['rounds'])} rounds)" if acc else "-"
            print(f"| {r['solver']} | {r['steps']} | {r['images_per_s']:.1f} | "
                  f"{r['images_per_s'] / ddpm:.0f}x | {acc_text} |")

    for budget in a.budgets:
        for steps in a.budget_steps:
            path = out / f"budget{budget:g}-steps{steps or 'run'}.safetensors"
            steps_args = ["--steps", str(steps)] if steps else []
            gendd("generate", str(a.run), "--time-budget", str(budget), *steps_args,
                  "--out", str(path), "--force")
            meta = set_meta(path)
            print(json.dumps({"budget_s": budget, "steps": meta["sampler"]["steps"],
                              "ipc": meta["ipc"],
                              "wall_s": round(meta["generation_wall_time_s"], 2),
                              "images_per_s": round(meta["images_per_s"], 1)}), flush=True)


if __name__ == "__main__":
    main()
