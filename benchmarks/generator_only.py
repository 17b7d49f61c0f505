"""Generator-only sets (issue 37): sets made from a run's files alone, beside random real images,
evaluated in one process with the same round seeds (paired rounds).

For each IPC: `gendd generate RUN --ipc N --refine stored` (samples from noise, refined against
the run's stored real-data statistics; its sampled start, `NAME.sampled.safetensors`, is the
"samples from noise" row) and `gendd baseline random`; then each set under the challenge
protocol. Sets and results are kept in --out-dir, so a stopped run resumes by cell.

    python benchmarks/generator_only.py runs/fmnist-ipc10 --ipcs 1 10 --rounds 3
    python benchmarks/generator_only.py runs/fmnist-ipc10 --ipcs 50 --rounds 1 --rows stored
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROWS = {"noise": "samples from noise", "stored": "stored refinement", "random": "random real"}


def make_sets(run: Path, ipc: int, out_dir: Path, seed: int) -> dict[str, Path]:
    stored = out_dir / f"stored_ipc{ipc}.safetensors"
    random_real = out_dir / f"random_ipc{ipc}.safetensors"
    gendd = [sys.executable, "-m", "gendd.cli"]
    if not stored.is_file():
        subprocess.run([*gendd, "generate", str(run), "--ipc", str(ipc), "--refine", "stored",
                        "--seed", str(seed), "--out", str(stored), "--force"], check=True)
    if not random_real.is_file():
        subprocess.run([*gendd, "baseline", "random", "--dataset", "fashion-mnist", "--ipc",
                        str(ipc), "--seed", str(seed), "--out", str(random_real)], check=True)
    return {"noise": stored.with_name(stored.stem + ".sampled.safetensors"), "stored": stored,
            "random": random_real}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--ipcs", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=Path("runs/generator_only"))
    args = ap.parse_args()

    from gendd.data import load_dataset
    from gendd.evaluate import challenge_protocol, evaluate_set
    from gendd.sets import load_set
    from gendd.utils.atomic import write_json

    args.out_dir.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("fashion-mnist")
    protocol = challenge_protocol(epochs=args.epochs, rounds=args.rounds)
    table = {}
    for ipc in args.ipcs:
        sets = make_sets(args.run, ipc, args.out_dir, args.seed)
        for row in args.rows:
            out = args.out_dir / f"{row}_ipc{ipc}_e{args.epochs}_r{args.rounds}.json"
            if not out.is_file():
                t = time.perf_counter()
                dset = load_set(sets[row])
                result = evaluate_set(dset, ds, protocol, seed=args.seed, progress=False)
                result.update(set=str(sets[row]), eval_wall_s=time.perf_counter() - t,
                              made_s=dset.metadata.get("generation_wall_time_s"),
                              refine_s=dset.metadata.get("refine", {}).get("wall_time_s"))
                write_json(out, result)
            table[row, ipc] = json.loads(out.read_text())
            r = table[row, ipc]
            print(f"IPC {ipc:3d} {ROWS[row]:20s} {r['accuracy']['mean']:6.2f} +- "
                  f"{r['accuracy']['std']:.2f}  rounds {r['accuracy']['rounds']}  "
                  f"eval {r['eval_wall_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
