"""A dataset from a plugin, served: the API and the worker started with AMST_PLUGINS (and the plugin's folder on
PYTHONPATH) offer it in the New run form (the dashboard only asks the API) and train it, with no edit of the
package. GET /datasets in-process and `amst train` are in tests/test_plugins.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.kit.plugin import TOY, plugin_env, toy_run, write_toy_plugin
from tests.kit.seeded import APP
from tests.kit.svc import ROOT, Service, service_env, submit_and_wait


def new_run_form(url: str, monkeypatch: pytest.MonkeyPatch):
    """The New run page of the dashboard (in this process, which has not loaded the plugin) on that API."""
    from streamlit.testing.v1 import AppTest

    from ui.settings import ui_settings

    monkeypatch.setenv("AMST_API_URL", url)
    ui_settings.cache_clear()
    at = AppTest.from_file(APP, default_timeout=30).run()
    return at.switch_page("views/new_run.py").run()


def test_a_plugin_dataset_is_offered_by_the_form_and_trained_by_a_worker(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = plugin_env(write_toy_plugin(tmp_path / "plugins"))
    plugin["PYTHONPATH"] = os.pathsep.join([plugin["PYTHONPATH"], str(ROOT)])
    svc = Service(service_env(tmp_path, **plugin), tmp_path)
    try:
        svc.start_api()
        svc.start_worker()
        at = new_run_form(svc.url, monkeypatch)
        assert not at.exception, at.exception
        dataset_box = at.selectbox[1]
        assert TOY in dataset_box.options
        dataset_box.set_value(TOY).run()
        assert not at.exception and not at.warning  # prepared: its check passes on the server
        run = submit_and_wait(svc, {"toy": toy_run()})["toy"]
        assert run["status"] == "succeeded", (run["error"], svc.logs("worker"))
        assert run["config"]["dataset"]["name"] == TOY
    finally:
        svc.stop()
        from ui.settings import ui_settings

        ui_settings.cache_clear()
