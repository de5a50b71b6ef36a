"""`amst export-model`: a run's weights as safetensors that reload exactly, and one ONNX graph whose outputs ONNX
Runtime computes as PyTorch does, each with the preprocessing.json its inputs need."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from amst_core.cli import main
from amst_core.datafiles import any_data_path
from amst_core.modelexport import ONNX_ATOL, ONNX_RTOL, TrainedModel, load_safetensors
from amst_core.models import MultimodalNet
from amst_core.runfolder import RunFolder
from tests.kit.trained import own_data_root, trained_folder_run

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def naive_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("naive")
    with own_data_root(base):
        return trained_folder_run(base)


@pytest.fixture(scope="module")
def full_text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AMST-FULL (two networks, an averaged prediction) on audio, text and visual."""
    base = tmp_path_factory.mktemp("full")
    with own_data_root(base):
        return trained_folder_run(base, method="amst_full", text=True, epochs=1)


def exported(run: Path, fmt: str, out: Path, *more: str) -> tuple[Path, dict]:
    assert main(["export-model", str(run), "--format", fmt, "--out", str(out), *more]) == 0
    return out / f"model.{fmt}", json.loads((out / "preprocessing.json").read_text())


def test_safetensors_reload_into_a_fresh_net_equal_the_checkpoint(naive_run: Path, tmp_path: Path) -> None:
    path, said = exported(naive_run, "safetensors", tmp_path / "st")
    state = RunFolder(naive_run).load_checkpoint("best")
    nets = load_safetensors(path)
    assert set(nets) == {"model"}
    saved = state["method"]["nets"]["model"]["net"]
    fresh = MultimodalNet(("audio", "visual"), 2, "concat", TrainedModel.load(str(naive_run)).cfg.model)
    fresh.load_state_dict(nets["model"], strict=True)  # every encoder's and head's tensor, nothing else
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    assert said["classes"] == ["cat", "dog"] and said["epoch"] == state["epoch"] and said["checkpoint"] == "best"
    assert said["inputs"] == {"audio": {"shape": ["batch", 1, 32, 16], "dtype": "float32"},
                              "visual": {"shape": ["batch", 3, 1, 16, 16], "dtype": "float32"}}
    assert said["features"]["audio"]["fbank"]["num_mel_bins"] == 16
    assert said["features"]["audio"]["sample_rate"] == 8000  # the folder's rate, resolved when it trained
    assert said["features"]["visual"]["mean"] == [0.485, 0.456, 0.406]
    assert said["provenance"] == state.get("provenance")


def onnx_against_pytorch(run: Path, path: Path, said: dict, batch: int = 4) -> None:
    """ONNX Runtime equals evaluation's eval_batch within the stated tolerance, every output, on random inputs of
    the stated shapes (the largest difference is printed: Doc/models.md states it)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(said["inputs"])
    assert [o.name for o in session.get_outputs()] == list(said["outputs"])
    rng = np.random.default_rng(1)
    inputs = {}
    for name, spec in said["inputs"].items():
        shape = (batch, *spec["shape"][1:])
        inputs[name] = (rng.integers(3, 250, shape) if spec["dtype"] == "int64" else
                        (rng.random(shape) > 0.3) if name == "text_mask" else rng.normal(size=shape))
        inputs[name] = inputs[name].astype(spec["dtype"])
    if "text_mask" in inputs:
        inputs["text_mask"][:, 0] = 1.0  # the first token (<s>) is never padding
    got = dict(zip(said["outputs"], session.run(None, inputs), strict=True))
    with any_data_path():
        method = TrainedModel.load(str(run)).method
    expected = method.eval_batch({k: torch.from_numpy(v) for k, v in inputs.items()})  # evaluation's own path
    branch = "alt_branch" if method.name == "amst_full" else "branch"
    worst = 0.0
    for name, value in got.items():
        prediction = name.removesuffix("_logits")
        reference = expected[("fused", None) if prediction == "fused" else (branch, prediction)].numpy()
        assert value.shape == (batch, len(said["classes"]))
        np.testing.assert_allclose(value, reference, atol=ONNX_ATOL, rtol=ONNX_RTOL)
        worst = max(worst, float(np.abs(value - reference).max() / max(1.0, np.abs(reference).max())))
    print(f"{method.name}: largest |ONNX - PyTorch| / max(1, |PyTorch|) = {worst:.2e}")


def test_onnx_outputs_equal_pytorch_with_any_batch_size(naive_run: Path, tmp_path: Path) -> None:
    path, said = exported(naive_run, "onnx", tmp_path / "onnx")
    assert list(said["outputs"]) == ["fused_logits", "audio_logits", "visual_logits"]
    check = said["onnx_check"]
    assert check["max_abs_diff"] <= ONNX_ATOL + ONNX_RTOL * check["max_abs_value"]
    for batch in (1, 5):
        onnx_against_pytorch(naive_run, path, said, batch)


def test_onnx_of_an_amst_full_run_with_text(full_text_run: Path, tmp_path: Path) -> None:
    path, said = exported(full_text_run, "onnx", tmp_path / "onnx", "--checkpoint", "last")
    assert list(said["inputs"]) == ["audio", "text", "text_mask", "visual"]
    assert said["inputs"]["text"] == {"shape": ["batch", 16], "dtype": "int64"}
    assert said["features"]["text"]["max_length"] == 16 and said["checkpoint"] == "last"
    assert list(said["outputs"]) == ["fused_logits", "audio_logits", "text_logits", "visual_logits"]
    onnx_against_pytorch(full_text_run, path, said, batch=3)


def test_a_run_id_under_the_artifacts_folder(naive_run: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from amst_core.settings import get_settings

    artifacts = tmp_path / "artifacts"
    (artifacts / "runs").mkdir(parents=True)
    (artifacts / "runs" / "run-42").symlink_to(naive_run)
    monkeypatch.setenv("AMST_ARTIFACTS", str(artifacts))
    get_settings.cache_clear()
    try:
        path, said = exported(Path("run-42"), "safetensors", tmp_path / "by-id")
    finally:
        get_settings.cache_clear()
    assert path.is_file() and said["run_id"] == "run-42"


@pytest.mark.parametrize("case", ["no checkpoint", "no run", "unwritable out", "bad format"])
def test_bad_input_is_one_clear_line(case: str, naive_run: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    run, out, fmt = str(naive_run), str(tmp_path / "out"), "safetensors"
    if case == "no checkpoint":
        bare = tmp_path / "bare"
        bare.mkdir()
        (bare / "config.yaml").write_text((naive_run / "config.yaml").read_text())
        run = str(bare)
    elif case == "no run":
        run = str(tmp_path / "nowhere")
    elif case == "unwritable out":
        (tmp_path / "a-file").write_text("")
        out = str(tmp_path / "a-file" / "out")
    if case == "bad format":
        with pytest.raises(SystemExit):
            main(["export-model", run, "--format", "pickle", "--out", out])
        assert "invalid choice: 'pickle'" in capsys.readouterr().err
        return
    assert main(["export-model", run, "--format", fmt, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    expected = {"no checkpoint": "has no best checkpoint", "no run": "neither a run folder nor the id of a run",
                "unwritable out": "cannot be created"}[case]
    assert expected in err
