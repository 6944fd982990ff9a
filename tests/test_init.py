"""`taxifare init` and `.env.sample` come from one source, which names every setting once, with
the settings' own defaults."""

from __future__ import annotations

from pathlib import Path

from helpers import taxifare
from taxifare_flow.env_template import TEMPLATE, variables
from taxifare_flow.settings import SETTING_VARS, load_settings, settings_from

ROOT = Path(__file__).resolve().parent.parent


def test_env_sample_is_the_template() -> None:
    assert (ROOT / ".env.sample").read_text() == TEMPLATE, "regenerate it: taxifare init --path .env.sample --force"


def test_the_template_names_every_setting_once_with_its_default(clean_env: Path) -> None:
    names = [line.split("=", 1)[0] for line in TEMPLATE.splitlines() if line and not line.startswith("#")]
    assert len(names) == len(set(names))
    assert set(names) == set(SETTING_VARS)
    # Its values are the defaults: read as settings they change nothing.
    assert settings_from(variables()) == settings_from({})
    # Every variable has a comment or a section above it that says what it is.
    assert TEMPLATE.count("# ---") >= 5


def test_init_writes_a_commented_env_and_keeps_an_existing_one(clean_env: Path) -> None:
    r = taxifare("init")
    assert r.returncode == 0, r.stderr
    env = clean_env / ".env"
    assert env.read_text() == TEMPLATE
    assert load_settings(env) == settings_from({})
    env.write_text("HISTORY_SEED=7\n")
    r = taxifare("init")
    assert r.returncode == 2
    assert r.stderr.strip() == "SettingsError: .env exists: edit it, or rerun with --force to replace it with the defaults"
    assert env.read_text() == "HISTORY_SEED=7\n"
    assert taxifare("init", "--force").returncode == 0 and env.read_text() == TEMPLATE
