"""The avdigits (preset hard) and avtdigits (three modalities) results tables and curves of Doc/results.md.

Trains every method of `RUNS` for each seed with `amst train` (a run whose summary.json exists is reused, so
the script can be stopped and started again), then prints a markdown table (mean and spread over seeds) and
writes one PNG per method: per-modality validation accuracy by epoch.

    python bench/results.py [--dataset avdigits|avtdigits] [--seeds 0 1 2] [--out runs/results] [--img DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

RUNS: dict[str, tuple[str, list[str]]] = {
    # label: (config, extra --set overrides)
    "unimodal audio": ("configs/avdigits/unimodal_audio.yaml", []),
    "unimodal visual": ("configs/avdigits/unimodal_visual.yaml", []),
    "naive (concat)": ("configs/avdigits/naive.yaml", []),
    "ogm_ge": ("configs/avdigits/ogm_ge.yaml", []),
    "pmr": ("configs/avdigits/pmr.yaml", []),
    "mla": ("configs/avdigits/mla.yaml", []),
    "mslr": ("configs/avdigits/mslr.yaml", []),
    "amst_alt": ("configs/avdigits/amst_alt.yaml", []),
    "amst_joint": ("configs/avdigits/amst_joint.yaml", []),
    "amst_full": ("configs/avdigits/amst_full.yaml", []),
}
BASELINE = "naive (concat)"  # every row's test accuracy is paired with it by seed


def every_method(runs: dict[str, tuple[str, list[str]]], dataset: str) -> dict[str, tuple[str, list[str]]]:
    """`runs`, then every other registered method that has a config for the dataset (the field's methods)."""
    from amst_core.catalog import METHODS

    labels = {config.rsplit("/", 1)[-1].removesuffix(".yaml") for config, _ in runs.values()}
    more = {name: (f"configs/{dataset}/{name}.yaml", []) for name in METHODS
            if name not in labels and Path(f"configs/{dataset}/{name}.yaml").exists()}
    return {**runs, **more}


AVT_RUNS: dict[str, tuple[str, list[str]]] = {
    "naive (concat)": ("configs/avtdigits/naive.yaml", []),
    "mla": ("configs/avtdigits/mla.yaml", []),
    "amst_full": ("configs/avtdigits/amst_full.yaml", []),
}
DATASET_RUNS = {"avdigits": RUNS, "avtdigits": AVT_RUNS}  # main() adds every other method with a config
COLOURS = {"audio": "#1f77b4", "visual": "#ff7f0e", "text": "#2ca02c", None: "black"}


def run_dir(out: Path, label: str, seed: int) -> Path:
    return out / f"{label.replace(' ', '_').replace('(', '').replace(')', '')}-s{seed}"


def train(out: Path, label: str, seed: int, extra: list[str], runs: dict) -> Path:
    config, overrides = runs[label]
    folder = run_dir(out, label, seed)
    if (folder / "summary.json").exists():
        return folder
    sets = [f"seed={seed}", *overrides, *extra]
    cmd = [sys.executable, "-m", "launch", "train", config, "--out", str(folder), "--no-progress"]
    if (folder / "checkpoints" / "last.pt").exists():
        cmd = [sys.executable, "-m", "launch", "train", "--resume", str(folder), "--no-progress"]
        sets = [s for s in sets if s.startswith("epochs=")]
    for s in sets:
        cmd += ["--set", s]
    print(f"== {label} seed {seed}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    return folder


def load_points(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def helper_components(summary: dict) -> dict[str, str]:
    """modality -> the helper component to report (FULL: the alternating module's helpers)."""
    at_best = summary["test_at_best"]
    component = "alt_helper" if "alt_helper" in at_best else "helper"
    return {m: component for m in at_best.get(component, {})}


def mean_spread(values: list[float], digits: int = 4) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def last_value(points: list[dict], split: str, modality: str, name: str) -> float | None:
    values = [p for p in points if p["split"] == split and p["component"] == "run" and p["modality"] == modality
              and p["name"] == name]
    return max(values, key=lambda p: p["epoch"])["value"] if values else None


def paired(test: list[float], baseline: list[float] | None) -> str:
    """The paired difference to the baseline's test accuracy by seed (mean ± std) and the paired t-test's p."""
    if baseline is None or len(baseline) != len(test):
        return "–"
    from amst_core.sweeps import paired_test

    diffs = [a - b for a, b in zip(test, baseline, strict=True)]
    t_p, _ = paired_test(test, baseline)
    return f"{mean_spread(diffs, 3)} (p {t_p:.2f})" if t_p is not None else mean_spread(diffs, 3)


def row(label: str, skip: dict, best_val: list[float], test: list[float], helpers: dict[str, list[float]],
        plateau: dict[str, list[float]], times: list[float], modalities: tuple[str, ...],
        baseline: list[float] | None = None) -> str:
    return (f"| {label} | {', '.join(str(skip.get(m, '–')) for m in modalities)} | {mean_spread(best_val)} | "
            f"{mean_spread(test)} | {paired(test, baseline)} | "
            + "".join(f"{mean_spread(helpers[m])} | " for m in modalities)
            + "".join(f"{mean_spread(plateau[m], 1)} | " for m in modalities) + f"{statistics.mean(times):.1f} |")


def test_accuracies(out: Path, label: str, seeds: list[int]) -> list[float] | None:
    folders = [run_dir(out, label, s) / "summary.json" for s in seeds]
    if not all(f.exists() for f in folders):
        return None
    return [json.loads(f.read_text())["test_acc_at_best"] for f in folders]


def table(out: Path, seeds: list[int], runs: dict, labels: list[str] | None = None) -> str:
    """Rows for `labels` (default every run), each paired with the baseline by seed."""
    first = json.loads((run_dir(out, next(iter(labels or runs)), seeds[0]) / "summary.json").read_text())
    modalities = tuple(sorted(first["skip_factors"]))
    baseline = test_accuracies(out, BASELINE, seeds)
    rows = [f"| method | skip ({', '.join(modalities)}) | best val acc | test acc at best | "
            "Δ test vs naive (paired) | " + "".join(f"{m} helper test | " for m in modalities)
            + "".join(f"{m} epochs to plateau | " for m in modalities) + "train s / epoch |",
            "|---" * (6 + 2 * len(modalities)) + "|"]
    for label in labels or runs:
        summaries = [json.loads((run_dir(out, label, s) / "summary.json").read_text()) for s in seeds]
        points = [load_points(run_dir(out, label, s)) for s in seeds]
        helpers = {m: [s["test_at_best"][c][m] for s in summaries for m2, c in helper_components(s).items()
                       if m2 == m] for m in modalities}
        plateau = {m: [v for pts in points if (v := last_value(pts, "val", m, "epochs_to_plateau")) is not None]
                   for m in modalities}
        times = [p["value"] for pts in points for p in pts if p["name"] == "train_time"]
        skip = summaries[0]["skip_factors"]
        rows.append(row(label, skip, [s["best_val_acc"] for s in summaries], [s["test_acc_at_best"] for s in summaries],
                        helpers, plateau, times, modalities, baseline if label != BASELINE else None))
        if summaries[0].get("selections"):  # MLA: per seed, the combination with the best val accuracy
            chosen = [max(s["selections"].values(), key=lambda b: b["best_val_acc"]) for s in summaries]
            names = [max(s["selections"], key=lambda c: s["selections"][c]["best_val_acc"]) for s in summaries]
            empty = {m: [] for m in modalities}
            rows.append(row(f"{label} (best combination: {', '.join(n.removeprefix('combo:') for n in names)})",
                            skip, [c["best_val_acc"] for c in chosen], [c["test_acc_at_best"] for c in chosen],
                            empty, empty, times, modalities, baseline))
    return "\n".join(rows)


def plot(out: Path, label: str, seeds: list[int], img: Path, dataset: str = "avdigits") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    series: dict[tuple[str, str | None], dict[int, list[float]]] = {}
    for s in seeds:
        for p in load_points(run_dir(out, label, s)):
            if p["split"] == "val" and p["name"] == "acc" and p["component"] != "run":
                series.setdefault((p["component"], p["modality"]), {}).setdefault(p["epoch"], []).append(p["value"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (component, modality), by_epoch in sorted(series.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if modality is None and component not in ("fused",):
            continue
        epochs = sorted(by_epoch)
        means = [statistics.mean(by_epoch[e]) for e in epochs]
        lows = [min(by_epoch[e]) for e in epochs]
        highs = [max(by_epoch[e]) for e in epochs]
        style = "-" if "branch" in component or component == "fused" else "--"
        width = 2.8 if component == "fused" else 1.4
        name = "fused" if modality is None else f"{component} {modality}"
        ax.plot(epochs, means, style, color=COLOURS[modality], linewidth=width, label=name)
        ax.fill_between(epochs, lows, highs, color=COLOURS[modality], alpha=0.12)
    ax.set(title=f"{dataset} (hard) – {label}: validation accuracy, mean and range over seeds {seeds}",
           xlabel="epoch", ylabel="accuracy", ylim=(0, 1.0))
    ax.title.set_fontsize(9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    img.mkdir(parents=True, exist_ok=True)
    path = img / f"{run_dir(Path(), label, 0).name.removesuffix('-s0')}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=list(DATASET_RUNS), default="avdigits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, help="run folders (default runs/results, runs/results-avtdigits)")
    parser.add_argument("--img", type=Path, help="curves (default Doc/img/results, Doc/img/results-avtdigits)")
    parser.add_argument("--only", nargs="+", help="train only these labels (then print their rows)")
    parser.add_argument("--set", action="append", default=[], help="extra override for every run")
    args = parser.parse_args()
    runs = every_method(DATASET_RUNS[args.dataset], args.dataset)
    suffix = "" if args.dataset == "avdigits" else f"-{args.dataset}"
    out, img = args.out or Path(f"runs/results{suffix}"), args.img or Path(f"Doc/img/results{suffix}")
    labels = args.only or list(runs)
    for seed in args.seeds:
        for label in labels:
            train(out, label, seed, args.set, runs)
    print(table(out, args.seeds, runs, labels))
    for label in labels:
        print(f"curves: {plot(out, label, args.seeds, img, args.dataset)}", file=sys.stderr)


if __name__ == "__main__":
    main()
