"""Each dashboard page in Streamlit's AppTest, against a real API process with seeded runs."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.kit.seeded import APP, EVIL_NAME

PAGES = ["views/runs.py", "views/new_run.py", "views/run.py", "views/compare.py", "views/workers.py"]


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def charts(at) -> list:
    return at.get("plotly_chart")


def no_traceback(at) -> None:
    assert not at.exception, texts(at.exception)


def test_runs_page_lists_and_filters_runs(app, seeded_api) -> None:
    at = app.run()
    no_traceback(at)
    table = at.dataframe[0].value
    assert set(table["name"]) == {"base-s0", "full-s0", "alt-live", "joint-fail", "waiting", "mla-s0", EVIL_NAME,
                                  "first-epoch"}
    live = table.set_index("name").loc["alt-live"]
    assert live["status"] == "● running" and live["progress"] == pytest.approx(0.4) and live["epochs done"] == "12/30"
    assert "live: checked every" in texts(at.caption)  # a run is active: the table watches for changes
    # The first epoch is not a blank: the table says where inside it the run is.
    assert table.set_index("name").loc["first-epoch"]["now"] == "epoch 1: train 120/400 · 213/s"
    status = next(m for m in at.multiselect if m.label == "Status")
    at = status.set_value(["failed"]).run()
    assert list(at.dataframe[0].value["name"]) == ["joint-fail"]
    assert at.query_params["status"] in ("failed", ["failed"])  # the filter is in the URL
    at = next(m for m in at.multiselect if m.label == "Status").set_value([]).run()
    assert "status" not in at.query_params
    at = next(t for t in at.text_input if t.label == "Tags (all of)").set_value("amst").run()
    assert set(at.dataframe[0].value["name"]) == {"full-s0", "alt-live"}


def test_runs_page_filters_come_from_the_url(app, seeded_api) -> None:
    """A shared link reproduces the view: its filters are the page's first state."""
    app.switch_page("views/runs.py")
    app.query_params.update({"status": "failed,succeeded", "method": "amst_joint,naive"})
    at = app.run()
    no_traceback(at)
    assert next(m for m in at.multiselect if m.label == "Status").value == ["failed", "succeeded"]
    assert set(at.dataframe[0].value["name"]) == {"joint-fail", "base-s0", EVIL_NAME}


def test_runs_page_search_and_hyperparameter_columns(app, seeded_api) -> None:
    at = app.run()
    at = next(t for t in at.text_input if t.label == "Search").set_value("seed>=2 method=amst_full").run()
    no_traceback(at)
    assert list(at.dataframe[0].value["name"]) == ["first-epoch"]
    assert at.query_params["q"] in ("seed>=2 method=amst_full", ["seed>=2 method=amst_full"])
    at = next(t for t in at.text_input if t.label == "Search").set_value("best_val_acc>high").run()
    assert "best_val_acc" in texts(at.error)  # the API's message about the term, not a traceback
    at = next(t for t in at.text_input if t.label == "Search").set_value("").run()
    columns = next(m for m in at.multiselect if m.label == "Hyperparameter columns")
    assert "epochs" in columns.options and "seed" not in columns.options  # keys that differ among the runs
    at = columns.set_value(["epochs", "method"]).run()
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["first-epoch"]["epochs"] == "5" and table.loc["first-epoch"]["method"] == "amst_full"


def run_page(app, run_id: str):
    """The Run page of one run, with no traceback."""
    app.run()
    app.switch_page("views/run.py")
    app.query_params["run"] = run_id
    at = app.run()
    no_traceback(at)
    return at


def test_run_page_shows_live_curves_balance_and_skip_strip(app, seeded_api) -> None:
    at = run_page(app, seeded_api.runs["live"].id)
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"Epoch", "Best val acc (fused)", "Test acc at best (fused)"}  # three, not six
    assert metrics["Epoch"] == "12/30"
    facts = texts(at.caption)
    assert "attempt 1" in facts and "ETA —" not in facts  # running, with a median epoch time
    assert len(charts(at)) == 4  # a figure per split (acc and loss); the balance with the skip strip under it
    assert "Lagging modality: **visual**" in texts(at.markdown)
    labels = {b.label for b in at.button}
    assert {"Cancel", "Re-run with same config", "Edit a copy"} <= labels and "Retry" not in labels
    assert {d.label for d in at.get("download_button")} >= {"Config (YAML)", "Best checkpoint", "All points (CSV)"}


def test_run_page_cancel_and_retry_go_through_the_api(app, seeded_api) -> None:
    run_id = seeded_api.runs["failed"].id
    app.run()
    app.switch_page("views/run.py")
    app.query_params["run"] = run_id
    at = app.run()
    assert "seeded failure" in texts(at.error)
    next(b for b in at.button if b.label == "Retry").click().run()
    no_traceback(at)
    assert httpx.get(f"{seeded_api.url}/runs/{run_id}").json()["status"] == "queued"
    next(b for b in at.button if b.label == "Cancel").click().run()
    next(b for b in at.button if b.label == "Yes, cancel the run").click().run()  # Cancel asks first
    assert httpx.get(f"{seeded_api.url}/runs/{run_id}").json()["status"] == "cancelled"


def test_new_run_form_shows_the_api_error_next_to_the_field_then_submits(app, seeded_api) -> None:
    app.run()
    at = app.switch_page("views/new_run.py").run()
    no_traceback(at)
    assert at.selectbox[0].value == "amst_full" and at.selectbox[1].value == "avdigits"
    assert [n.label for n in at.number_input][:2] == ["audio", "visual"]  # a skip factor per modality
    next(t for t in at.text_input if t.label == "Device").set_value("tpu")
    next(t for t in at.text_input if t.label == "Name").set_value("from-the-form")
    next(n for n in at.number_input if n.label == "Epochs").set_value(2)
    at.get("form_submit_button")[0].click().run()
    errors = texts(at.error)
    assert "device" in errors and "tpu" in errors, errors
    assert "`device`" not in errors  # shown under the Device field itself, so the message needs no field name
    device = next(t for t in at.text_input if t.label == "Device")
    device.set_value("cpu")
    next(s for s in at.selectbox if s.label == "Precision").set_value("bf16")
    next(c for c in at.checkbox if "automatically" in c.label).check()
    at.get("form_submit_button")[0].click().run()
    no_traceback(at)
    runs = httpx.get(f"{seeded_api.url}/runs", params={"method": "amst_full"}).json()["items"]
    submitted = next(r for r in runs if r["name"] == "from-the-form")
    config = httpx.get(f"{seeded_api.url}/runs/{submitted['id']}").json()["config"]
    assert config["epochs"] == 2 and config["skip"]["audio"] == 3 and config["model"]["image_size"] == 28
    assert config["precision"] == "bf16" and config["compile"] is False and config["num_workers"] == "auto"
    assert config["skip"]["auto"] == {"warmup": 3, "every": 3, "max_factor": 8}
    assert "Submitted run" in texts(at.success)  # the form moved on to the new run's page


def test_new_run_form_follows_the_datasets_modalities_and_says_why_one_is_not_ready(app, seeded_api) -> None:
    app.run()
    at = app.switch_page("views/new_run.py").run()
    assert not any(t.label == "Text model" for t in at.text_input)  # avdigits has no text
    at.selectbox[1].set_value("urfunny").run()
    no_traceback(at)
    assert [n.label for n in at.number_input][:3] == ["audio", "text", "visual"]
    assert next(t for t in at.text_input if t.label == "Text model").value == "roberta-base"
    warning = texts(at.warning)
    assert "urfunny" in warning and "does not exist" in warning and "amst preprocess urfunny RAW_DIR" in warning
    assert "None" not in warning
    at.selectbox[1].set_value("folder").run()
    assert "no folder under AMST_DATA_ROOT" in texts(at.warning)


def test_edit_a_copy_prefills_the_form(app, seeded_api) -> None:
    at = run_page(app, seeded_api.runs["full"].id)
    next(b for b in at.button if b.label == "Edit a copy").click().run()
    no_traceback(at)
    assert "Re-running with the config of **full\\-s0**" in texts(at.info)
    assert at.selectbox[0].value == "amst_full" and at.selectbox[1].value == "synthetic"
    assert next(n for n in at.number_input if n.label == "Epochs").value == 30
    at.switch_page("views/new_run.py")  # AppTest stays on the page it was given; the browser follows the switch
    next(b for b in at.button if b.label == "Start from the dataset's recipe instead").click().run()
    assert not at.info and at.selectbox[1].value == "avdigits"  # the form as it first comes, with its suggestion
    assert next(n for n in at.number_input if n.label == "Epochs").value == 20


def test_compare_page_overlays_pairs_and_tabulates(app, seeded_api) -> None:
    runs = seeded_api.runs
    app.run()
    app.switch_page("views/compare.py")
    app.query_params["runs"] = f"{runs['full'].id},{runs['live'].id}"
    at = app.run()
    no_traceback(at)
    assert len(charts(at)) == 1  # the overlay with AMST minus baseline under it, one figure
    assert "vs base\\-s0" in texts(at.caption)  # both AMST runs paired with the naive run of seed 0
    table = at.dataframe[0].value
    assert list(table.columns) == ["run", "epochs", "audio final", "audio best", "visual final", "visual best",
                                   "fused final", "fused best"]  # runs x modalities
    assert len(table) == 2 and list(table["epochs"]) == [30, 12]
    assert "different lengths" in texts(at.warning) and "alt-live 12/30" in texts(at.warning).replace("\\", "")
    baseline = next(s for s in at.selectbox if s.label == "Baseline")
    at = baseline.set_value("mla").run()
    no_traceback(at)
    assert "vs mla\\-s0" in texts(at.caption) and at.query_params["baseline"] in ("mla", ["mla"]), "any baseline"
    group = next(m for m in at.multiselect if m.label == "Group by (config keys)")
    assert "method" in group.options and "seed" not in group.options
    at = group.set_value(["method"]).run()
    no_traceback(at)
    assert "One line per group of runs sharing method" in texts(at.caption)
    assert at.query_params["group"] in ("method", ["method"])


def test_run_page_shows_a_methods_other_selections(app, seeded_api) -> None:
    at = run_page(app, seeded_api.runs["mla"].id)
    assert "Selected like the fused prediction" in texts(at.subheader)
    rows = at.dataframe[0].value
    assert list(rows["prediction"]) == ["a30_v70", "entropy"] and list(rows["best epoch"]) == [22, 26]  # from 1


def test_first_epoch_says_where_it_is_instead_of_empty_axes(app, seeded_api) -> None:
    at = run_page(app, seeded_api.runs["first"].id)
    assert not charts(at)  # no empty axes
    info = texts(at.info)
    assert "Waiting for the first epoch" in info
    assert "Epoch 1/5: train batch 120/400 · 213 samples/s · this pass ends in ~" in info, info
    queued = run_page(app, seeded_api.runs["queued"].id)  # a status with no epoch under way (GET /vocabulary)
    assert "**Waiting for the first epoch**: the run is queued." in texts(queued.info)


def test_run_page_chart_options_come_from_and_go_to_the_url(app, seeded_api) -> None:
    app.switch_page("views/run.py")
    app.query_params.update({"run": seeded_api.runs["full"].id, "splits": "val", "metrics": "acc",
                             "smoothing": "0.5", "components": "fused", "log": "1"})
    at = app.run()
    no_traceback(at)
    assert next(m for m in at.multiselect if m.label == "Splits").value == ["val"]
    assert next(s for s in at.slider if s.label == "Smoothing").value == 0.5
    assert next(t for t in at.toggle if t.label == "Log scale (loss)").value is True
    at = next(r for r in at.radio if r.label == "x-axis").set_value("wall").run()
    assert at.query_params["x"] in ("wall", ["wall"])
    at = next(s for s in at.slider if s.label == "Smoothing").set_value(0.0).run()
    assert "smoothing" not in at.query_params  # defaults stay out of the link


def test_compare_options_come_from_the_url(app, seeded_api) -> None:
    runs = seeded_api.runs
    app.switch_page("views/compare.py")
    app.query_params.update({"runs": f"{runs['full'].id},{runs['base'].id}", "split": "test", "metric": "loss",
                             "x": "wall", "log": "1", "component": "helper"})
    at = app.run()
    no_traceback(at)
    assert next(r for r in at.radio if r.label == "Split").value == "test"
    assert next(r for r in at.radio if r.label == "Metric").value == "loss"
    assert next(r for r in at.radio if r.label == "x-axis").value == "wall"
    assert next(s for s in at.selectbox if s.label == "Per-modality component").value == "helper"
    assert "Final and best test loss per modality" in texts(at.subheader)


def test_compare_offers_the_combinations_the_runs_logged(app, seeded_api) -> None:
    """Components come from the runs (GET /vocabulary's families, then what they logged): MLA's combination takes
    the whole model's panel."""
    runs = seeded_api.runs
    app.switch_page("views/compare.py")
    app.query_params.update({"runs": f"{runs['mla'].id},{runs['base'].id}"})
    at = app.run()
    no_traceback(at)
    component = next(s for s in at.selectbox if s.label == "Per-modality component")
    assert component.options == ["branch", "helper", "combo:entropy"]
    at = component.set_value("combo:entropy").run()
    no_traceback(at)
    assert list(at.dataframe[0].value.columns)[-2:] == ["combo:entropy final", "combo:entropy best"]


def test_run_page_draws_the_series_a_method_declares(app, seeded_api) -> None:
    """OGM-GE declares ogm_coeff and ogm_ratio (GET /methods): the Run page draws them, with no name of its own."""
    from amst_core.store.models import RunStatus
    from tests.kit.seeded import seed_run

    ogm = seed_run(seeded_api.db, "ogm_ge", 3, 3, RunStatus.cancelled, name="ogm-s5", seed=5)
    # Archived: the Runs page's tests list the seeded runs by name, whatever ran before them.
    assert httpx.patch(f"{seeded_api.url}/runs/{ogm.id}", json={"archived": True}).status_code == 200
    at = run_page(app, ogm.id)
    assert "ogm_ge series" in texts(at.subheader) and "ogm_coeff" in texts(at.caption)
    assert len(charts(at)) == 5  # curves (a figure per split), balance, the method's series
    at = next(t for t in at.toggle if t.label == "All run-level series").set_value(True).run()
    no_traceback(at)
    assert len(charts(at)) == 6 and at.query_params["run_series"] in ("1", ["1"])


def test_names_cannot_inject_markdown(app, seeded_api) -> None:
    """A run named with a markdown image, link, colour directive and LaTeX shows those characters, inert."""
    at = run_page(app, seeded_api.runs["evil"].id)
    caption = texts(at.caption)
    assert "](http" not in caption and ":red[" not in caption and " $x$" not in caption
    assert "\\!\\[pixel\\]\\(http\\://evil\\.example/p\\.png\\)" in caption


def test_new_run_form_puts_each_error_under_its_field_and_accepts_zero(app, seeded_api) -> None:
    app.run()
    at = app.switch_page("views/new_run.py").run()
    next(t for t in at.text_input if t.label == "Device").set_value("tpu")
    next(n for n in at.number_input if n.label == "Learning rate").set_value(-1.0)
    next(n for n in at.number_input if n.label == "audio").set_value(0)  # a skip factor of 0
    next(n for n in at.number_input if n.label == "Epochs").set_value(0)
    at.get("form_submit_button")[0].click().run()
    no_traceback(at)
    errors = [str(e.value) for e in at.error]
    assert len(errors) >= 3, errors  # not one message under one field
    assert any("tpu" in e for e in errors) and any("lr" in e or "greater" in e for e in errors)
    assert any("epochs" in e.lower() or "greater" in e for e in errors)


def test_unprepared_dataset_disables_submit(app, seeded_api) -> None:
    app.run()
    at = app.switch_page("views/new_run.py").run()
    at = at.selectbox[1].set_value("urfunny").run()
    assert at.get("form_submit_button")[0].disabled
    assert "Submit is disabled" in texts(at.warning) and "None" not in texts(at.warning)
    at = at.selectbox[1].set_value("avdigits").run()
    assert not at.get("form_submit_button")[0].disabled


def test_rename_tag_note_archive_and_delete_through_the_api(app, seeded_api) -> None:
    from amst_core.store.models import RunStatus
    from tests.kit.seeded import seed_run

    run = seed_run(seeded_api.db, "naive", 2, 2, RunStatus.succeeded, name="to-manage", seed=7)
    at = run_page(app, run.id)
    next(t for t in at.text_input if t.label == "Name").set_value("renamed")
    next(t for t in at.text_input if t.label == "Tags").set_value("keep, paper")
    next(t for t in at.text_area if t.label == "Notes").set_value("lr too high")
    at = next(b for b in at.get("form_submit_button") if b.label == "Save").click().run()
    no_traceback(at)
    detail = httpx.get(f"{seeded_api.url}/runs/{run.id}").json()
    assert (detail["name"], detail["tags"], detail["notes"]) == ("renamed", ["keep", "paper"], "lr too high")
    assert "Notes: lr too high" in texts(at.caption)
    at = next(b for b in at.button if b.label == "Archive").click().run()
    assert httpx.get(f"{seeded_api.url}/runs/{run.id}").json()["archived"] is True
    listed = [r["id"] for r in httpx.get(f"{seeded_api.url}/runs", params={"limit": 200}).json()["items"]]
    assert run.id not in listed
    assert next(b for b in at.button if b.label == "Delete").disabled  # not before saying so
    at = next(c for c in at.checkbox if c.label == "Delete for good").check().run()
    at = next(b for b in at.button if b.label == "Delete").click().run()
    no_traceback(at)
    assert httpx.get(f"{seeded_api.url}/runs/{run.id}").status_code == 404


def test_worker_output_tails_the_runs_log(app, seeded_api) -> None:
    run_id = seeded_api.runs["failed"].id
    log = seeded_api.artifacts / "runs" / run_id / "logs" / "output.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("--- attempt 1 on worker w1 ---\n2026-12-02 15:04:05 INFO amst.engine: epoch 1/30 done\n")
    at = run_page(app, run_id)
    assert not at.code  # fetched only when asked for
    at = next(t for t in at.toggle if t.label == "Worker output").set_value(True).run()
    no_traceback(at)
    assert "epoch 1/30 done" in at.code[0].value
    assert at.code[0].proto.wrap_lines  # a long epoch line wraps instead of running off the panel
    assert at.query_params["logs"] in ("1", ["1"])


@pytest.mark.parametrize("page", PAGES)
def test_api_down_is_a_message_not_a_traceback(page: str, ui_env) -> None:
    from streamlit.testing.v1 import AppTest

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    ui_env(f"http://127.0.0.1:{port}")
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page(page).run()
    no_traceback(at)
    assert "Cannot reach the AMST API" in texts(at.error)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a hung API."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for c in held:
        c.close()
    server.close()


def test_slow_api_is_a_message_not_a_traceback(silent_server: str, ui_env) -> None:
    from streamlit.testing.v1 import AppTest

    ui_env(silent_server, AMST_API_TIMEOUT_S="0.5")
    at = AppTest.from_file(APP, default_timeout=30).run()
    no_traceback(at)
    assert "did not answer within 0.5 s" in texts(at.error)
