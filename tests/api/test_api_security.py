"""A hostile request: no file outside AMST_DATA_ROOT is read through a run config, no request is unbounded, and no
other web site can make a browser change runs. Every refusal happens at submission and stores nothing."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from amst_core.limits import Limits
from api.main import create_app
from api.settings import ApiSettings
from tests.kit.api import FakeDispatcher, config, counts
from tests.kit.tiny import folder_run, write_tiny_avdigits, write_tiny_cremad, write_tiny_folder

SECRET = "TOP-SECRET-a1b2c3"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside AMST_DATA_ROOT, never inside it, holding a secret and a complete dataset."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text(f"{SECRET}.flv Anger\nDATABASE_URL=postgresql://{SECRET}\n")
    write_tiny_cremad(folder)
    return folder


def cremad(**dataset) -> dict:
    return config("naive", dataset={"name": "cremad", **dataset},
                  model={"frames": 1, "image_size": 16, "audio_frames": 40})


def refused(client: TestClient, body: dict, field: str, db_url: str, status: int = 422) -> str:
    before = counts(db_url)
    r = client.post("/runs", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"].startswith(field), r.json()
    assert SECRET not in r.text
    assert counts(db_url) == before, "nothing is stored for a refused request"
    return r.json()["error"]["message"]


def test_split_files_outside_the_dataset_are_refused_by_their_spelling(client: TestClient, outside: Path,
                                                                        data_root: Path, db_url: str) -> None:
    write_tiny_cremad(data_root)
    for bad in (str(outside / "secret.txt"), "../../outside/secret.txt", "/proc/self/environ"):
        files = {"train": bad, "val": "10_val_cre.txt", "test": "10_test_cre.txt"}
        refused(client, cremad(split_files=files), "dataset.split_files.train", db_url)
    for bad_root in ("/etc", "../outside", "cremad/../../outside"):
        refused(client, cremad(root=bad_root), "dataset.root", db_url)


def test_symlinks_out_of_the_data_root_are_refused(client: TestClient, outside: Path, data_root: Path,
                                                   db_url: str) -> None:
    (data_root / "cremad").symlink_to(outside / "cremad")  # the whole dataset folder
    message = refused(client, cremad(), "dataset.root", db_url)
    assert "outside AMST_DATA_ROOT" in message
    (data_root / "cremad").unlink()

    folder = write_tiny_cremad(data_root)
    (folder / "evil.txt").symlink_to(outside / "secret.txt")  # a split file
    files = {"train": "evil.txt", "val": "10_val_cre.txt", "test": "10_test_cre.txt"}
    assert "outside AMST_DATA_ROOT" in refused(client, cremad(split_files=files), "dataset.split_files", db_url)

    fbank = next((folder / "fbank").iterdir())  # one media file
    np.save(outside / "other.npy", np.zeros((40, 128), dtype=np.float32))
    fbank.unlink()
    fbank.symlink_to(outside / "other.npy")
    assert "outside AMST_DATA_ROOT" in refused(client, cremad(), "dataset.root", db_url)


def test_an_operator_may_allow_other_disks(make_settings: Callable[..., ApiSettings], dispatcher: FakeDispatcher,
                                           outside: Path, data_root: Path) -> None:
    (data_root / "cremad").symlink_to(outside / "cremad")
    app = create_app(make_settings(data_extra_roots=str(outside)))
    app.state.dispatcher = dispatcher
    with TestClient(app, headers={"Content-Type": "application/json"}) as c:
        assert c.post("/runs", json=cremad()).status_code == 201


def test_a_config_that_cannot_work_on_its_dataset_is_refused(client: TestClient, data_root: Path,
                                                             db_url: str) -> None:
    write_tiny_avdigits(data_root)
    message = refused(client, config("amst_full", dataset={"name": "avdigits"}, model={"mel_bins": 128}),
                      "model.mel_bins", db_url)
    assert "13 MFCC" in message
    folder = write_tiny_cremad(data_root)
    refused(client, cremad() | {"model": {"mel_bins": 64}}, "model.mel_bins", db_url)
    (folder / "10_val_cre.txt").write_text("1001_DFA_ANG_XX.flv Joy\n")
    message = refused(client, cremad(), "dataset.split_files", db_url)
    assert "Joy" not in message and "line 1" in message, "the error names the line, not what it holds"
    shutil.rmtree(folder / "IMAGE_KEPT_1_PER_SEC")
    (folder / "10_val_cre.txt").write_text("1001_DFA_ANG_XX.flv Anger\n")
    refused(client, cremad(), "dataset.root", db_url)


def test_a_folder_dataset_entry_linked_out_is_refused_by_its_name_inside(client: TestClient, outside: Path,
                                                                         data_root: Path, db_url: str) -> None:
    root = write_tiny_folder(data_root / "mine", text=False)
    for entry, target in (("train/cat/leak.txt", outside / "secret.txt"), ("train/evil", outside)):
        (root / entry).symlink_to(target)
        message = refused(client, folder_run("mine"), "dataset.root", db_url)
        assert f"mine/{entry} resolves to a place outside AMST_DATA_ROOT" in message
        assert str(outside) not in message and "secret.txt" not in message and "cremad" not in message
        (root / entry).unlink()


def test_a_text_model_is_checked_at_submission(client: TestClient, outside: Path, data_root: Path, db_url: str,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_tiny_folder(data_root / "mine")  # with .txt files: the run has text
    existing, missing = (refused(client, folder_run("mine", outside / name), "model.text_model", db_url)
                         for name in ("secret.txt", "nothing.txt"))
    assert existing.replace("secret.txt", "X") == missing.replace("nothing.txt", "X"), "no existence oracle"
    assert "outside AMST_DATA_ROOT" in refused(client, folder_run("mine", "/etc"), "model.text_model", db_url)
    message = refused(client, folder_run("mine", "roberta-base"), "model.text_model", db_url)
    assert "offline" in message and "save_pretrained" in message


# ---- bounded inputs ------------------------------------------------------------------------------------------------

@pytest.fixture
def strict(make_settings: Callable[..., ApiSettings], dispatcher: FakeDispatcher) -> Iterator[TestClient]:
    limits = Limits(tags=5, epochs=100, batch_size=256, num_workers=4, batch_input_mb=64, synthetic_mb=16,
                    body_bytes=8192, config_bytes=1600)
    app = create_app(make_settings(limits=limits))
    app.state.dispatcher = dispatcher
    with TestClient(app, headers={"Content-Type": "application/json"}) as c:
        yield c


@pytest.mark.parametrize(("fields", "field"), [
    ({"tags": [f"t{i}" for i in range(6)]}, "tags"),
    ({"epochs": 101}, "epochs"),
    ({"batch_size": 257}, "batch_size"),
    ({"num_workers": 5}, "num_workers"),
    ({"num_workers": 2**31 - 1}, "num_workers"),
    ({"dataset": {"name": "synthetic", "synthetic": {"samples": {"train": 9_000_000, "val": 10, "test": 10}}}},
     "dataset.synthetic"),
    ({"dataset": {"name": "synthetic", "synthetic": {"image_size": 512, "frames": 8}}, "batch_size": 64},
     "model"),
    ({"model": {"image_size": 100_000}}, "model.image_size"),
    ({"name": "x" * 201}, "name"),
    ({"tags": ["y" * 101]}, "tags.0"),
    ({"tags": ["line\nbreak"]}, "tags.0"),
])
def test_limits_are_enforced_at_submission(strict: TestClient, db_url: str, fields: dict, field: str) -> None:
    refused(strict, config(**fields), field, db_url)


def test_limits_pass_what_fits(strict: TestClient) -> None:
    body = config(tags=[f"t{i}" for i in range(5)], epochs=100, batch_size=256, num_workers=4)
    assert strict.post("/runs", json=body).status_code == 201


def test_every_count_beyond_a_limit_is_named_with_this_servers_limit_in_the_first_answer(strict: TestClient) -> None:
    """A batch size of 1e12 was answered with RunConfig's 32-bit bound ("<= 2147483647"), and a request with
    another mistake learned this server's limit only on its next submission."""
    r = strict.post("/runs", json=config(batch_size=10**12, epochs=0, max_restarts=10**6, num_workers=5))
    assert r.status_code == 422, r.text
    details = {d["field"]: d["message"] for d in r.json()["error"]["details"]}
    assert details["batch_size"] == "at most 256 samples on this server (AMST_MAX_BATCH_SIZE); got 1000000000000"
    assert details["max_restarts"] == "at most 20 restarts on this server (AMST_MAX_RESTARTS); got 1000000"
    assert details["num_workers"] == "at most 4 processes on this server (AMST_MAX_NUM_WORKERS); got 5"
    assert "greater than or equal to 1" in details["epochs"]  # the other mistake, in the same answer
    assert "2147483647" not in r.text
    r = strict.post("/runs", content=b'{"method": "naive", "dataset": {"name": "synthetic"}, "batch_size": 1e12}')
    assert r.json()["error"]["message"].startswith("batch_size: at most 256 samples on this server"), r.text


def test_body_and_config_size(strict: TestClient, db_url: str) -> None:
    before = counts(db_url)
    big = b'{"method": "naive", "dataset": {"name": "synthetic"}, "name": "' + b"x" * 20_000 + b'"}'
    r = strict.post("/runs", content=big)
    assert r.status_code == 413 and r.json()["error"]["field"] == "body", r.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"method": "naive", "dataset": {"name": "synthetic"}, "name": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    r = strict.post("/runs", content=chunks())
    assert r.status_code == 413, r.text
    # Under the body limit (about 700 bytes), but over 1,600 bytes as stored with every default filled in.
    body = config(tags=[f"{i:03d}" + "z" * 96 for i in range(5)], name="n" * 200)
    r = strict.post("/runs", json=body)
    assert r.status_code == 422 and "AMST_MAX_CONFIG_BYTES" in r.json()["error"]["message"], r.text
    assert counts(db_url) == before


# ---- cross-site requests ---------------------------------------------------------------------------------------


def test_a_cross_site_form_cannot_submit_cancel_or_retry(app, db_url: str) -> None:
    """No token configured: a `text/plain` or form POST (what a page on another site can send without a
    preflight) is refused, and so is any request whose Origin is not the dashboard's."""
    plain = TestClient(app)  # no default Content-Type
    before = counts(db_url)
    body = '{"method": "naive", "dataset": {"name": "synthetic"}, "device": "cpu"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": content_type} if content_type else {}
        r = plain.post("/runs", content=body, headers=headers)
        assert r.status_code == 415 and r.json()["error"]["field"] == "Content-Type", r.text
    evil = {"Content-Type": "application/json", "Origin": "https://evil.example"}
    r = plain.post("/runs", content=body, headers=evil)
    assert r.status_code == 403 and r.json()["error"]["field"] == "Origin"
    assert counts(db_url) == before

    run = plain.post("/runs", content=body, headers={"Content-Type": "application/json",
                                                     "Origin": "http://127.0.0.1:8501"})  # the dashboard's own
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    for path in (f"/runs/{run_id}/cancel", f"/runs/{run_id}/retry"):
        assert plain.post(path).status_code == 415
        assert plain.post(path, headers={"Content-Type": "text/plain"}).status_code == 415
        assert plain.post(path, headers=evil).status_code == 403
    assert plain.delete(f"/runs/{run_id}", headers={"Origin": "https://evil.example"}).status_code == 403
    assert plain.get(f"/runs/{run_id}").json()["status"] == "queued", "nothing changed"
    assert plain.post(f"/runs/{run_id}/cancel", headers={"Content-Type": "application/json"}).status_code == 200
