"""The documentation against the code: the README's commands table is the CLI's own list, every
command has its one-line Makefile target, every `make X` the docs mention exists, the settings
the docs name are settings, and `make bench` writes its page. Fast: no server, no subprocess
but the bench script's."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taxifare_flow.cli import app, commands
from taxifare_flow.settings import SETTING_VARS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"
DOCS = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]

#: `name: prerequisites ; recipe` (a `:=` assignment is not a rule).
RULE = re.compile(r"^([A-Za-z_][\w-]*):(?!=)[^;]*(?:;\s*(.*))?$")


def _block(text: str, marker: str) -> str:
    """The lines between `<!-- marker… -->` and the next `<!-- end … -->` of the README."""
    match = re.search(rf"<!-- {re.escape(marker)}[^>]*-->\n(.*?)<!-- end [^>]*-->", text, re.S)
    assert match, f"the README has no <!-- {marker} --> block"
    return match.group(1)


def _rules() -> dict[str, str]:
    """Every rule of the Makefile: target → its one-line recipe ('' when it has none)."""
    rules = {}
    for line in MAKEFILE.read_text().splitlines():
        if m := RULE.match(line):
            rules[m.group(1)] = (m.group(2) or "").strip()
    return rules


def _makefile_only() -> dict[str, str]:
    """The targets documented as the Makefile's own (`## name: what it does`)."""
    return dict(re.findall(r"^## ([a-z_][a-z0-9_]*): (.+)$", MAKEFILE.read_text(), re.M))


def test_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= 300, f"README.md has {lines} lines: the rest belongs in docs/"


def test_readme_commands_table_is_the_cli_list() -> None:
    r = CliRunner().invoke(app, ["list", "--markdown"])
    assert r.exit_code == 0, r.output
    assert _block(README.read_text(), "commands") == r.output, \
        "README's commands table differs from `taxifare list --markdown`: paste its output"


def test_the_cli_lists_only_what_it_runs() -> None:
    names = [name for name, _ in commands()]
    for name, what in commands():
        assert what and "\n" not in what and what.endswith((".", ")")), f"{name}: {what!r} is not one sentence"
        r = CliRunner().invoke(app, [name, "--help"])
        assert r.exit_code == 0, f"`taxifare {name} --help`: {r.output}"
    for make_only in _makefile_only():
        assert make_only not in names, f"{make_only} is a Makefile target, not a command"
    r = CliRunner().invoke(app, ["list"])
    assert r.exit_code == 0 and "run_flow" in r.output
    assert not re.search(r"\bmake\b", r.output), "the installed CLI must not send users to make"


def test_every_command_has_its_makefile_target() -> None:
    rules = _rules()
    for name, _ in commands():
        assert name in rules, f"`taxifare {name}` has no Makefile target: add `{name}: install ; $(TAXIFARE) {name}`"
        assert re.match(rf"@?\$\(TAXIFARE\) {name}(\s|$)", rules[name]), \
            f"the Makefile target {name} is not a one-line call of `taxifare {name}`: {rules[name]!r}"


def test_makefile_targets_are_commands_or_documented() -> None:
    rules, own, names = _rules(), _makefile_only(), {name for name, _ in commands()}
    phony = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", MAKEFILE.read_text(), re.M)
    assert phony
    phony_targets = set(phony.group(1).replace("\\\n", " ").split())
    for target in rules:
        assert target in names or target in own, \
            f"Makefile target {target} is neither a taxifare command nor documented by a `## {target}: …` line"
        assert target in phony_targets, f"Makefile target {target} is missing from .PHONY"
    assert not set(own) - set(rules), f"`##` lines without a target: {set(own) - set(rules)}"
    table = "| target | what it does |\n|---|---|\n" + "".join(f"| `{t}` | {what} |\n" for t, what in own.items())
    assert _block(README.read_text(), "makefile") == table, \
        "README's table of Makefile targets differs from the Makefile's `## name: …` lines"


def test_every_make_mention_is_a_target() -> None:
    rules = _rules()
    pattern = re.compile(r"(?:`make ([a-z_][a-z0-9_]*)|^\s*(?:\$ )?make ([a-z_][a-z0-9_]*))", re.M)
    for doc in DOCS:
        for match in pattern.finditer(doc.read_text()):
            target = match.group(1) or match.group(2)
            assert target in rules, f"{doc.relative_to(ROOT)} mentions `make {target}`, which the Makefile does not have"


def test_env_sample_lists_every_setting() -> None:
    listed = re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.sample").read_text(), re.M)
    assert sorted(listed) == sorted(SETTING_VARS), \
        f"missing from .env.sample: {set(SETTING_VARS) - set(listed)}; not settings: {set(listed) - set(SETTING_VARS)}"


def test_readme_settings_are_settings() -> None:
    section = README.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*\*?)`", section, re.M)) | \
        set(re.findall(r"^\| `[A-Z_]+`, `([A-Z][A-Z0-9_]*)`", section, re.M))
    assert len(named) >= 10
    for name in named:
        if name.endswith("*"):
            assert any(v.startswith(name[:-1]) for v in SETTING_VARS), name
        else:
            assert name in SETTING_VARS, f"the README's settings table names {name}, which is no setting"


def test_bench_writes_its_page(tmp_path: Path) -> None:
    """`make bench`'s script with a stand-in Python that prints its arguments: the page has the
    header and each bench's output in a fenced block; a failing bench leaves the page as it was."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "bench output: $*"\n[ -z "$FAIL" ] || case "$*" in *"$FAIL"*) exit 1;; esac\n')
    fake.chmod(0o755)
    page = tmp_path / "benchmarks.md"
    env = {**os.environ, "BENCH_PYTHON": str(fake), "BENCH_PAGE": str(page)}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "bench.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    assert text.startswith("# Benchmarks\n")
    assert re.search(r"^- date: \d{4}-\d\d-\d\d \d\d:\d\d UTC", text, re.M)
    assert re.search(r"^- machine: \d+ cores", text, re.M)
    assert re.search(r"^- load average \(1, 5, 15 min\): [\d.]+ [\d.]+ [\d.]+ at the start, [\d.]+ [\d.]+ [\d.]+ at the end$", text, re.M)
    assert re.search(r"^- commit: [0-9a-f]{7,}", text, re.M)
    scripts = re.findall(r"benches/\w+\.py", (ROOT / "scripts" / "bench.sh").read_text())
    blocks = re.findall(r"^## .+\n\n```text\n\$ .+\nbench output: (benches/\w+\.py).*\n```$", text, re.M)
    assert blocks and set(blocks) == set(scripts), "each bench's output in its own fenced block"
    assert page.stat().st_mode & 0o444 == 0o444, "the page is readable by all, as a committed file"

    page.write_text("the last run\n")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "bench.sh")], env={**env, "FAIL": "quality.py"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert page.read_text() == "the last run\n", "a failed bench must not replace the page"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".benchmarks")] == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    """Links between the docs point at files that exist (anchors are not checked)."""
    for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", doc.read_text()):
        assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)} links to {target}, which does not exist"
