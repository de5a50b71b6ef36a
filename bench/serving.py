"""The trained model out, measured side by side: a batch through ONNX Runtime against the same batch through
PyTorch (amst_core.modelexport.TrainedModel.logits, what `amst predict` runs), and a run's metrics written to
TensorBoard against MLflow (`amst export`).

The model is an avdigits run's (ResNet-18 encoders at its width, its input shapes), naive fusion and AMST-FULL (two
networks), trained 3 epochs on a small synthetic set at those shapes (the timings do not depend on the weights).

    python bench/serving.py [--batch 64] [--repeats 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import timeit
from pathlib import Path

import torch

from amst_core.config import load_config
from amst_core.datafiles import any_data_path
from amst_core.execute import execute_run
from amst_core.exporters import export_runs
from amst_core.modelexport import TrainedModel, export_model
from amst_core.sinks import JsonlSink


def median_s(fn, repeats: int) -> float:
    """After a first call (which allocates), the median of `repeats` calls."""
    fn()
    return statistics.median(timeit.repeat(fn, number=1, repeat=repeats))


def trained_run(folder: Path, method: str) -> Path:
    from amst_core.datasets.avdigits import MODEL  # the shapes and width an avdigits run has

    synthetic = {"samples": {"train": 64, "val": 32, "test": 32}, "num_classes": 10, "image_size": MODEL["image_size"],
                 "frames": MODEL["frames"], "audio_shape": [MODEL["audio_frames"], MODEL["mel_bins"]]}
    cfg = load_config(base={"method": method, "dataset": {"name": "synthetic", "synthetic": synthetic},
                            "model": MODEL, "device": "cpu", "epochs": 3, "batch_size": 32})
    out = folder / method
    execute_run(cfg, out, [JsonlSink(out / "metrics.jsonl")], run_id=method, progress=False)
    return out


def measure(method: str, tmp: Path, args: argparse.Namespace) -> None:
    import onnxruntime

    run = trained_run(tmp, method)
    onnx_file = export_model(str(run), "onnx", tmp / f"{method}-onnx")
    model = TrainedModel.load(str(run))
    inputs = model.example_inputs(args.batch)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(str(onnx_file.parent / "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])
    feed = {name: tensor.numpy() for name, tensor in inputs.items()}
    torch_s = median_s(lambda: model.logits(inputs), args.repeats)
    onnx_s = median_s(lambda: session.run(None, feed), args.repeats)
    print(f"{method}: batch {args.batch}, {args.threads} thread(s): PyTorch {torch_s * 1000:.1f} ms, "
          f"ONNX Runtime {onnx_s * 1000:.1f} ms (x{torch_s / onnx_s:.2f} faster)")
    with any_data_path():  # as the command line: a folder of this machine, not the service's confinement
        tb_s = median_s(lambda: export_runs([str(run)], "tensorboard", f"{tmp}/tb-{time.time_ns()}"), 3)
        ml_s = median_s(lambda: export_runs([str(run)], "mlflow", f"sqlite:///{tmp}/ml-{time.time_ns()}.db"), 3)
    points = sum(1 for _ in (run / "metrics.jsonl").open())
    print(f"{method}: export of {points} points: TensorBoard {tb_s:.2f} s, MLflow (a new sqlite store each time) "
          f"{ml_s:.2f} s (x{ml_s / tb_s:.1f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("naive", "amst_full"):
            measure(method, Path(tmp), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
