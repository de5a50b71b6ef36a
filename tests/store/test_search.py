"""The run search language (amst_core.store.search): parsing, every error, and matching. Pure: no database."""

from __future__ import annotations

from typing import Any

import pytest

from amst_core.store.search import SearchError, Term, check_keys, matches, parse, uses

FIELDS: dict[str, Any] = {
    "name": "AMST full on avdigits", "id": "0123abcd4567ef89", "method": "amst_full", "dataset": "avdigits",
    "status": "succeeded", "seed": 1, "tag": ["baseline", "paper"], "best_val_acc": 0.93, "test_acc_at_best": 0.9,
    "best_epoch": 7, "epochs_done": 10, "epochs_total": 10, "queue": "cpu", "device": "cpu", "notes": None,
}
CONFIG: dict[str, Any] = {
    "optim": {"lr": 0.01, "momentum": 0.9}, "skip": {"audio": 2, "visual": 1}, "model": {"fusion": "concat"},
    "compile": False, "deterministic": None, "device": "auto", "tags": ["baseline", "paper"], "epochs": 10,
}


def hit(q: str, fields: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> bool:
    return matches(parse(q), FIELDS if fields is None else fields, CONFIG if config is None else config)


def error_of(q: str) -> str:
    with pytest.raises(SearchError) as caught:
        parse(q)
    return str(caught.value)


# ---- parsing --------------------------------------------------------------------------------------------------

def test_terms_split_on_whitespace_and_quotes_group() -> None:
    assert parse('  method=amst_full   seed>=1 "two words" name="my run" fusion ') == [
        Term("method=amst_full", "method", "=", "amst_full"), Term("seed>=1", "seed", ">=", "1"),
        Term('"two words"', None, None, "two words"), Term('name="my run"', "name", "=", "my run"),
        Term("fusion", None, None, "fusion")]
    assert parse("") == [] and parse("   ") == []


@pytest.mark.parametrize("op", ["=", "!=", ">", ">=", "<", "<=", "~"])
def test_every_operator(op: str) -> None:
    assert parse(f"optim.lr{op}0.5") == [Term(f"optim.lr{op}0.5", "optim.lr", op, "0.5")]


def test_operator_characters_inside_quotes_are_text() -> None:
    assert parse('"a=b"') == [Term('"a=b"', None, None, "a=b")]
    assert parse('notes~"x>=y"') == [Term('notes~"x>=y"', "notes", "~", "x>=y")]
    assert parse('name=""') == [Term('name=""', "name", "=", "")]


def test_unterminated_quote() -> None:
    assert error_of('seed=1 name="my run') == '"name="my run": unterminated quote'
    assert error_of('"') == '""": unterminated quote'


@pytest.mark.parametrize(("q", "message"), [
    ("a=>3", '"a=>3": unknown operator =>; use one of =, !=, >, >=, <, <=, ~'),
    ("a==3", '"a==3": unknown operator ==; use one of =, !=, >, >=, <, <=, ~'),
    ("a!3", '"a!3": unknown operator !; use one of =, !=, >, >=, <, <=, ~'),
    ("seed=<1", '"seed=<1": unknown operator =<; use one of =, !=, >, >=, <, <=, ~'),
])
def test_unknown_operator(q: str, message: str) -> None:
    assert error_of(q) == message


def test_empty_or_malformed_key() -> None:
    assert error_of("=3") == '"=3": = needs a field name before it (a run field or a config path like optim.lr)'
    assert error_of(">0.5") == '">0.5": > needs a field name before it (a run field or a config path like optim.lr)'
    assert error_of('"a b"=1').startswith('""a b"=1": a b is not a field name')
    assert error_of("optim..lr=1").startswith('"optim..lr=1": optim..lr is not a field name')
    assert error_of("1x=1").startswith('"1x=1": 1x is not a field name')


def test_ordering_needs_a_number() -> None:
    assert error_of("best_val_acc>high") == '"best_val_acc>high": best_val_acc > needs a number'
    assert error_of("optim.lr<=") == '"optim.lr<=": optim.lr <= needs a number'
    assert error_of("seed>nan") == '"seed>nan": seed > needs a number'


def test_ordering_on_a_text_field() -> None:
    assert error_of("name>3") == '"name>3": name is text; > compares numbers (use =, != or ~)'
    assert error_of("tag<1") == '"tag<1": tag is text; < compares numbers (use =, != or ~)'


def test_empty_term() -> None:
    assert error_of('seed=1 ""') == '"""": empty search term'


def test_uses_says_what_must_be_loaded() -> None:
    terms = parse("fusion notes~x")
    assert uses(terms, "notes") and not uses(terms, "config")
    assert uses(parse("optim.lr=1"), "config") and uses(parse("config.device=auto"), "config")
    assert not uses(parse("device=cpu seed=1 tag=x"), "config")


# ---- matching -------------------------------------------------------------------------------------------------

def test_examples_from_the_docs() -> None:
    assert hit("optim.lr=0.01") and hit("optim.lr=1e-2") and not hit("optim.lr=0.001")
    assert hit("best_val_acc>0.9") and not hit("best_val_acc>0.95")
    assert hit("method=amst_full seed>=1") and not hit("method=amst_full seed>=2")
    assert hit("tag=baseline") and not hit("tag=ablation")
    assert hit("avdigits") and hit("AVDIGITS") and hit("4567ef") and not hit("fusion")


def test_numbers_compare_as_numbers_ints_and_floats_alike() -> None:
    assert hit("seed=1.0") and hit("seed=1") and hit("seed<2") and hit("seed<=1") and not hit("seed<1")
    assert hit("skip.audio>=2") and hit("skip.audio=2e0") and hit("best_epoch!=8") and not hit("best_epoch!=7")
    assert hit("epochs_done=epochs_total") is False  # a value is a literal, never another field
    assert hit("optim.momentum>.5")


def test_booleans_and_text() -> None:
    assert hit("compile=false") and hit("compile=False") and not hit("compile=true") and hit("compile!=true")
    assert hit("status=succeeded") and not hit("status=Succeeded")  # = is exact; ~ ignores case
    assert hit("status~SUCC") and hit("model.fusion~conc") and hit("name~full") and not hit("name~xyz")
    assert hit('name="AMST full on avdigits"') and hit('"full on"')
    assert hit("seed=abc") is False and hit("seed!=abc")  # text against a number: compared as text


def test_missing_or_null_matches_only_not_equal() -> None:
    for q in ("notes=x", "notes~x", "deterministic=true", "optim.nope=1", "optim.nope>1", "skip.text~1",
              "optim=1"):  # optim is a mapping: not a value
        assert not hit(q), q
    for q in ("notes!=x", "deterministic!=true", "optim.nope!=1", "optim!=1"):
        assert hit(q), q
    assert not hit("best_val_acc>0", {**FIELDS, "best_val_acc": None})


def test_tags_are_a_set() -> None:
    assert hit("tag=paper tag=baseline") and hit("tag~PAP") and not hit("tag=pap")
    assert hit("tag!=ablation") and not hit("tag!=paper")
    untagged = {**FIELDS, "tag": []}
    assert not hit("tag=paper", untagged) and not hit("tag~p", untagged) and hit("tag!=paper", untagged)


def test_run_fields_win_and_config_prefix_reaches_the_config() -> None:
    assert hit("device=cpu") and not hit("device=auto")
    assert hit("config.device=auto") and hit("config.tags=paper") and hit("epochs=10")


def test_every_term_must_hold() -> None:
    assert hit("tag=baseline best_val_acc>0.9 skip.audio=2")
    assert not hit("tag=baseline best_val_acc>0.9 skip.audio=3")
    assert matches([], FIELDS)  # no terms: everything matches


# ---- keys that name nothing (the API checks them against the run config's model) --------------------------

def key_error(q: str) -> str:
    from amst_core.config import RunConfig

    with pytest.raises(SearchError) as caught:
        check_keys(parse(q), RunConfig)
    return str(caught.value)


def test_an_unknown_key_is_named_with_the_known_ones() -> None:
    """`foo.bar=1` used to match nothing, silently: it reads as a search that found no run."""
    message = key_error("seed=1 foo.bar=1")
    assert message.startswith('"foo.bar=1": unknown key foo: use a run field (name, id, method')
    assert "best_val_acc" in message and "optim" in message and "batch_size" in message
    assert key_error("optim.lrr<1") == ('"optim.lrr<1": unknown key optim.lrr: optim has lr, momentum, '
                                        'weight_decay, lr_step, lr_gamma')
    assert "unknown key config.foo: the config has name, tags" in key_error("config.foo=1")
    assert key_error("optim.lr.x=1") == '"optim.lr.x=1": optim.lr is a value, it has no key x'


def test_known_keys_pass_the_key_check() -> None:
    from amst_core.config import RunConfig

    check_keys(parse("word seed=1 device=cpu config.device=auto optim.lr>0 skip.auto.warmup=3 optim!=1 "
                     "method_params.alpha=0.5 dataset.synthetic.samples.train>1 tags=x"), RunConfig)
