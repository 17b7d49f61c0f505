"""Generator-only sets (issue 37): sets made from a run's files alone, beside random real images,
evaluated in one process with the same round seeds (paired rounds).

For each IPC: `gendd generate RUN --ipc N --refine stored` (a herding start from the run's
stored real-data statistics, kept as `NAME.sampled.safetensors`: the "herded samples" row; then
refined against the statistics; both sampled by the base denoiser),
`gendd generate RUN --ipc N --refine none --set sampler.init=noise` (samples from noise of the
base denoiser; with `--set sampler.denoiser=finetuned`, of the fine-tuned one: the "tuned" row,
what `--time-budget` samples) and `gendd baseline random`; then each set of --rows under the
challenge protocol. Sets and results are kept in --out-dir, so a stopped run resumes by cell;
--rounds-of ROW=R evaluates a row with other rounds than --rounds.

    python benchmarks/generator_only.py runs/fmnist-ipc10 --ipcs 1 10 --rounds 3
    python benchmarks/generator_only.py runs/fmnist-ipc10 --ipcs 10 --rows stored herded \
        --rounds-of herded=1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROWS = {"noise": "samples from noise", "tuned": "samples from noise, fine-tuned denoiser",
        "herded": "herded samples", "stored": "stored refinement", "random": "random real"}


def make_sets(run: Path, ipc: int, out_dir: Path, seed: int, rows) -> dict[str, Path]:
    """The set files of `rows` (the herded samples are the stored refinement's start)."""
    made = {"stored" if row == "herded" else row for row in rows}
    sets = {row: out_dir / f"{row}_ipc{ipc}.safetensors" for row in made}
    gendd = [sys.executable, "-m", "gendd.cli"]
    commands = {
        "stored": ["generate", str(run), "--ipc", str(ipc), "--refine", "stored"],
        "noise": ["generate", str(run), "--ipc", str(ipc), "--refine", "none",
                  "--set", "sampler.init=noise"],
        "tuned": ["generate", str(run), "--ipc", str(ipc), "--refine", "none",
                  "--set", "sampler.init=noise", "--set", "sampler.denoiser=finetuned"],
        "random": ["baseline", "random", "--dataset", "fashion-mnist", "--ipc", str(ipc)]}
    for row, args in commands.items():
        if row in made and not sets[row].is_file():
            subprocess.run([*gendd, *args, "--seed", str(seed), "--out", str(sets[row]),
                            "--force"], check=True)
    if "stored" in sets:
        sets["herded"] = sets["stored"].with_name(sets["stored"].stem + ".sampled.safetensors")
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--ipcs", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rounds-of", nargs="*", default=[], metavar="ROW=R")
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
    rounds_of = {row: int(r) for row, r in (item.split("=") for item in args.rounds_of)}
    for ipc in args.ipcs:
        sets = make_sets(args.run, ipc, args.out_dir, args.seed, args.rows)
        for row in args.rows:
            rounds = rounds_of.get(row, args.rounds)
            out = args.out_dir / f"{row}_ipc{ipc}_e{args.epochs}_r{rounds}.json"
            if not out.is_file():
                protocol = challenge_protocol(epochs=args.epochs, rounds=rounds)
                t = time.perf_counter()
                dset = load_set(sets[row])
                result = evaluate_set(dset, ds, protocol, seed=args.seed, progress=False)
                result.update(set=str(sets[row]), eval_wall_s=time.perf_counter() - t,
                              made_s=dset.metadata.get("generation_wall_time_s"),
                              refine_s=dset.metadata.get("refine", {}).get("wall_time_s"))
                write_json(out, result)
            r = json.loads(out.read_text())
            print(f"IPC {ipc:3d} {ROWS[row]:20s} {r['accuracy']['mean']:6.2f} +- "
                  f"{r['accuracy']['std']:.2f}  rounds {r['accuracy']['rounds']}  "
                  f"eval {r['eval_wall_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
