"""`amst`: prepare data, train, resume and evaluate from the command line (the library's commands; the service's
`amst serve`, `amst up`, `amst db`, `amst gc` and the study commands' --api are added by launch.cli, so that this
library imports no service package and talks no HTTP)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amst_core.config import ConfigError, RunConfig, config_data, dump_config, load_config
from amst_core.extras import MissingExtra
from amst_core.runfolder import CHECKPOINTS, RunFolder
from amst_core.vocab import SPLITS

# Anything else would change the run being continued. num_workers does not: every sample's augmentation has its
# own seed, whatever the process that loads it.
RESUMABLE_FIELDS = {"epochs", "device", "num_workers", "compile"}


def cmd_prepare(args: argparse.Namespace) -> int:
    from amst_core.datasets import DATASETS, resolve

    spec = DATASETS.get(args.dataset)
    if spec is None or spec.prepare is None:
        buildable = " and ".join(name for name, d in DATASETS.items() if d.prepare)
        how = f"; {args.dataset}: {spec.prepare_command}" if spec is not None and spec.prepare_command else ""
        raise ConfigError("dataset", f"`amst prepare` builds {buildable}{how}")
    resolve(spec.prepare)(Path(args.out) if args.out else None, seed=args.seed, force=args.force,
                          log=lambda msg: print(msg, file=sys.stderr))
    return 0


def _train(cfg: RunConfig, out: Path, progress: bool | None) -> dict[str, Any]:
    """In this process, or on `resources.gpus` ranks under PyTorch's launcher (amst_core.ranks)."""
    from amst_core.execute import execute_run
    from amst_core.ranks import train_on_ranks

    if cfg.resources.gpus > 1:
        return train_on_ranks(cfg, out)
    from amst_core.sinks import ConsoleSink, JsonlSink

    return execute_run(cfg, out, [JsonlSink(RunFolder(out).metrics), ConsoleSink(cfg.epochs)], run_id=out.name,
                       progress=progress)


def resume_config(run_dir: Path, overrides: list[str]) -> RunConfig:
    saved = RunFolder(run_dir).config
    if not saved.exists():
        raise ConfigError("--resume", f"{run_dir} holds no {saved.name}: not a run folder")
    changed = {item.partition("=")[0].strip() for item in overrides}
    refused = sorted(changed - RESUMABLE_FIELDS)
    if refused:
        raise ConfigError(refused[0], f"cannot change when resuming (allowed: {', '.join(sorted(RESUMABLE_FIELDS))})")
    return load_config(saved, overrides)


def on_local_paths(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command that reads the user's own files: a dataset or text model may lie anywhere, absolute paths work.
    Never the service's commands (`amst serve`): their runs read only under AMST_DATA_ROOT."""

    def run(args: argparse.Namespace) -> int:
        from amst_core.datafiles import any_data_path

        with any_data_path():
            return command(args)

    return run


@on_local_paths
def cmd_train(args: argparse.Namespace) -> int:
    progress = False if args.no_progress else None
    if args.resume:
        out = Path(args.resume)
        cfg = resume_config(out, args.set)
        folder = RunFolder(out)
        if not folder.can_resume():
            raise ConfigError("--resume", f"{out} has no {folder.checkpoint('last').relative_to(out)} to resume "
                                          "from")
    else:
        if not args.config:
            raise ConfigError("config", "give a config file, or --resume DIR")
        cfg = load_config(args.config, args.set)
        out = Path(args.out) if args.out else Path("runs") / cfg.display_name
        if RunFolder(out).holds_run():
            raise ConfigError("--out", f"{out} already holds a run; continue it with --resume {out} "
                                       "or choose another --out")
    summary = _train(cfg, out, progress=progress)
    print(json.dumps({k: summary[k] for k in ("best_epoch", "best_val_acc", "test_acc_at_best")}))
    print(f"run folder: {out}", file=sys.stderr)
    return 0


# What a re-run may change: where it runs, not what it computes (a CPU re-run of a GPU run sets device=cpu).
RERUN_FIELDS = {"device", "num_workers"}


@on_local_paths
def cmd_rerun(args: argparse.Namespace) -> int:
    """A run again from its record: provenance.json's resolved config (config.yaml for a run trained before
    provenance was recorded), refused where its data changed unless --force."""
    from amst_core.runfolder import find_run

    if args.api:
        if args.set or args.out:
            raise ConfigError("--set" if args.set else "--out", "a re-run on a server is its run's record as it "
                              "stands: no --set or --out with --api")
        return on_server(args, {"run": args.run, "force": args.force})
    folder = find_run(args.run)
    refused = sorted({item.partition("=")[0].strip() for item in args.set} - RERUN_FIELDS)
    if refused:
        raise ConfigError(refused[0], f"a re-run computes what its run did; it may change only "
                                      f"{', '.join(sorted(RERUN_FIELDS))}")
    cfg, warnings = rerun_config(folder, args.set, force=args.force)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out = Path(args.out) if args.out else folder.path.with_name(f"{folder.name}-rerun")
    if RunFolder(out).holds_run():
        raise ConfigError("--out", f"{out} already holds a run; choose another --out")
    summary = _train(cfg, out, progress=False if args.no_progress else None)
    print(json.dumps({k: summary[k] for k in ("best_epoch", "best_val_acc", "test_acc_at_best")}))
    print(f"run folder: {out}", file=sys.stderr)
    return 0


def rerun_config(folder: RunFolder, overrides: list[str], *, force: bool) -> tuple[RunConfig, list[str]]:
    """The run's recorded config, expecting its recorded data (`data_fingerprint`), and what the caller should be
    warned of. A ConfigError names what changed in the data unless `force`."""
    from amst_core import provenance

    if not folder.provenance.exists():
        cfg = load_config(folder.config, overrides)
        return cfg, [f"{folder.path} recorded no provenance (trained before it was recorded): its config is re-run "
                     "as saved, and nothing checks that its data are the same"]
    recorded = json.loads(folder.provenance.read_text())
    cfg = load_config(None, overrides, recorded["config"])  # a refused value is a ConfigError, not a traceback
    changes = provenance.data_changes(recorded["data"], provenance.data_fingerprint(cfg))
    if not changes:
        return cfg.model_copy(update={"data_fingerprint": recorded["data"]["digest"]}), []
    said = "; ".join(changes)
    if not force:
        raise ConfigError("data", f"the data changed since {folder.name} was trained: {said}. The re-run would not "
                                  "be the same run; --force re-runs it on today's data")
    return cfg.model_copy(update={"data_fingerprint": None}), [f"re-running on changed data: {said}"]


@on_local_paths
def cmd_preprocess(args: argparse.Namespace) -> int:
    """An original release (or the user's folder) to the layout the loaders read; finished samples are skipped."""
    from amst_core.config import data_root
    from amst_core.datasets import DATASETS
    from amst_core.preprocess import RELEASES
    from amst_core.preprocess.base import execute

    raw = Path(args.raw_dir)
    if not raw.is_dir():
        raise ConfigError("RAW_DIR", f"{raw} is not a folder")
    spec = DATASETS[args.dataset]
    if args.dataset not in RELEASES:  # no release to convert: RAW_DIR is the dataset itself, decoded into the cache
        return build_cache([f"dataset.name={args.dataset}", f"dataset.root={raw.resolve()}", *args.set], None,
                           not args.no_progress)
    plan = RELEASES[args.dataset](raw, Path(args.splits) if args.splits else None)
    out = Path(args.out) if args.out else data_root() / args.dataset
    report = execute(plan, out, workers=args.workers, text_model=args.text_model,
                     text_max_length=spec.text_max_length, progress=not args.no_progress,
                     log=lambda msg: print(msg, file=sys.stderr))
    sizes = ", ".join(f"{split} {len(items)}" for split, items in plan.splits.items())
    print(f"{args.dataset}: {report.done} samples written, {report.skipped} already done, {len(report.failed)} "
          f"failed, in {report.seconds:.1f} s; splits: {sizes}; layout in {out}", file=sys.stderr)
    for sample_id, why in report.failed[:10]:
        print(f"  failed {sample_id}: {why}", file=sys.stderr)
    if report.failed:
        print(f"every failure is listed in {out / 'preprocess_failures.txt'}; run the command again to retry them "
              "(finished samples are skipped)", file=sys.stderr)
        return 1
    return 0


def build_cache(overrides: list[str], config: str | None, progress: bool) -> int:
    """Decode a dataset into the sample cache now (a run does it on first use otherwise)."""
    from amst_core.datafiles import check_dataset
    from amst_core.datasets import DATASETS

    cfg = check_dataset(load_config(config, overrides, base={"method": "naive"}))
    spec = DATASETS[cfg.dataset.name]
    said = spec.cache(cfg, progress) if spec.cache is not None else \
        f"{spec.name} is generated in memory: nothing to cache"
    print(said, file=sys.stderr)
    return 0


@on_local_paths
def cmd_cache(args: argparse.Namespace) -> int:
    """A dataset decoded into the sample cache now (a run does it on first use otherwise)."""
    if args.target.endswith((".yaml", ".yml")) or Path(args.target).is_file():
        return build_cache(args.set, args.target, not args.no_progress)
    return build_cache([f"dataset.name={args.target}", *args.set], None, not args.no_progress)


def on_server(args: argparse.Namespace, body: dict[str, Any]) -> int:
    """`--api URL`: the library talks no HTTP; the `amst` command (launch.cli) gives --api its client."""
    submit_to_api = getattr(args, "submit_to_api", None)
    if submit_to_api is None:
        raise ConfigError("--api", "this command line has no API client; use the installed `amst` command")
    return submit_to_api(args, body)


def run_study(base: dict[str, Any], grid: dict[str, Any], baseline: dict[str, Any] | None,
              args: argparse.Namespace, name: str) -> int:
    from amst_core import study

    if args.api:
        return on_server(args, {"name": name, "base": base, "grid": grid, "baseline": baseline})
    out = Path(args.out or Path("sweeps") / name)
    results = study.run_here(base, grid, baseline, out, False if args.no_progress else None)
    print(study.write_tables(results, baseline, out, args.table))
    print(f"tables: {out}/matrix.csv, matrix.md, matrix.tex", file=sys.stderr)
    return 0


@on_local_paths
def cmd_sweep(args: argparse.Namespace) -> int:
    """A grid of runs: here one after another (resumable), or submitted to a server with --api."""
    from amst_core import study

    # As written, not validated: defaults are filled per combination (a method's own parameters must not follow
    # it to another method of the grid).
    base = config_data(args.config, args.set)
    grid = study.parse_grid(args.grid)
    if not grid:
        raise ConfigError("--grid", "give at least one --grid KEY=V1,V2,...")
    return run_study(base, grid, study.parse_cell(args.baseline), args, args.name or Path(args.config).stem)


@on_local_paths
def cmd_reproduce(args: argparse.Namespace) -> int:
    """The paper's comparison for a dataset: configs/<dataset>/reproduce.yaml."""
    from amst_core import study

    path = study.REPRODUCE_DIR / args.dataset / "reproduce.yaml"
    if not path.exists():
        known = sorted(p.parent.name for p in study.REPRODUCE_DIR.glob("*/reproduce.yaml"))
        raise ConfigError("dataset", f"no reproduce.yaml for {args.dataset}; known: {', '.join(known)}")
    spec = study.load_study(path)
    base = config_data(None, args.set, spec["base"])  # no method: the grid gives it
    grid = {**spec["grid"], **study.parse_grid(args.grid)}
    return run_study(base, grid, spec.get("baseline"), args, args.name or f"reproduce-{args.dataset}")


@on_local_paths
def cmd_evaluate(args: argparse.Namespace) -> int:
    from amst_core.evaluation import evaluate_run

    points = evaluate_run(Path(args.run_dir), split=args.split, which=args.checkpoint, device=args.device)
    if args.json:
        print(json.dumps([p.to_dict() for p in points], indent=1))
        return 0
    print(f"{'component':<14}{'modality':<10}{'acc':>8}{'loss':>9}{'macro_f1':>10}{'acc_prob':>10}")
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for p in points:
        rows.setdefault((p.component, p.modality or "-"), {})[p.name] = p.value
    for (component, modality), v in rows.items():
        if "acc" in v and "loss" in v:
            print(f"{component:<14}{modality:<10}{v['acc']:>8.4f}{v['loss']:>9.4f}{v['macro_f1']:>10.4f}"
                  f"{v['acc_prob']:>10.4f}")
    return 0


@on_local_paths
def cmd_export_model(args: argparse.Namespace) -> int:
    """A run's trained model as safetensors or ONNX, with the preprocessing its inputs need (Doc/models.md)."""
    from amst_core.modelexport import PREPROCESSING, export_model

    path = export_model(args.run, args.format, Path(args.out) if args.out else None, args.checkpoint)
    print(f"model: {path}\npreprocessing: {path.parent / PREPROCESSING}", file=sys.stderr)
    return 0


@on_local_paths
def cmd_predict(args: argparse.Namespace) -> int:
    """A run's predictions on files of its dataset's kind, one row per sample (Doc/models.md)."""
    from amst_core.predict import predict

    out = Path(args.out)
    rows = predict(args.run, Path(args.input), out, args.checkpoint, args.split, args.device)
    print(f"{rows} predictions: {out}", file=sys.stderr)
    return 0


@on_local_paths
def cmd_export(args: argparse.Namespace) -> int:
    """Runs copied to TensorBoard event files or an MLflow tracking store (Doc/exports.md)."""
    from amst_core.exporters import export_runs

    tool, target = args.to
    for line in export_runs(args.runs, tool, target, args.experiment, args.replace):
        print(line)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print the fully resolved config (defaults filled in)."""
    cfg = load_config(args.config, args.set)
    print(dump_config(cfg), end="")
    return 0


Commands = Callable[[argparse._SubParsersAction], None]


def build_parser(*more: Commands) -> argparse.ArgumentParser:
    """The library's commands, and those `more` adds (the service's: launch.cli)."""
    parser = argparse.ArgumentParser(prog="amst", description="AMST Studio: multimodal training without a "
                                                              "dominant modality.")
    sub = parser.add_subparsers(dest="command", required=True)
    library_commands(sub)
    for add in more:
        add(sub)
    return parser


def library_commands(sub: argparse._SubParsersAction) -> None:
    from amst_core.datasets import DATASETS

    p = sub.add_parser("prepare", help="download and build a dataset under AMST_DATA_ROOT")
    p.add_argument("dataset", help=" or ".join(name for name, d in DATASETS.items() if d.prepare))
    p.add_argument("--out", help="folder to write (default AMST_DATA_ROOT/avdigits)")
    p.add_argument("--seed", type=int, default=0, help="pairing and split seed")
    p.add_argument("--force", action="store_true", help="rebuild even if already prepared")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a run from a YAML config, or resume one")
    p.add_argument("config", nargs="?", help="YAML run config")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a field")
    p.add_argument("--out", help="run folder (default runs/<name>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR (to --set epochs=N)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("rerun", help="train a run again from its record (config, data check)",
                       description="Rebuilds the run from its provenance.json (the resolved config); refuses when "
                                   "the data it recorded changed, unless --force.")
    p.add_argument("run", help="a run folder, or the id of a run under AMST_ARTIFACTS/runs (with --api: on that "
                   "server)")
    p.add_argument("--out", help="run folder (default: <run folder>-rerun beside it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"only {', '.join(sorted(RERUN_FIELDS))}")
    p.add_argument("--force", action="store_true", help="re-run even though the data changed (warns)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--api", metavar="URL", help="re-run a run of this server there instead (POST /runs/{id}/rerun; "
                   "AMST_API_TOKEN)")
    p.set_defaults(func=cmd_rerun)

    from amst_core.preprocess import RELEASES

    cached = [name for name, d in DATASETS.items() if d.cache is not None and d.always_cached]
    p = sub.add_parser("preprocess", help="an original release (or your folder) to the layout the loaders read",
                       description="Reads RAW_DIR as released (Doc/datasets.md says which files each release "
                                   "needs) and writes the reference layout to --out (default AMST_DATA_ROOT/DATASET). "
                                   "Parallel, resumable: finished samples are skipped.")
    p.add_argument("dataset", choices=[*RELEASES, *cached])
    p.add_argument("raw_dir", metavar="RAW_DIR")
    p.add_argument("--out", help="layout folder to write (default AMST_DATA_ROOT/DATASET)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="processes")
    p.add_argument("--splits", help="a folder with the reference's split files to use instead of a seeded split")
    p.add_argument("--text-model", default="roberta-base", help="tokenizer of the text model (text datasets)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="folder: the run's feature settings (model.audio_frames, ...), so its cache is the one used")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("cache", help="decode a dataset into the sample cache now (else on first use)")
    p.add_argument("target", metavar="DATASET|CONFIG", help="a dataset (folder: with --set dataset.root=...) or a "
                   "run config; --set the run's model settings (model.image_size, ...) so its cache is the one used")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_cache)

    def study_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a base field")
        p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="a run-config field (dotted) and its values; repeat for a grid")
        p.add_argument("--baseline", metavar="KEY=V,...", help="the cell the others are paired with (method=naive)")
        p.add_argument("--name", help="the sweep's name (default: the config's)")
        p.add_argument("--out", help="here: the study folder (default sweeps/<name>)")
        p.add_argument("--api", metavar="URL", help="submit to this server instead (POST /sweeps; AMST_API_TOKEN)")
        p.add_argument("--wait", action="store_true", help="with --api: wait for the runs, then print the table")
        p.add_argument("--table", choices=("markdown", "latex", "csv"), default="markdown",
                       help="the results table printed at the end (here all three are written to --out)")
        p.add_argument("--max-concurrent", type=int, help="with --api: runs of the sweep at once")
        p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("sweep", help="a grid of runs and its results matrix (here, or on a server with --api)")
    p.add_argument("config", help="the base run config (YAML)")
    study_options(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("reproduce", help="the paper's comparison for a dataset: every method, the reference skip "
                                         "factors, seeds 0-2 (configs/<dataset>/reproduce.yaml)")
    p.add_argument("dataset")
    study_options(p)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("evaluate", help="metrics of a saved run on one split")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--checkpoint", default="best", choices=CHECKPOINTS)
    p.add_argument("--device", help="override the run's device")
    p.add_argument("--json", action="store_true", help="print metric points as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export-model", help="a run's trained model as safetensors or ONNX, with its preprocessing")
    p.add_argument("run", help="a run folder, or the id of a run under AMST_ARTIFACTS/runs")
    p.add_argument("--format", required=True, choices=("safetensors", "onnx"))
    p.add_argument("--out", help="folder to write (default: <run folder>/export)")
    p.add_argument("--checkpoint", default="best", choices=CHECKPOINTS)
    p.set_defaults(func=cmd_export_model)

    p = sub.add_parser("predict", help="a run's predictions on files: a folder, a CSV of paths, or a dataset root")
    p.add_argument("run", help="a run folder, or the id of a run under AMST_ARTIFACTS/runs")
    p.add_argument("input", metavar="INPUT", help="a folder of <id>.* samples (or <label>/<id>.*), a CSV with one "
                   "column per modality, or a dataset root in the run's layout (Doc/models.md)")
    p.add_argument("--out", default="predictions.csv", help="CSV, or JSON lines if it ends .jsonl "
                                                             "(default predictions.csv)")
    p.add_argument("--checkpoint", default="best", choices=CHECKPOINTS)
    p.add_argument("--split", default="test", choices=SPLITS, help="the split of a dataset root")
    p.add_argument("--device", default="cpu", help="where the model runs (default cpu)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="copy runs to TensorBoard event files or an MLflow tracking store",
                       description="Every point as a scalar or metric (val/acc/audio/branch, step = epoch), the "
                                   "config as parameters, the provenance as tags or text (Doc/exports.md).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="a run folder, or the id of a run of this machine's "
                                                          "service (AMST_ARTIFACTS/runs/<id>)")
    p.add_argument("--to", nargs=2, required=True, metavar=("tensorboard|mlflow", "DIR|URI"),
                   help="tensorboard DIR (a folder per run under DIR), or mlflow URI (http(s)://host:port or "
                        "sqlite:///path.db)")
    p.add_argument("--experiment", default="amst", help="the MLflow experiment (made if missing; default amst)")
    p.add_argument("--replace", action="store_true", help="a run exported before is written anew (else refused)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("config", help="validate a config and print it with every default filled in")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.set_defaults(func=cmd_config)


def main(argv: list[str] | None = None, *more: Commands) -> int:
    args = build_parser(*more).parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, MissingExtra) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; continue with `amst train --resume DIR`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

