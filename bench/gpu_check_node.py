"""bench/gpu_check.sh's helpers, run by the node's own Python before anything of ours is installed: the standard
library only (torch where the node has it).

  paths ENV_PYTHON     the node Python's import folders that ENV_PYTHON (a fresh venv over it) lacks, one a line,
                       for a .pth file: the venv then sees the node's torch wherever it lies (the interpreter's
                       site-packages, a venv or conda env, a cluster module's PYTHONPATH), which --system-site-packages
                       alone would miss
  node                 the card, driver, torch, CUDA and cuDNN versions as JSON
  report ...           the summary of a check: summary.json and summary.md in --out, the Markdown also printed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def import_folders(python: str) -> list[str]:
    probe = "import json, sys; print(json.dumps(sys.path))"
    return json.loads(subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True).stdout)


def cmd_paths(args: argparse.Namespace) -> int:
    own = set(import_folders(args.env_python))
    for folder in sys.path[1:]:  # [0] is this script's folder
        if folder and folder not in own and os.path.isdir(folder):
            print(folder)
    return 0


def driver_version() -> str | None:
    """nvidia-smi's answer, or None where there is no driver."""
    if not shutil.which("nvidia-smi"):
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=30)
    lines = done.stdout.split()
    return lines[0] if done.returncode == 0 and lines else None


def node_info() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "driver": driver_version(),
                            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        import torch
    except ImportError as err:
        return {**info, "torch": None, "error": f"torch: {err}"}
    cuda = torch.cuda.is_available()
    return {**info, "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None, "gpus": torch.cuda.device_count(),
            "card": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()})"}


def cmd_node(args: argparse.Namespace) -> int:
    info = node_info()
    text = json.dumps(info, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if info.get("torch") else 1


def tier_counts(xmls: list[Path]) -> dict[str, int] | None:
    """Outcome counts of pytest runs from their JUnit XML, added up; None when none wrote one."""
    roots = [ET.parse(xml).getroot() for xml in xmls if xml.is_file()]
    if not roots:
        return None
    suites = [s for root in roots for s in ([root] if root.tag == "testsuite" else root.iter("testsuite"))]
    count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    return {"passed": count["tests"] - count["failures"] - count["errors"] - count["skipped"],
            "failed": count["failures"], "errors": count["errors"], "skipped": count["skipped"]}


def read_steps(tsv: Path) -> list[dict[str, Any]]:
    steps = []
    for line in tsv.read_text().splitlines() if tsv.is_file() else []:
        name, status, seconds, note = [*line.split("\t"), "", "", ""][:4]
        steps.append({"step": name, "status": status, "seconds": int(seconds or 0), "note": note})
    return steps


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary_markdown(summary: dict[str, Any], bench_md: str | None) -> str:
    node, tier = summary["node"] or {}, summary["tier"]
    lines = ["## bench/gpu_check.sh", "",
             "| card | driver | torch | CUDA | cuDNN | Python | GPUs |", "|---|---|---|---|---|---|---:|",
             f"| {node.get('card', '-')} | {node.get('driver') or '-'} | {node.get('torch') or '-'} | "
             f"{node.get('cuda') or '-'} | {node.get('cudnn') or '-'} | {node.get('python', '-')} | "
             f"{node.get('gpus', '-')} |", "",
             "| step | status | s | note |", "|---|---|---:|---|",
             *(f"| {s['step']} | {s['status']} | {s['seconds']} | {s['note']} |" for s in summary["steps"]), ""]
    if tier is None:
        lines.append("GPU tier (pytest -m gpu tests/gpu): no result")
    else:
        lines += ["| GPU tier (pytest -m gpu) | passed | failed | errors | skipped |", "|---|---:|---:|---:|---:|",
                  f"| tests/gpu | {tier['passed']} | {tier['failed']} | {tier['errors']} | {tier['skipped']} |"]
    lines += ["", bench_md.strip() if bench_md else "Throughput benchmark (bench/gpu_check.py): no result"]
    return "\n".join(lines) + "\n"


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    steps = read_steps(Path(args.steps))
    bench_md = Path(args.bench_md).read_text() if Path(args.bench_md).is_file() else None
    summary = {"ok": all(s["status"] == "ok" for s in steps), "steps": steps, "node": load_json(Path(args.node)),
               "tier": tier_counts([Path(x) for x in args.tier_xml]), "benchmark": load_json(Path(args.bench_json))}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    text = summary_markdown(summary, bench_md)
    (out / "summary.md").write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(required=True)
    p = sub.add_parser("paths")
    p.add_argument("env_python")
    p.set_defaults(func=cmd_paths)
    p = sub.add_parser("node")
    p.add_argument("--json")
    p.set_defaults(func=cmd_node)
    p = sub.add_parser("report")
    for name in ("out", "steps", "node", "bench-json", "bench-md"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--tier-xml", nargs="+", required=True, help="the tier's JUnit XML files (missing ones: no result)")
    p.set_defaults(func=cmd_report)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
