"""The Run page: its pure facts (ui.runinfo, the balance's chance level) and, in AppTest against a real API
process with seeded runs, what the page shows and does (heading, tags, notes, re-run, cancel, downloads, worker
output, where config values came from)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from amst_core.vocab import vocabulary
from tests.kit.series import make
from ui import runinfo
from ui.common import plain
from ui.series import balance
from ui.words import Words

WORDS = Words.of(vocabulary())


# ---- the first epoch: one live source, an ETA from the rate ----------------------------------------------------

def first_epoch(split: str = "train", batch: int = 100, **extra) -> dict:
    """A run summary inside its first epoch of 5, batches of 32 at 320 samples/s (0.1 s a batch)."""
    return {"status": "running", "epochs_total": 5, "eta_s": None, "started_at": "2026-01-01T00:00:00",
            "live": {"epoch": 0, "split": split, "batch": batch, "batches": 400, "samples_per_s": 320.0},
            "config": {"batch_size": 32}, **extra}


def test_inside_the_first_epoch_the_eta_comes_from_the_rate() -> None:
    # 300 batches left of the training pass (30 s), then 4 more epochs of 400 batches (40 s each).
    assert runinfo.eta_seconds(first_epoch()) == pytest.approx(30 + 4 * 40)
    # Evaluating: the epoch so far (since the run started) plus what is left of this pass, for each epoch after.
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=50)
    assert runinfo.eta_seconds(first_epoch("val"), now) == pytest.approx(30 + 4 * (50 + 30))
    assert runinfo.eta_seconds(first_epoch(eta_s=12.0)) == 12.0  # the API's own, once an epoch has ended
    assert runinfo.eta_seconds(first_epoch(live=None)) is None


def test_the_first_epochs_bar_and_line_read_the_same_answer() -> None:
    run = first_epoch(batch=300)
    assert runinfo.pass_fraction(run) == 0.75
    assert runinfo.live_line(run, "10 s") == ("Epoch 1/5: train batch 300/400 · 320 samples/s · this pass ends in "
                                              "~10 s (then validation and test)")


# ---- the balance: a modality at chance has not plateaued ---------------------------------------------------------

def at_chance_run():
    """Audio learns and levels off; visual's probe stays at 10-class chance (its plateau reads 1: flat)."""
    return make(series=[
        ("val", "branch", "audio", "acc", [0, 1, 2, 3], [0.5, 0.7, 0.8, 0.8]),
        ("val", "branch", "visual", "acc", [0, 1, 2, 3], [0.1, 0.11, 0.1, 0.12]),
        ("val", "helper", "audio", "acc", [0, 1, 2, 3], [0.45, 0.6, 0.75, 0.75]),
        ("val", "helper", "visual", "acc", [0, 1, 2, 3], [0.1, 0.12, 0.11, 0.1]),
        ("val", "run", "audio", "epochs_to_plateau", [0, 1, 2, 3], [1, 2, 3, 3]),
        ("val", "run", "visual", "epochs_to_plateau", [0, 1, 2, 3], [1, 1, 1, 1]),
    ])


def test_a_modality_whose_probe_never_left_chance_has_no_plateau() -> None:
    b = balance(at_chance_run(), WORDS, "val", chance=0.1)
    assert b.at_chance == ["visual"]
    assert [(r["modality"], r["plateau"]) for r in b.rows] == [("audio", 3), ("visual", None)]
    line = runinfo.plateau_line(b, 0.1)
    assert line is not None and line.endswith(": audio 3 · visual: still at chance"), line
    assert "never above 0.15, chance being 0.10" in line
    unknown = balance(at_chance_run(), WORDS, "val")  # no chance level known (a folder dataset): as reported
    assert unknown.at_chance == [] and [r["plateau"] for r in unknown.rows] == [3, 1]


def test_the_chance_level_is_one_over_the_classes() -> None:
    datasets = [{"name": "avdigits", "classes": [str(d) for d in range(10)]}, {"name": "synthetic", "classes": []},
                {"name": "folder", "classes": []}]
    assert runinfo.chance_level({"dataset": {"name": "avdigits"}}, datasets) == pytest.approx(0.1)
    assert runinfo.chance_level({"dataset": {"name": "synthetic", "synthetic": {"num_classes": 4}}},
                                datasets) == 0.25
    assert runinfo.chance_level({"dataset": {"name": "folder"}}, datasets) is None


# ---- what a re-run and the config download carry -----------------------------------------------------------------

def test_the_reproducible_config_has_no_name_and_no_tags() -> None:
    config = {"name": "full-s0", "tags": ["amst", "paper"], "method": "amst_full", "optim": {"lr": 0.01},
              "data_fingerprint": "0840849064a50c5e"}  # a re-run's: a copy is checked only when re-run exactly
    assert runinfo.reproducible(config) == {"method": "amst_full", "optim": {"lr": 0.01}}
    assert config["name"] == "full-s0"  # the run's own config is left as it is
    assert yaml.safe_load(runinfo.reproducible_yaml(config)) == {"method": "amst_full", "optim": {"lr": 0.01}}


# ---- where config values came from --------------------------------------------------------------------------------

CONFIG = {"name": "r", "tags": ["t"], "method": "amst_full", "recipe": "dataset", "epochs": 8, "seed": 0,
          "dataset": {"name": "avdigits", "preset": None}, "optim": {"lr": 0.01, "lr_step": 15, "momentum": 0.9},
          "model": {"audio_shape": [13, 48]}}
ORIGIN = {"epochs": "request", "seed": "reference", "dataset.preset": "reference", "optim.lr": "recipe",
          "optim.lr_step": "recipe", "optim.momentum": "reference", "model.audio_shape": "data"}


def test_the_config_says_which_values_are_defaults_and_whose() -> None:
    caption = runinfo.origin_caption(CONFIG, ORIGIN)
    assert caption == ("Defaults — from the avdigits recipe: optim.lr 0.01, optim.lr_step 15; from the dataset's "
                       "files: model.audio_shape [13, 48]; 3 more from the reference defaults (the paper's "
                       "settings)."), caption
    reference = runinfo.origin_caption({**CONFIG, "recipe": "reference"}, ORIGIN)
    assert reference is not None and "asked for the reference's settings" in reference
    rows = {r["key"]: r for r in runinfo.origin_rows(CONFIG, ORIGIN)}
    assert rows["optim.lr"] == {"key": "optim.lr", "value": "0.01", "from": "recipe"}
    assert rows["epochs"]["from"] == "request" and "name" not in rows and "tags" not in rows


def test_an_api_that_does_not_say_where_values_came_from_shows_the_config_alone() -> None:
    assert runinfo.origin_caption(CONFIG, None) is None and runinfo.origin_caption(CONFIG, {}) is None
    assert all(set(r) == {"key", "value"} for r in runinfo.origin_rows(CONFIG, None))


# ---- the page, in AppTest -----------------------------------------------------------------------------------------

def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def run_page(app, run_id: str):
    app.run()
    app.switch_page("views/run.py")
    app.query_params["run"] = run_id
    at = app.run()
    assert not at.exception, texts(at.exception)
    return at


def test_the_heading_is_the_runs_name_and_its_tags_and_notes_show(app, seeded_api) -> None:
    run_id = seeded_api.runs["full"].id
    httpx.patch(f"{seeded_api.url}/runs/{run_id}", json={"notes": "first line\nsecond line"}).raise_for_status()
    at = run_page(app, run_id)
    assert at.title[0].value == "full\\-s0"
    captions = texts(at.caption)
    assert "Tags: **amst**" in captions
    assert "Notes: first line  \nsecond line" in captions  # a line break in Markdown, not a space


def test_edit_a_copy_hands_the_form_a_config_without_the_old_name_and_tags(app, seeded_api) -> None:
    at = run_page(app, seeded_api.runs["full"].id)
    next(b for b in at.button if b.label == "Edit a copy").click().run()
    assert not at.exception, texts(at.exception)
    prefill = at.session_state["prefill"]
    assert "name" not in prefill and "tags" not in prefill and prefill["method"] == "amst_full"
    assert "Re-running with the config of **full\\-s0**" in texts(at.info)  # the notice still names the source
    assert next(t for t in at.text_input if t.label == "Name").value == ""
    assert next(t for t in at.text_input if t.label == "Tags").value == ""


def test_cancel_asks_before_it_cancels(app, seeded_api) -> None:
    from amst_core.store.models import RunStatus
    from tests.kit.seeded import seed_run

    run = seed_run(seeded_api.db, "naive", 0, 3, RunStatus.queued, name="to-cancel", seed=11)
    at = run_page(app, run.id)
    at = next(b for b in at.button if b.label == "Cancel").click().run()
    assert httpx.get(f"{seeded_api.url}/runs/{run.id}").json()["status"] == "queued"  # asked, not done
    assert "Cancel to\\-cancel?" in texts(at.warning)
    at = next(b for b in at.button if b.label == "Keep it running").click().run()
    assert "Cancel to\\-cancel?" not in texts(at.warning)
    assert httpx.get(f"{seeded_api.url}/runs/{run.id}").json()["status"] == "queued"
    at = next(b for b in at.button if b.label == "Cancel").click().run()
    at = next(b for b in at.button if b.label == "Yes, cancel the run").click().run()
    assert not at.exception, texts(at.exception)
    assert httpx.get(f"{seeded_api.url}/runs/{run.id}").json()["status"] == "cancelled"


def test_a_queued_run_no_worker_can_take_says_why(app, seeded_api) -> None:
    from amst_core.store.models import RunStatus
    from tests.kit.seeded import seed_run

    run = seed_run(seeded_api.db, "naive", 0, 3, RunStatus.queued, name="waits", seed=12)
    warnings = texts(run_page(app, run.id).warning)
    assert "No worker can take this run now" in warnings and "no live worker serves queue" in warnings


def test_the_first_epoch_has_an_eta_from_its_rate(app, seeded_api) -> None:
    at = run_page(app, seeded_api.runs["first"].id)
    captions = texts(at.caption)
    assert "ETA ~" in captions and "from the first epoch's rate" in captions and "ETA —" not in captions, captions
    # The progress inside the epoch is said once, in the box, not again in the header.
    assert "train batch 120/400" in texts(at.info) and "train batch 120/400" not in captions


def test_the_config_panel_says_where_values_came_from(app, seeded_api) -> None:
    run_id = seeded_api.runs["base"].id
    origin = httpx.get(f"{seeded_api.url}/runs/{run_id}").json().get("config_origin")
    at = run_page(app, run_id)
    table = next(d.value for d in at.dataframe if "key" in d.value.columns)
    shown = dict(zip(table["key"], table["from"], strict=True))
    assert shown["epochs"] == origin["epochs"] == "request"  # the seeded run set its epochs
    assert shown["optim.lr"] == origin["optim.lr"] != "request"
    assert "Defaults" in texts(at.caption)
    assert "name" not in set(table["key"]) and "tags" not in set(table["key"])


def test_a_run_picked_on_the_bare_page_gets_its_own_heading(app, seeded_api) -> None:
    app.run()
    app.switch_page("views/run.py")
    at = app.run()
    assert at.title[0].value == "Run"
    picker = next(s for s in at.selectbox if s.label == "Run")
    at = picker.select_index(0).run()
    assert not at.exception, texts(at.exception)
    run_id = at.query_params["run"]
    run_id = run_id[0] if isinstance(run_id, list) else run_id
    assert at.title[0].value == plain(httpx.get(f"{seeded_api.url}/runs/{run_id}").json()["name"])


# ---- provenance and the exact re-run ------------------------------------------------------------------------------

PROVENANCE = {
    "code": {"version": "0.4.0", "commit": "3f2a1c0d9e81b44a" + "0" * 24, "dirty": True},
    "environment": {"python": "3.11.9", "torch": "2.9.0", "cuda": None, "cudnn": None, "platform": "Linux-6.1",
                    "host": "node07", "device": "cpu", "device_name": "AMD EPYC 9654"},
    "data": {"dataset": "avdigits", "root": "avdigits", "files": {"count": 3, "bytes": 48_000, "digest": "ab",
                                                                   "sizes_digest": "cd"},
             "split_files": {}, "preprocessing": {"dataset": {"name": "avdigits"}, "model": {"mel_bins": 13}},
             "digest": "feedfacefeedface"},
    "config": {}, "digests": {"code": "c0de", "environment": "e0e0", "data": "feedfacefeedface"}, "attempt": 2}


def test_the_provenance_rows_say_what_the_run_ran_and_what_its_data_digest_covers() -> None:
    rows = {r["what"]: r["value"] for r in runinfo.provenance_rows(PROVENANCE)}
    assert rows["code"] == "version 0.4.0 · commit 3f2a1c0d9e81 · modified tree"
    assert (rows["torch"], rows["CUDA"], rows["cuDNN"]) == ("2.9.0", "none (a CPU build)", "—")
    assert (rows["host"], rows["device"]) == ("node07", "cpu (AMD EPYC 9654)")
    assert rows["data"] == "avdigits · digest feedfacefeedface"
    assert rows["data covers"] == ("3 files (48,000 bytes) under avdigits/: path, size, modification time; "
                                   "2 preprocessing settings (dataset, model)")
    assert rows["recorded by"] == "attempt 2"
    assert runinfo.provenance_label(PROVENANCE) == "Provenance · 3f2a1c0-dirty · torch 2.9.0 · cpu · data feedface"
    clean = {**PROVENANCE, "code": {"version": "0.4.0", "commit": None, "dirty": None}}
    assert runinfo.code_label(clean["code"]) == "v0.4.0"
    assert {r["what"]: r["value"] for r in runinfo.provenance_rows(clean)}["code"] == \
        "version 0.4.0 · not run from a git checkout"


def record_provenance(seeded_api, run_id: str, **data: object) -> dict:
    """What a worker would have recorded for the run, on the API's data (`data` changes the recorded fingerprint:
    the data the run trained on were not those there now)."""
    from pathlib import Path

    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from amst_core import provenance
    from amst_core.config import RunConfig
    from amst_core.datafiles import DataRoots
    from amst_core.store.db import get_engine
    from amst_core.store.models import Run

    config = httpx.get(f"{seeded_api.url}/runs/{run_id}").json()["config"]
    found = provenance.data_fingerprint(RunConfig.model_validate(config),
                                        DataRoots(Path(seeded_api.artifacts).parent / "data"))
    found = {**found, **data}
    prov = {**PROVENANCE, "data": found, "config": config,
            "digests": {**PROVENANCE["digests"], "data": found["digest"]}}
    with Session(get_engine(seeded_api.db)) as s, s.begin():
        s.execute(update(Run).where(Run.id == run_id).values(provenance=prov))
    return prov


def test_the_run_page_shows_its_provenance(app, seeded_api) -> None:
    from amst_core.store.models import RunStatus
    from tests.kit.seeded import seed_run

    run = seed_run(seeded_api.db, "naive", 2, 2, RunStatus.succeeded, name="traced", seed=21, dataset="avdigits")
    at = run_page(app, run.id)
    assert "No provenance recorded yet" in texts(at.caption)
    prov = record_provenance(seeded_api, run.id)
    at = run_page(app, run.id)
    [panel] = [e for e in at.expander if e.label.startswith("Provenance")]
    assert panel.label == f"Provenance · 3f2a1c0\\-dirty · torch 2\\.9\\.0 · cpu · data {prov['digests']['data'][:8]}"
    table = next(d.value for d in at.dataframe if "what" in d.value.columns)
    shown = dict(zip(table["what"], table["value"], strict=True))
    assert shown["host"] == "node07" and shown["data"] == f"avdigits · digest {prov['data']['digest']}"
    assert "Provenance (JSON)" in {d.label for d in at.get("download_button")}


def test_re_run_queues_the_runs_record_and_opens_the_new_run(app, seeded_api) -> None:
    at = run_page(app, seeded_api.runs["base"].id)  # seeded without provenance: re-run, with a warning
    at = next(b for b in at.button if b.label == "Re-run with same config").click().run()
    assert not at.exception, texts(at.exception)
    assert at.title[0].value == "base\\-s0 \\(re\\-run\\)"
    assert "recorded no provenance" in texts(at.warning) and "Re-run of base\\-s0 queued" in texts(at.success)
    new_id = at.query_params["run"]
    new_id = new_id[0] if isinstance(new_id, list) else new_id
    again = httpx.get(f"{seeded_api.url}/runs/{new_id}").json()
    assert again["rerun_of"] == seeded_api.runs["base"].id and again["status"] == "queued"


def test_a_re_run_refused_for_changed_data_says_why_and_can_go_on(app, seeded_api) -> None:
    from amst_core.store.models import RunStatus
    from tests.kit.seeded import seed_run

    run = seed_run(seeded_api.db, "naive", 2, 2, RunStatus.succeeded, name="old-data", seed=22, dataset="avdigits")
    record_provenance(seeded_api, run.id, files={"count": 4, "bytes": 1, "digest": "0", "sizes_digest": "0"},
                      digest="0123456789abcdef")
    at = run_page(app, run.id)
    at = next(b for b in at.button if b.label == "Re-run with same config").click().run()
    assert not at.exception, texts(at.exception)
    warning = texts(at.warning)
    assert "**Not re-run:**" in warning and "the dataset folder held 4 files" in warning
    assert at.title[0].value == "old\\-data"  # still the run's own page
    at = next(b for b in at.button if b.label == "Re-run anyway").click().run()
    assert not at.exception, texts(at.exception)
    assert at.title[0].value == "old\\-data \\(re\\-run\\)"
    assert "the data changed since run" in texts(at.warning)
