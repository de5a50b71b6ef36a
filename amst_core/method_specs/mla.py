from amst_core.method_specs.base import MethodSpec, NoParams
from amst_core.vocab import AUDIO, TEXT, VISUAL

# The fixed weighted combinations of the branch logits MLA evaluates (its implementation weighs with them).
PAIR_WEIGHTS = ((0.3, 0.7), (0.4, 0.6), (0.5, 0.5), (0.6, 0.4), (0.7, 0.3))
TRIPLE_WEIGHTS = {AUDIO: 0.35, TEXT: 0.4, VISUAL: 0.25}
ENTROPY = "entropy"  # the entropy-gated combination


def combinations(modalities: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """name -> weight per modality, e.g. {"a30_v70": {"audio": 0.3, "visual": 0.7}}."""
    if len(modalities) == 2:
        weight_sets = [dict(zip(modalities, pair, strict=True)) for pair in PAIR_WEIGHTS]
    elif len(modalities) == 3:
        weight_sets = [{m: TRIPLE_WEIGHTS[m] for m in modalities}]
    else:
        return {}
    return {"_".join(f"{m[0]}{round(w * 100)}" for m, w in weights.items()): weights for weights in weight_sets}


def combo_names(modalities: tuple[str, ...]) -> tuple[str, ...]:
    """Every combination evaluated for these modalities: the weighted ones and the entropy gate (none for one)."""
    return (*combinations(modalities), ENTROPY) if len(modalities) >= 2 else ()


SPEC = MethodSpec("mla", "MLA: alternating unimodal training through a shared head; weighted and entropy-gated "
                  "combinations evaluated", NoParams, "msum", fusion_fixed=True, uses_skip=False,
                  implementation="amst_core.methods.mla:Mla", combos=combo_names)
