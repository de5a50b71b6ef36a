"""Optional parts (amst_core.extras): without their extra installed, each says which one to install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from amst_core.data import media
from amst_core.extras import MissingExtra, require
from amst_core.sweeps import paired_test


def absent(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if it were not installed


def test_a_present_module_is_returned() -> None:
    assert require("json", "x", "anything").dumps([1]) == "[1]"


def test_a_missing_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    absent(monkeypatch, "scipy", "scipy.stats")
    with pytest.raises(MissingExtra, match=r"a sweep's paired tests needs scipy\.stats.*pip install "
                                           r"'amst-studio\[stats\]'") as err:
        paired_test([0.5, 0.6, 0.7], [0.4, 0.5, 0.5])
    assert err.value.extra == "stats" and isinstance(err.value, ImportError)


def test_a_video_without_pyav_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    absent(monkeypatch, "av")
    with pytest.raises(MissingExtra, match=r"a video's soundtrack needs av.*amst-studio\[media\]"):
        media.soundtrack(tmp_path / "clip.mp4")


def test_a_module_whose_own_dependency_is_missing_is_not_called_an_extra(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    (tmp_path / "half_installed.py").write_text("import a_package_nobody_has\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="a_package_nobody_has") as err:
        require("half_installed", "x", "a feature")
    assert not isinstance(err.value, MissingExtra)


def test_the_dashboard_without_streamlit_is_refused_before_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    from launch.processes import ui_command

    absent(monkeypatch, "streamlit")
    with pytest.raises(MissingExtra, match=r"the dashboard needs streamlit.*amst-studio\[ui\]"):
        ui_command("127.0.0.1", 8501)


def test_the_api_answers_a_missing_extra_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from api.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/needs-stats")
    def needs_stats() -> None:
        require("scipy.stats", "stats", "a sweep's paired tests")

    absent(monkeypatch, "scipy", "scipy.stats")
    resp = TestClient(app).get("/needs-stats")
    assert resp.status_code == 501
    assert "pip install 'amst-studio[stats]'" in resp.json()["error"]["message"]
