"""New run: a form built from the method and dataset schemas of the API; the API validates it."""

from __future__ import annotations

from typing import Any

import streamlit as st

from amst_client import ApiError
from ui.common import PAGES, api, catalog, plain, shown_errors, words
from ui.form import (
    LR_FORMAT,
    REFERENCE_SPLIT,
    param_widgets,
    placed_errors,
    printable,
    recipe_note,
    recipe_of,
    restart_fields,
    run_body,
    speaker_leak,
    split_rows,
    starting_config,
)
from ui.series import flatten
from ui.settings import ui_settings

FUSIONS = ["concat", "lsum", "msum"]
PRESETS = ["", "hard"]
PRECISIONS = ["fp32", "bf16", "fp16"]


def pick(options: list[str], value: Any, fallback: int = 0) -> int:
    return options.index(value) if value in options else fallback


def method_params(method: dict[str, Any], current: dict[str, Any], slots: dict[str, Any],
                  modalities: list[str]) -> dict[str, Any]:
    values = {}
    defaults = {**method["params_defaults"], **current}
    for name, kind, spec in param_widgets(method["params_schema"], modalities, words().modalities):
        label, help_ = name.replace("_", " "), spec.get("description")
        if kind == "select":
            values[name] = st.selectbox(label, spec["enum"], index=pick(spec["enum"], defaults.get(name)), help=help_)
        elif kind == "bool":
            values[name] = st.checkbox(label, bool(defaults.get(name)), help=help_)
        elif kind == "int":
            values[name] = st.number_input(label, value=int(defaults.get(name) or 0), step=1, help=help_)
        elif kind == "float":  # %g: a learning rate of 0.001 is not shown as 0.00
            value = float(defaults.get(name) or 0.0)
            values[name] = st.number_input(label, value=value, step=max(value / 10, 1e-6), format="%g", help=help_)
        else:
            values[name] = st.text_input(label, str(defaults.get(name, "")), help=help_)
        slots[f"method_params.{name}"] = st.empty()
    return values


def unprepared_message(dataset: dict[str, Any]) -> str:
    found = f" ({dataset['problem']})" if dataset.get("problem") else ""
    how = f"run `{dataset['prepare_command']}` on the server first" if dataset.get("prepare_command") else \
        "put its files under the server's AMST_DATA_ROOT"
    return f"**{dataset['name']}** is not ready on the server{found}: {how}. Submit is disabled until it is."


def field_starts(start: dict[str, Any], modalities: list[str]) -> dict[str, Any]:
    """The start value of each field that follows the recipe (keyed `new_run:<slot>`). Where the start has no
    value the field shows the reference code's (RunConfig's), which the server would fill in as well."""
    return {"epochs": int(start.get("epochs", 100)), "batch_size": int(start.get("batch_size", 64)),
            "seed": int(start.get("seed", 0)), "device": str(start.get("device", "auto")),
            "optim.lr": float(start.get("optim", {}).get("lr", 1e-3)),
            "resources.gpus": int((start.get("resources") or {}).get("gpus", 1)),
            "dataset.preset": start["dataset"].get("preset") or "",
            **{f"skip.{m}": int(start.get("skip", {}).get(m, 1)) for m in modalities}}


def origin_help(slot: str, layer: dict[str, Any], whose: str) -> str:
    """A field's tooltip: the value its recipe (or the paper) gives it."""
    value = flatten(layer).get(slot)
    return f"{whose}: {printable(value)}" if value is not None else f"{whose}: not set (the reference code's)"


def show_splits(dataset: dict[str, Any]) -> None:
    """Samples, classes and speakers per split, and the speakers train and test share: of its reference split, or
    of a drawn one chosen here (GET /datasets/{name}/splits: the form's own choice is known only once submitted)."""
    if not split_rows(dataset):
        return
    with st.expander(f"Splits of {dataset['name']}: classes and speakers", expanded=False):
        shown = drawn_split(dataset) if len(dataset.get("split_schemes", [])) > 1 else dataset
        st.dataframe(split_rows(shown), hide_index=True)
        for split, counts in shown["split_counts"].items():
            if counts["speakers"]:
                st.caption(f"**{split}** speakers: {', '.join(counts['speakers'])}")
        leak = speaker_leak(shown)
        if leak:
            st.warning(leak, icon=":material/record_voice_over:")


def drawn_split(dataset: dict[str, Any]) -> dict[str, Any]:
    """The counts of the split scheme, seed and session picked above the table (the reference split's come with
    GET /datasets; a drawn split's are asked for)."""
    schemes = dataset["split_schemes"]
    a, b, c = st.columns(3)
    scheme = a.selectbox("Counts of the split", schemes, key=f"splits:{dataset['name']}:scheme")
    if scheme == REFERENCE_SPLIT:
        return dataset
    params = {"split_scheme": scheme, "split_seed": b.number_input(
        "Of split seed", min_value=0, value=0, step=1, key=f"splits:{dataset['name']}:seed")}
    if "test_session" in dataset.get("knobs", []):  # IEMOCAP's one drawn split: a session held out
        params["test_session"] = c.number_input("Of held-out session", min_value=1, max_value=5, value=5, step=1,
                                                key=f"splits:{dataset['name']}:session")
    drawn = api().json("GET", f"/datasets/{dataset['name']}/splits", params=params)
    return {**drawn, "split_schemes": schemes}


def split_fields(dataset: dict[str, Any], start: dict[str, Any], values: dict[str, Any], slots: dict[str, Any]
                 ) -> None:
    """How its samples are split: its split files, or a split drawn over them (Doc/datasets.md)."""
    schemes = dataset["split_schemes"]
    a, b, c = st.columns(3)
    values["split_scheme"] = a.selectbox(
        "Split", schemes, index=pick(schemes, start.get("split_scheme") or schemes[0]),
        help="reference: the dataset's split files; speaker_independent: every speaker in one split; "
             "leave_one_session_out: one session is the test split")
    slots["dataset.split_scheme"] = a.empty()
    values["split_seed"] = b.number_input("Split seed", value=int(start.get("split_seed") or 0), step=1,
                                          help="a drawn split's seed (the reference split draws nothing)")
    slots["dataset.split_seed"] = b.empty()
    if "test_session" in dataset.get("knobs", []):
        values["test_session"] = c.number_input("Held-out session", value=int(start.get("test_session") or 5),
                                                step=1, help="leave_one_session_out: the session held out as test")
        slots["dataset.test_session"] = c.empty()


def show_errors(err: ApiError, slots: dict[str, Any], general: Any) -> None:
    """Each problem the API names under its own field; what belongs to no field under the button."""
    for slot, messages in placed_errors(err, list(slots)).items():
        (slots[slot] if slot else general).error("  \n".join(messages), icon=":material/block:")


st.title("New run")
with shown_errors():
    methods, datasets = catalog(ui_settings().api_url)
    prefill: dict[str, Any] | None = st.session_state.get("prefill")
    if prefill:
        copied = st.session_state.get("prefill_from") or "a run"  # the run's name: not in the config it hands over
        st.info(f"Re-running with the config of **{plain(copied)}**; change what you like.",
                icon=":material/replay:")
        if st.button("Start from the dataset's recipe instead"):
            st.session_state.pop("prefill")
            st.rerun()
    method_names, dataset_names = [m["name"] for m in methods], [d["name"] for d in datasets]
    c1, c2 = st.columns(2)
    method_name = c1.selectbox("Method", method_names, index=pick(method_names, (prefill or {}).get("method"), 3),
                               format_func=lambda n: f"{n} — {next(m['summary'] for m in methods if m['name'] == n)}")
    dataset_name = c2.selectbox(
        "Dataset", dataset_names, index=pick(dataset_names, (prefill or {}).get("dataset", {}).get("name")),
        format_func=lambda n: n if next(d["prepared"] for d in datasets if d["name"] == n) else f"{n} (not prepared)")
    method = next(m for m in methods if m["name"] == method_name)
    dataset = next(d for d in datasets if d["name"] == dataset_name)
    if not dataset["prepared"]:
        st.warning(unprepared_message(dataset), icon=":material/inventory_2:")
    show_splits(dataset)
    reference = not prefill and st.toggle(
        "Start from the paper's reference settings", key="new_run:reference",
        help="the reference code's settings, the paper's, with only the input shapes this dataset's files "
             "dictate: for reproducing the paper (the run's config says recipe: reference). Off: the dataset's "
             "recipe, settings that train well on it")
    start = starting_config(prefill, dataset, method_name, reference)
    layer = recipe_of(dataset, method_name, reference)
    whose = "paper's reference" if reference else f"{dataset['name']} recipe"
    restart_fields(st.session_state, field_starts(start, dataset["modalities"]), prefix="new_run")
    slots: dict[str, Any] = {}

    with st.form("new_run"):
        a, b = st.columns(2)
        values: dict[str, Any] = {"name": a.text_input("Name", start.get("name") or "", placeholder="optional")}
        slots["name"] = a.empty()
        values["tags"] = [t.strip() for t in b.text_input("Tags", ", ".join(start.get("tags", [])),
                                                          placeholder="comma-separated").split(",") if t.strip()]
        slots["tags"] = b.empty()
        if "preset" in dataset.get("knobs", []):  # the difficulty knobs its spec takes
            shown = st.session_state["new_run:dataset.preset"]  # a re-run's preset the list lacks is kept
            values["preset"] = st.selectbox("Difficulty preset", PRESETS + [shown] * (shown not in PRESETS),
                                            key="new_run:dataset.preset",
                                            format_func=lambda p: p or "none (clean data)",
                                            help=origin_help("dataset.preset", layer, whose))
            slots["dataset.preset"] = st.empty()
        if dataset.get("split_schemes"):
            split_fields(dataset, start["dataset"], values, slots)
        if dataset.get("folders"):  # a dataset of the user's own folders: which one
            root = start["dataset"].get("root")
            values["root"] = st.selectbox("Folder under the data root", dataset["folders"],
                                          index=pick(dataset["folders"], root),
                                          help="<folder>/<split>/<label>/<id>.<ext>; modalities are those its files "
                                               "have")
            slots["dataset.root"] = st.empty()
        if dataset.get("text"):
            values["model"] = {"text_model": st.text_input(
                "Text model", start.get("model", {}).get("text_model", "roberta-base"),
                help="a folder under the server's data root, or a Hugging Face hub name in its cache")}
            slots["model.text_model"] = st.empty()
        if method["uses_skip"]:
            st.markdown("**Skip factor per modality** — a modality with factor *k* is updated every *k*-th epoch")
            columns = st.columns(len(dataset["modalities"]))
            values["skip"] = {}
            for col, modality in zip(columns, dataset["modalities"], strict=True):
                values["skip"][modality] = col.number_input(modality, step=1, key=f"new_run:skip.{modality}",
                                                            help=origin_help(f"skip.{modality}", layer, whose))
                slots[f"skip.{modality}"] = col.empty()
            started_auto = start.get("skip", {}).get("auto")
            auto = st.checkbox("Choose the factors automatically (`skip: auto`)", started_auto is not None,
                               help="every modality trained for a few warm-up epochs, then each factor from its "
                                    "helper's learning speed relative to the slowest one, re-estimated every few "
                                    "epochs (Doc/methods.md); the factors above are then ignored")
            values["skip"]["auto"] = (started_auto or {}) if auto else None
            slots["skip.auto"] = st.empty()
            slots["skip"] = st.empty()
        if not method["fusion_fixed"]:
            values["fusion"] = st.selectbox("Fusion", FUSIONS, index=pick(FUSIONS, start.get("fusion")
                                                                          or method["default_fusion"]))
            slots["fusion"] = st.empty()
        if method["params_schema"].get("properties"):
            st.markdown("**Method parameters**")
            values["method_params"] = method_params(method, start.get("method_params", {}), slots,
                                                    dataset["modalities"])
            slots["method_params"] = st.empty()
        a, b, c, d, e = st.columns(5)
        # step=1: whole numbers (a number field with neither value nor step given is a float one, "20.00")
        values["epochs"] = a.number_input("Epochs", step=1, key="new_run:epochs",
                                          help=origin_help("epochs", layer, whose))
        slots["epochs"] = a.empty()
        values["batch_size"] = b.number_input("Batch size", step=1, key="new_run:batch_size",
                                              help=origin_help("batch_size", layer, whose))
        slots["batch_size"] = b.empty()
        values["seed"] = c.number_input("Seed", step=1, key="new_run:seed")
        slots["seed"] = c.empty()
        values["device"] = d.text_input("Device", key="new_run:device", help="auto, cpu, cuda or cuda:N")
        slots["device"] = d.empty()
        lr_step = max(abs(st.session_state["new_run-start:optim.lr"]) / 10, 1e-8)  # +/- in tenths of the start
        values["lr"] = e.number_input("Learning rate", key="new_run:optim.lr", format=LR_FORMAT, step=lr_step,
                                      help=origin_help("optim.lr", layer, whose))
        slots["optim.lr"] = e.empty()
        if not prefill:
            st.caption(recipe_note(dataset, method_name, reference, [s for s in slots if s != "skip"]))
        a, b, c, _ = st.columns([1, 1, 1, 2])
        values["precision"] = a.selectbox("Precision", PRECISIONS, index=pick(PRECISIONS, start.get("precision")),
                                          help="bf16: mixed precision on a GPU from Ampere on (fastest); fp16 with "
                                               "a loss scaler; fp32 full precision")
        slots["precision"] = a.empty()
        values["compile"] = b.checkbox("Compile encoders", bool(start.get("compile", False)),
                                       help="torch.compile: faster steps on a GPU after slower first batches")
        slots["compile"] = b.empty()
        values["gpus"] = c.number_input("GPUs", step=1, key="new_run:resources.gpus",
                                        help="ranks the run trains on, one GPU each (with device cpu: CPU "
                                             "processes); a worker with that many GPUs takes it")
        slots["resources.gpus"] = c.empty()
        # The API checks every value (0 epochs, a skip factor of 0, ...) and says which field is wrong; the form
        # sets no bounds of its own, which the browser would enforce silently.
        submitted = st.form_submit_button("Submit run", type="primary", disabled=not dataset["prepared"],
                                          help=None if dataset["prepared"] else "the dataset is not prepared")
        general = st.empty()

    if submitted:
        body = run_body(start, method, dataset, values)
        try:
            run = api().submit(body)
        except ApiError as err:
            show_errors(err, slots, general)
        else:
            st.session_state.pop("prefill", None)
            st.session_state.flash = f"Submitted run **{plain(run['name'])}** ({run['id']}); it is {run['status']}."
            st.switch_page(PAGES["run"], query_params={"run": run["id"]})
