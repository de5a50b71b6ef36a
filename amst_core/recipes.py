"""Where a run's settings come from when its request leaves them out: one rule for the form, `POST /runs`, sweeps,
the CLI and `amst reproduce`, applied where a run config is validated (RunConfig).

Four layers, the later winning:
  reference  the reference code's values, the paper's settings: RunConfig's field defaults (SGD lr 1e-3,
             StepLR(70), 100 epochs, CREMA-D's input shapes, ...) and the paper's own for the dataset
             (DatasetSpec.reference: AVE's skip factor 2, ...);
  data       what the dataset's files dictate (avdigits: 13 MFCCs, 28x28 images): always applied;
  recipe     settings that train well on the dataset (DatasetSpec.recipe), and for a method where it needs its own
             (DatasetSpec.method_recipes): applied unless the run asks for `recipe: reference`;
  request    what the request sets.

`config_origin` says, for every setting of a validated run, which layer its value is from.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel

from amst_core.catalog import DATASETS, METHODS, deep_merge

RecipeMode = Literal["dataset", "reference"]
RECIPE_MODES: tuple[RecipeMode, ...] = ("dataset", "reference")
Origin = Literal["request", "recipe", "data", "reference"]
REQUEST, RECIPE, DATA, REFERENCE = get_args(Origin)
LABELS = ("name", "tags")  # what a run is called, not what it trains: no origin


def recipe_for(dataset: str, method: str | None) -> dict[str, Any]:
    """The dataset's recipe with the method's own on top."""
    spec = DATASETS[dataset]
    return for_method(deep_merge(spec.recipe, spec.method_recipes.get(method or "", {})), method)


def paper_settings(dataset: str, method: str | None) -> dict[str, Any]:
    """The paper's settings for the dataset beyond RunConfig's defaults (part of the reference layer)."""
    return for_method(DATASETS[dataset].reference, method)


def for_method(fields: dict[str, Any], method: str | None) -> dict[str, Any]:
    """Skip factors only for a method that skips modalities: a naive run with `skip.audio: 3` in its config would
    read as if it skipped."""
    info = METHODS.get(method or "")
    if info is not None and not info.uses_skip and "skip" in fields:
        fields = {k: v for k, v in fields.items() if k != "skip"}
    return fields


def filled_in(dataset: str, method: str | None, mode: RecipeMode = "dataset") -> dict[str, Any]:
    """The fields a request of this dataset and method leaves out take these values (then RunConfig's own)."""
    out = deep_merge(paper_settings(dataset, method), DATASETS[dataset].defaults)
    return out if mode == "reference" else deep_merge(out, recipe_for(dataset, method))


def with_defaults(request: Any) -> Any:
    """A run request with what it leaves out filled from its dataset's layers (RunConfig's first step). Anything
    that is not a request of a known dataset is left for validation to name."""
    if not isinstance(request, dict) or not isinstance(request.get("dataset"), dict):
        return request
    name, method, mode = request["dataset"].get("name"), request.get("method"), request.get("recipe", "dataset")
    if not isinstance(name, str) or name not in DATASETS or mode not in RECIPE_MODES:
        return request
    return deep_merge(filled_in(name, method if isinstance(method, str) else None, mode), request)


def config_origin(cfg: BaseModel) -> dict[str, str]:
    """Every setting of a validated run config (dotted path) -> the layer its value is from: request, recipe, data
    or reference. A value equal to a layer's is that layer's, whoever typed it: what matters to a reader is
    whether the run departs from the defaults, and which."""
    values = flatten(cfg.model_dump(mode="json"))
    dataset, method = values["dataset.name"], values["method"]
    reference = deep_merge(reference_values(type(cfg), method), paper_settings(dataset, method))
    layers = [(DATA, flatten(DATASETS[dataset].defaults)), (REFERENCE, flatten(reference))]
    if values.get("recipe", "dataset") == "dataset":
        layers.insert(0, (RECIPE, flatten(recipe_for(dataset, method))))
    origin = {}
    for path, value in values.items():
        if path.split(".")[0] in LABELS or path in ("dataset.name", "method", "recipe"):
            continue
        origin[path] = next((name for name, layer in layers if path in layer and layer[path] == value), REQUEST)
    return origin


def reference_values(config_class: type[BaseModel], method: str) -> dict[str, Any]:
    """RunConfig's own defaults, nested sections included, and the method's parameter defaults."""
    out = defaults_of(config_class)
    info = METHODS.get(method)
    if info is not None:
        out["method_params"] = defaults_of(info.params)
    return out


def defaults_of(model: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if field.is_required():
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                out[name] = defaults_of(annotation)  # a section every run has (dataset): its fields' defaults
            continue
        default = field.get_default(call_default_factory=True)
        out[name] = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
    return out


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.01}} -> {"optim.lr": 0.01}; lists and empty sections are values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out
