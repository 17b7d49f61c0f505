"""`gendd train` and `gendd distill`: train the generator; or train, generate, evaluate, report."""

from __future__ import annotations

import time
from pathlib import Path

import click

from gendd.cli import main
from gendd.cli.options import (data_root_option, dataset_option, parse_overrides, seed_option,
                               set_option)

preset_option = click.option("--preset", default="quick", show_default=True,
                             help="Sizes and step counts: quick (2-core CPU, minutes), full "
                                  "(one GPU, hours), tiny (smoke tests).")
resume_option = click.option("--resume", is_flag=True,
                             help="Only continue the run in --out: fail if there is none or "
                                  "if the configuration differs (an unchanged configuration is "
                                  "continued without it too).")
force_option = click.option("--force", is_flag=True,
                            help="Start over in --out, discarding the run there.")
cpu_option = click.option("--cpu", is_flag=True, help="Train on the CPU even if a GPU is present.")
out_option = click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
                          help="Run directory.")


def run_options(command):
    """The options every command that trains into a run directory takes."""
    for option in reversed((dataset_option, out_option, preset_option, set_option,
                            data_root_option, seed_option, resume_option, force_option,
                            cpu_option)):
        command = option(command)
    return command


def _config(dataset, preset, seed, overrides):
    from gendd.config import resolve_config
    from gendd.data import dataset_info

    return resolve_config(dataset_info(dataset).name, preset, seed, parse_overrides(overrides))


@main.command()
@run_options
def train(dataset, out, preset, overrides, data_root, seed, resume, force, cpu):
    """Train the autoencoder, then the class-conditional denoiser, into run directory OUT; store
    the real-data statistics that `generate --refine stored` refines against, and fine-tune a
    copy of the denoiser on them, whose own samples distil (what `--time-budget` samples).

    Run again with the same arguments to resume from the last checkpoint. Works under
    `accelerate launch` / `torchrun` for several GPUs or nodes."""
    from gendd.data import load_dataset
    from gendd.pipeline import train_run, write_summary
    from gendd.run_dir import lock_run, prepare_run

    cfg = _config(dataset, preset, seed, overrides)
    click.get_current_context().with_resource(lock_run(out))  # held until the command ends
    ds = load_dataset(cfg.dataset, data_root)
    prepare_run(out, cfg, resume, force)
    _, times = train_run(out, cfg, ds, cpu=cpu)
    write_summary(out, {"train_times_s": times})
    click.echo(f"trained: {out} ({', '.join(f'{k} {v:.0f}s' for k, v in times.items()) or 'nothing left to do'})")


@main.command()
@run_options
@click.option("--ipc", type=click.IntRange(min=1), default=10, show_default=True,
              help="Images per class.")
@click.option("--no-eval", is_flag=True, help="Skip the evaluation stage.")
def distill(dataset, ipc, out, preset, overrides, data_root, seed, resume, force, cpu, no_eval):
    """Everything: train the generator, sample IPC images per class (refined by DM unless
    --set refine.method=none), evaluate them with the challenge protocol on the real test set,
    and write the report.

    What only data-free generation reads (the stored real-data statistics of `generate --refine
    stored`, the fine-tuned denoiser of `--time-budget`) is made only if this set uses it;
    `gendd train` with the same arguments adds it to the run later."""
    from gendd.data import load_dataset
    from gendd.latent_model import LatentModel
    from gendd.pipeline import (evaluate_run_set, make_set, train_run, uses_data_free_stages,
                                write_summary)
    from gendd.report import write_report
    from gendd.run_dir import lock_run, prepare_run

    cfg = _config(dataset, preset, seed, overrides)
    click.get_current_context().with_resource(lock_run(out))  # held until the command ends
    ds = load_dataset(cfg.dataset, data_root)
    prepare_run(out, cfg, resume, force)
    t0 = time.perf_counter()
    data_free = uses_data_free_stages(cfg.sampler, cfg.refine)
    model, times = train_run(out, cfg, ds, cpu=cpu, data_free=data_free)
    if cfg.sampler.denoiser != "base":
        model = LatentModel.load(out, denoiser=cfg.sampler.denoiser).to(model.device)
    set_path = out / "distilled" / f"ipc{ipc}.safetensors"
    t = time.perf_counter()
    meta = make_set(out, cfg, cfg.sampler, cfg.refine, ds, model, ipc, set_path, cfg.seed)
    times["generate_s"] = time.perf_counter() - t
    if "refine" in meta:
        times["refine_s"] = meta["refine"]["wall_time_s"]
        times["generate_s"] -= times["refine_s"]
    summary = {"set": str(set_path), "images_per_s": meta["images_per_s"]}
    if not no_eval:
        t = time.perf_counter()
        result = evaluate_run_set(set_path, ds, cfg, out / "eval" / f"ipc{ipc}.json")
        times["evaluate_s"] = time.perf_counter() - t
        summary["accuracy"] = result["accuracy"]
    t = time.perf_counter()
    report = write_report(out, ds.num_classes)
    times["report_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - t0
    write_summary(out, {f"ipc{ipc}": summary, "times_s": times})
    click.echo(f"\nrun:      {out}\nset:      {set_path} ({ipc} per class, "
               f"{meta['images_per_s']:.0f} images/s)")
    if "accuracy" in summary:
        a = summary["accuracy"]
        click.echo(f"accuracy: {a['mean']:.2f} ± {a['std']:.2f} % ({len(a['rounds'])} round(s), "
                   f"{cfg.eval.epochs} epochs, {cfg.eval.model})")
    click.echo(f"report:   {report / 'index.html'}")
    click.echo("time:     " + ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in times.items()))
