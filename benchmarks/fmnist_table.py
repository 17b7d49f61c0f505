"""The Fashion-MNIST comparison table: random real images, herding, DM and gendd sets at IPC 1,
10 and 50, all evaluated by `gendd.evaluate` (the challenge protocol; mean ± std over rounds),
with the published numbers of docs/PROTOCOL.md beside them.

Sets and results are cached in --out-dir (one set file and one result JSON per cell), so an
interrupted run resumes where it stopped and cells can be filled in over several runs.

    python benchmarks/fmnist_table.py --ipcs 10 --methods random --rounds 3
    python benchmarks/fmnist_table.py --ipcs 1 10 50 --rounds-at 50=1
    python benchmarks/fmnist_table.py --ipcs 1 10 50 --dm-iterations 1000 \\
        --gendd 10=runs/gendd_ipc10.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gendd.report_published import PUBLISHED as ALL_PUBLISHED

# docs/PROTOCOL.md (ConvNet, hard labels); DM and herding have no Fashion-MNIST figure there.
PUBLISHED = {("random" if m == "random real" else m): v
             for m, v in ALL_PUBLISHED["fashion-mnist"].items()}
WHOLE_SET = 93.5


def make_set(method: str, ds, ipc: int, seed: int, args):
    from gendd import baselines

    if method == "random":
        return baselines.random_real(ds, ipc, seed)
    if method == "herding":
        return baselines.herding(ds, ipc, seed, progress=not args.quiet)
    if method == "dm":
        import dataclasses

        from gendd.refine import DM_PAPER, refine, settings_at

        settings = dataclasses.replace(DM_PAPER, iterations=args.dm_iterations,
                                       batch_real=args.dm_batch_real)
        return refine(ds, ipc, settings_at(settings, ipc), seed, progress=not args.quiet)
    raise ValueError(method)


def cell(result: dict | None) -> str:
    if result is None:
        return "—"
    a = result["accuracy"]
    return f"{a['mean']:.1f} ± {a['std']:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ipcs", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--methods", nargs="+", default=["random", "herding", "dm"],
                    choices=["random", "herding", "dm"])
    ap.add_argument("--gendd", nargs="*", default=[], metavar="IPC=SET",
                    help="gendd set files to evaluate, e.g. 10=runs/ipc10.safetensors")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rounds-at", nargs="*", default=[], metavar="IPC=ROUNDS",
                    help="fewer rounds where a round is expensive, e.g. 50=1")
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="baseline and evaluation seed")
    ap.add_argument("--dm-iterations", type=int, default=1000)
    ap.add_argument("--dm-batch-real", type=int, default=256)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out-dir", default="runs/fmnist_table")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    from gendd.data import load_dataset
    from gendd.evaluate import challenge_protocol, evaluate_set, summary_line
    from gendd.sets import load_set, save_set
    from gendd.utils.atomic import write_json

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("fashion-mnist", args.data_root)
    try:
        rounds_at = {int(k): int(v) for k, v in (spec.split("=", 1) for spec in args.rounds_at)}
    except ValueError:
        ap.error(f"--rounds-at takes IPC=ROUNDS pairs, got {' '.join(args.rounds_at)}")
    jobs = [(m, ipc, None) for ipc in args.ipcs for m in args.methods]
    for spec in args.gendd:
        ipc, path = spec.split("=", 1)
        jobs.append(("gendd", int(ipc), Path(path)))

    results: dict[tuple[str, int], dict] = {}
    for method, ipc, path in jobs:
        tag = f"{method}_ipc{ipc}"
        if method == "dm":
            tag += f"_it{args.dm_iterations}"
        rounds = rounds_at.get(ipc, args.rounds)
        res_path = out / f"{tag}_e{args.epochs}_r{rounds}_s{args.seed}.json"
        if res_path.exists():
            results[(method, ipc)] = json.loads(res_path.read_text())
            print(f"{tag}: cached {cell(results[(method, ipc)])}", flush=True)
            continue
        t0 = time.perf_counter()
        if path is None:
            set_path = out / f"{tag}_s{args.seed}.safetensors"
            if not set_path.exists():
                save_set(set_path, make_set(method, ds, ipc, args.seed, args))
            make_s = time.perf_counter() - t0
            dset = load_set(set_path)
        else:
            make_s, dset = 0.0, load_set(path)
        protocol = challenge_protocol(epochs=args.epochs, rounds=rounds)
        r = evaluate_set(dset, ds, protocol, seed=args.seed, progress=not args.quiet)
        r["set_seconds"] = round(make_s, 1)
        write_json(res_path, r)
        results[(method, ipc)] = r
        print(f"{tag}: {summary_line(r)} (set made in {make_s:.0f} s)", flush=True)

    methods = list(dict.fromkeys(m for m, _, _ in jobs))
    ipcs = sorted(set(args.ipcs) | {i for m, i, _ in jobs})
    head = "| method | " + " | ".join(f"IPC {i} (ours)" for i in ipcs) + " | " + \
        " | ".join(f"IPC {i} (published)" for i in ipcs) + " |"
    lines = [head, "|" + " --- |" * (1 + 2 * len(ipcs))]
    for m in methods:
        pub = PUBLISHED.get(m, {})
        lines.append(f"| {m} | " + " | ".join(cell(results.get((m, i))) for i in ipcs) + " | " +
                     " | ".join(str(pub.get(i, "—")) for i in ipcs) + " |")
    for m in ("DC", "DSA"):
        lines.append(f"| {m} (published only) | " + " | ".join("—" for _ in ipcs) + " | " +
                     " | ".join(str(PUBLISHED[m].get(i, "—")) for i in ipcs) + " |")
    table = "\n".join(lines)
    fewer = "".join(f", {r} at IPC {i}" for i, r in sorted(rounds_at.items()) if i in ipcs)
    note = (f"ConvNet, challenge protocol, {args.epochs} epochs, {args.rounds} rounds{fewer}, "
            f"seed {args.seed}; DM {args.dm_iterations} iterations (the paper: 20000). The "
            f"whole training set: {WHOLE_SET} (published).")
    (out / "table.md").write_text(table + "\n\n" + note + "\n")
    print(table + "\n\n" + note)


if __name__ == "__main__":
    main()
