"""`taxifare`: the command line. Each command has a Makefile target of the same name that calls
it; the Makefile's own targets (install, test, bench, wheel…) are not commands here.

Commands import only what they need: `watermark` and `show_env` never import mlflow or
Prefect, so they answer in a fraction of a second.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from taxifare_flow.failure import debug, one_line
from taxifare_flow.errors import SettingsError
from taxifare_flow.settings import Settings, load_settings

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from taxifare_flow.data import DataSource, SourceMonth
    from taxifare_flow.flow.lifecycle import Outcome
    from taxifare_flow.flow.simulate import Tick

T = TypeVar("T")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Continuous training of a NYC taxi-fare model.")
console = Console()
err = Console(stderr=True)

#: Exit status of `get_new_month` / `push_month_to_bq` when no month is pending.
NO_MORE_DATA = 3


def _fail(e: BaseException) -> NoReturn:
    """One line naming the cause (passwords masked), exit status 2; the traceback only with
    --debug. `soft_wrap`: a narrow terminal must not break the one line into several; no
    markup: a message's brackets are text."""
    if debug():
        raise e
    err.print(one_line(e), style="red", soft_wrap=True, highlight=False, markup=False)
    raise typer.Exit(2) from None


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as e:
        _fail(e)


def _guard(fn: Callable[[], T]) -> T:
    """Runs a command body, turning the project's typed errors into one red line and exit 2."""
    from taxifare_flow import TaxifareError

    try:
        return fn()
    except (TaxifareError, OSError) as e:
        _fail(e)
    except Exception as e:
        from taxifare_flow.errors import TrackingStoreError
        from taxifare_flow.ml_logic.store import no_space

        if not no_space(e) or debug():
            raise
        # A full disk met by MLflow's SQLAlchemy (or another library) rather than by our own writes.
        what = "database or disk is full" if "disk is full" in str(e) else " ".join(str(e).split())[:200]
        _fail(TrackingStoreError(f"no space left on a device ({type(e).__name__}: {what}): free some space and retry"))


class _RowsProgress:
    """A progress bar with rows/s for long Rust work (generating, importing), shown from the
    first report on and gone when done. Called as `progress(done, total, rows)`."""

    def __init__(self, what: str, in_bytes: bool = False) -> None:
        self.what, self.in_bytes = what, in_bytes
        self.shown: tuple[Progress, TaskID] | None = None
        self.started = time.perf_counter()

    def __enter__(self) -> _RowsProgress:
        self.started = time.perf_counter()
        return self

    def __call__(self, done: int, total: int, rows: int) -> None:
        from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, \
            TimeElapsedColumn

        if self.shown is None:
            amount = DownloadColumn() if self.in_bytes else MofNCompleteColumn()
            bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(), amount,
                           TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console, transient=True)
            bar.start()
            self.shown = (bar, bar.add_task(self.what, total=total, rate=""))
        bar, task = self.shown
        rate = rows / max(time.perf_counter() - self.started, 1e-9)
        bar.update(task, completed=done, total=total, rate=f"{rows:,} rows  {rate:,.0f} rows/s")

    def __exit__(self, *exc: object) -> None:
        if self.shown is not None:
            self.shown[0].stop()


@app.command("list")
def list_commands(
    markdown: bool = typer.Option(False, "--markdown", help="a Markdown table (the README's commands table)"),
) -> None:
    """The commands of this CLI, each with a one-line description."""
    rows = commands()
    if markdown:
        # Plain text, not rich: a table row must never be wrapped at the terminal's width.
        lines = ["| command | what it does |", "|---|---|"]
        lines += [f"| `{name}` | {what.replace('|', chr(92) + '|')} |" for name, what in rows]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    t = Table(show_header=True, header_style="bold", caption="taxifare COMMAND --help: its options")
    t.add_column("command")
    t.add_column("what it does")
    for name, what in rows:
        t.add_row(name, what)
    console.print(t)


def commands() -> list[tuple[str, str]]:
    """(name, one line) of every command this CLI runs, in the order they are defined: the
    first sentence of each command's help, so a new command is listed by being written."""
    import re

    rows = []
    for name, command in typer.main.get_group(app).commands.items():
        if command.hidden:
            continue
        text = " ".join((command.short_help or command.help or "").split("\n\n")[0].split())
        rows.append((name, re.split(r"(?<=\.)\s+(?=[A-Z`])", text)[0]))
    return rows


@app.command("init")
def init(
    path: str = typer.Option(".env", help="where to write the settings file"),
    force: bool = typer.Option(False, "--force", help="replace an existing file"),
) -> None:
    """Writes a commented settings file (.env) with every setting at its default."""
    from pathlib import Path

    from taxifare_flow.env_template import write_env

    written = _guard(lambda: write_env(Path(path), force))
    console.print(f"{written}: every setting at its default, commented; edit it (the environment wins over it)",
                  highlight=False)


@app.command("show_env")
def show_env() -> None:
    """The settings, grouped by concern, every password masked."""
    from taxifare_flow.settings import masked

    s = _settings()
    for group, rows in masked(s).items():
        t = Table(title=group, title_justify="left", show_header=False, box=None, padding=(0, 2))
        for name, value in rows:
            t.add_row(name, value)
        console.print(t)


@app.command("reset_data_sources")
def reset_data_sources(
    fresh: bool = typer.Option(False, help="also delete the embedded MLflow store, Prefect state and reports"),
) -> None:
    """Empties the local source and generates the pending history if it is missing."""
    from taxifare_flow.data import open_source

    s = _settings()

    def body() -> None:
        if fresh:
            from taxifare_flow.flow.lock import lifecycle_lock

            # Not from under a running lifecycle: the store goes while the lock is held.
            with lifecycle_lock(s):
                for d in (s.mlflow_dir, s.prefect_home, s.reports_dir):
                    # Only ever inside LOCAL_DATA_PATH, and the store only when it is the embedded one.
                    if d.is_dir() and d.is_relative_to(s.local_data_path) and (d != s.mlflow_dir or s.tracking_is_embedded):
                        shutil.rmtree(d)
        started = time.perf_counter()
        source = open_source(s, "local")
        with _RowsProgress("generating the history") as report:
            done = source.reset(progress=report)
        console.print(f"{done}; history ready in {time.perf_counter() - started:.1f} s", highlight=False)
        _show(s, source)

    _guard(body)


def _show(s: Settings, src: DataSource) -> None:
    """The months of a source, its pending months, where they come from; a problem of the
    source is raised after the table (so the user sees what is there)."""
    from taxifare_flow.data.history import provenance

    present = src.months()
    t = Table(title=src.where(), title_justify="left")
    with_bytes = any(m.bytes is not None for m in present)
    for c in ("month", "rows", "row_id range") + (("bytes",) if with_bytes else ()):
        t.add_column(c, justify="right")
    for m in present:
        t.add_row(m.month, f"{m.rows:,}", f"{m.first_row:,}..{m.end_row:,}", *([f"{m.bytes or 0:,}"] if with_bytes else []))
    console.print(t)
    origin = provenance(s.pending_dir)
    pending = src.pending()
    total = present[-1].end_row if present else 0
    span = f"{pending[0]} … {pending[-1]}" if pending else "none"
    plural = "" if len(present) == 1 else "s"
    console.print(f"{len(present)} month{plural}, {total:,} rows in the source; {len(pending)} months pending ({span})")
    for line in origin.describe() if origin else ["pending history: none (reset_data_sources generates one, import_csv imports one)"]:
        console.print(line, highlight=False)
    console.print(f"next month to arrive: {pending[0] if pending else 'none (no more data)'}")
    problems = src.problems()
    if problems:
        from taxifare_flow._core import DataSourceError

        more = f" (and {len(problems) - 1} more: taxifare check lists them)" if len(problems) > 1 else ""
        raise DataSourceError(f"{problems[0]}{more}")


@app.command("show_data_sources")
def show_data_sources() -> None:
    """Months in the source (rows, row_id range, bytes), months pending, the next to arrive."""
    from taxifare_flow.data import open_source

    s = _settings()
    _guard(lambda: _show(s, open_source(s, "local")))


@app.command("get_new_month")
def get_new_month() -> None:
    """The next pending month arrives in the source. Exit status 3 when nothing is pending."""
    from taxifare_flow.data import open_source

    from taxifare_flow.ml_logic.lineage import assert_may_arrive

    s = _settings()

    def bring() -> SourceMonth | None:
        assert_may_arrive(s)
        return open_source(s, "local").bring_next_month()

    _next_month(s, bring, "arrived", "has arrived")


def _next_month(s: Settings, bring: Callable[[], SourceMonth | None], verb: str, where: str) -> None:
    """Brings the next pending month and says so; exit status 3 when nothing is pending. With a
    Prefect server, the arrival is announced to it (`taxifare.month.arrived`)."""
    from taxifare_flow.flow.events import MONTH_ARRIVED, emit_month_arrived

    month = _guard(bring)
    if month is None:
        console.print(f"no more data: every month of the history {where}")
        raise typer.Exit(NO_MORE_DATA)
    console.print(f"{month.month} {verb}: {month.rows:,} rows, row_id {month.first_row:,}..{month.end_row:,}")
    if _guard(lambda: emit_month_arrived(s, month)):
        console.print(f"{MONTH_ARRIVED} sent to the Prefect server", highlight=False)


@app.command("import_csv")
def import_csv(
    path: str = typer.Argument(..., help="a Kaggle-format CSV (train.csv)"),
    replace: bool = typer.Option(False, "--replace", help="replace the pending history if there is one"),
) -> None:
    """Imports a Kaggle-format CSV as the pending history, split into months."""
    from pathlib import Path

    from taxifare_flow.data.history import import_csv as do_import

    s = _settings()
    with _RowsProgress(f"importing {Path(path).name}", in_bytes=True) as report:
        made = _guard(lambda: do_import(s, Path(path), replace=replace, progress=report))
    seconds = time.perf_counter() - report.started
    console.print(f"{len(made.months)} months imported into {s.pending_dir}: {made.rows:,} rows ({made.span()}) "
                  f"in {seconds:.1f} s, {(made.rows_read or 0) / max(seconds, 1e-9):,.0f} rows/s", highlight=False)
    for line in made.describe()[1:]:
        console.print(line.strip(), highlight=False)


def _print_outcome(o: Outcome) -> None:
    if o.status != "trained":
        console.print(f"nothing to do: all {o.end_row:,} rows are trained")
        return
    pre = f"{o.prequential_mae:.3f}" if o.prequential_mae is not None else "n/a (no production model)"
    console.print(
        f"{o.month}: trained rows {o.first_row:,}..{o.end_row:,} → version {o.version}; "
        f"production MAE on the new rows {pre}; holdout MAE challenger {o.holdout_mae_challenger:.3f}"
        + (f" vs production {o.holdout_mae_production:.3f}" if o.holdout_mae_production is not None else "")
        + f"; decision: {o.decision} ({o.reason}); production = version {o.production_version}"
    )


@app.command("run_flow")
def run_flow(accept: bool = typer.Option(False, "--accept", help="train the range even if the data-validation gate refuses it")) -> None:
    """One lifecycle run as a Prefect flow."""
    from taxifare_flow.flow.prefect_flow import run_flow as flow
    from taxifare_flow.validation.step import Acceptance, accept_next

    s = _settings()
    accept_next(Acceptance.now() if accept else None)
    _print_outcome(_guard(lambda: flow(s)))


@app.command("validate")
def validate() -> None:
    """The data-validation gate on the untrained rows, nothing trained: exit 0 pass, 1 refused."""
    from taxifare_flow.validation.command import table_rows, untrained_verdict

    s = _settings()
    verdict = _guard(lambda: untrained_verdict(s))
    if verdict is None:
        console.print("nothing to validate: every row is trained")
        return
    t = Table("check", "value", "threshold", "verdict", box=None, padding=(0, 1))
    for row in table_rows(verdict):
        t.add_row(*row)
    console.print(t)
    console.print(("[red]refused[/red]: " if verdict.refused else "[green]passed[/green]: ") + verdict.line(),
                  soft_wrap=True, highlight=False)
    raise typer.Exit(1 if verdict.refused else 0)


@app.command("serve_flow")
def serve_flow() -> None:
    """Serves the lifecycle as a Prefect deployment: a flow run on the schedule
    PREFECT_FLOW_CRON and one per `taxifare.month.arrived`; stops on Ctrl-C or SIGTERM."""
    from taxifare_flow._core import mask_dsn
    from taxifare_flow.flow.prefect_flow import configure_prefect, server_answers
    from taxifare_flow.ml_logic.store import ready_store

    s = _settings()
    if not s.prefect_api_url:
        err.print("serve_flow needs a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api, "
                  "started with `prefect server start`)", style="red", soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(2)
    _guard(lambda: ready_store(s))
    _guard(lambda: server_answers(s.prefect_api_url))
    configure_prefect(s)
    from taxifare_flow.flow.deployment import DEPLOYMENT_NAME, serve

    schedule = f"cron '{s.prefect_flow_cron}' (UTC)" if s.prefect_flow_cron else "no schedule"
    console.print(f"serving {s.prefect_flow_name}/{DEPLOYMENT_NAME} on {mask_dsn(s.prefect_api_url)}: {schedule}, "
                  "and a run per taxifare.month.arrived (Ctrl-C or SIGTERM stops)", highlight=False, soft_wrap=True)
    _guard(lambda: serve(s))
    console.print("serve_flow stopped")


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _where_to_look(s: Settings) -> None:
    from taxifare_flow._core import mask_dsn

    console.print("\n[bold]where to look[/bold]")
    if _is_server(s.mlflow_tracking_uri):
        console.print(f"  MLflow UI : {mask_dsn(s.mlflow_tracking_uri)}   (the tracking server)")
    else:
        console.print(f"  MLflow UI : taxifare mlflow_ui   (= mlflow ui --backend-store-uri {mask_dsn(s.mlflow_tracking_uri)} --host 127.0.0.1)")
    if s.prefect_api_url:
        console.print(f"  Prefect UI: {mask_dsn(s.prefect_api_url.removesuffix('/api'))}   (flow runs of {s.prefect_flow_name!r})")
    console.print(f"  report    : {s.reports_dir / 'report.html'}  (and report.png, report.csv)")


@app.command("run_all_months")
def run_all_months(months: int = typer.Option(0, help="stop after N months (0 = until no data is left)")) -> None:
    """Months arrive one after the other; each is followed by one lifecycle run (one Prefect flow run, a task run a month)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from taxifare_flow.flow.simulate import pending_work, simulate

    s = _settings()
    from taxifare_flow.data.history import ensure_history

    # BigQuery months come from the local pending history too.
    with _RowsProgress("generating the history") as report:
        _guard(lambda: ensure_history(s, progress=report))
    # One catch-up lifecycle if arrived rows are untrained, then the months actually pending
    # of this history (an 18-month import: 18).
    total = _guard(lambda: pending_work(s))
    if months:
        total = min(total, months)
    started = time.perf_counter()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}"), console=console) as bar:
        job = bar.add_task("months", total=total, info="")
        ticks = _guard(lambda: list(_iter(simulate(s, months or None), bar, job, started)))
        rows = sum(tick.rows for tick in ticks)
    console.print(f"{len(ticks)} lifecycles, {rows:,} rows in {time.perf_counter() - started:.1f} s")
    _where_to_look(s)


def _iter(ticks: Iterable[Tick], bar: Progress, job: TaskID, started: float) -> Iterator[Tick]:
    rows = 0
    for tick in ticks:
        rows += tick.rows
        o = tick.outcome
        mae = f"{o.prequential_mae:.2f}" if o.prequential_mae is not None else "–"
        rate = rows / max(time.perf_counter() - started, 1e-9)
        bar.update(job, advance=1, info=f"{tick.month}  MAE {mae}  {rate:,.0f} rows/s  {o.decision}")
        yield tick


@app.command("report")
def report() -> None:
    """Writes report.png, report.html and report.csv."""
    from taxifare_flow.report import write_report

    s = _settings()
    files = _guard(lambda: write_report(s))
    console.print(f"{files.rows} months → {files.png}\n{files.html}\n{files.csv}")


@app.command("watermark")
def watermark(experiment: str = typer.Option("", help="default: MLFLOW_EXPERIMENT")) -> None:
    """The first untrained row (never imports mlflow). `taxifare watermark` is answered by the
    console script before this CLI loads; this command is the same answer after options such
    as --debug."""
    from taxifare_flow.watermark_command import watermark as answer

    raise typer.Exit(answer(experiment or None))


@app.command("check")
def check(
    deep: bool = typer.Option(False, help="also hash each run's source rows against its lineage_hash"),
    repair: bool = typer.Option(False, help="do the safe repairs first: stale runs, orphan versions, retracted aliases"),
) -> None:
    """Verifies the whole stored state against the guarantees; exit 0 when sound, 1 otherwise."""
    from taxifare_flow.check import check as run_check
    from taxifare_flow.check import describe

    s = _settings()
    findings = _guard(lambda: run_check(s, deep=deep, repair_state=repair))
    t = Table(show_header=False, box=None, padding=(0, 1))
    for ok, what, detail in describe(findings):
        t.add_row("[green]✓[/green]" if ok else ("[red]✗[/red]" if what else ""), what, detail)
    console.print(t)
    sound = all(f.ok for f in findings)
    console.print("sound" if sound else "[red]not sound[/red]: see the lines marked ✗" + ("" if repair else " (taxifare check --repair does the safe repairs)"))
    raise typer.Exit(0 if sound else 1)


@app.command("backfill")
def backfill(
    feature_version: int = typer.Option(0, "--feature-version", help="default: FEATURE_VERSION"),
) -> None:
    """Moves the lineage to another feature version, in one recorded pass over the trained rows.
    The model of that version trained on every trained row becomes the new lineage head
    (watermark and tiling unchanged)."""
    from taxifare_flow.flow.backfill import backfill as run_backfill

    s = _settings()
    done = _guard(lambda: run_backfill(s, feature_version or None))
    if done.status != "backfilled":
        console.print(f"nothing to do: the lineage ({done.end_row:,} rows) already has feature version {done.feature_version}"
                      if done.end_row else "nothing to do: nothing is trained yet (a new lineage starts with FEATURE_VERSION)")
        return
    console.print(f"feature version {done.feature_version}: version {done.version} trained on rows 0..{done.end_row:,} "
                  f"({done.cleaned_rows:,} clean) in {done.seconds:.1f} s, now the lineage head after version "
                  f"{done.previous_head}; production is unchanged until a challenger beats it", highlight=False)


@app.command("unlearn")
def unlearn(
    month: str = typer.Option("", "--month", help="the month of the source to remove, YYYY-MM"),
    rows: str = typer.Option("", "--rows", help="or the row_ids to remove, FIRST..END (END exclusive)"),
) -> None:
    """Removes trained rows (a month, or a row_id range) from the lineage exactly, as a recorded run.
    The new version is the lineage head; production moves to it if it had learnt those rows
    (watermark and tiling unchanged: the rows stay consumed, never trained again)."""
    from taxifare_flow.flow.unlearn import unlearn as run_unlearn

    s = _settings()
    done = _guard(lambda: run_unlearn(s, month or None, rows or None))
    what = f"month {done.month} (rows {done.first_row:,}..{done.end_row:,})" if done.month else \
        f"rows {done.first_row:,}..{done.end_row:,}"
    moved = done.production_before != done.production_after
    console.print(f"{what} unlearnt: {done.removed_rows:,} clean rows of {done.raw_rows:,} removed from version "
                  f"{done.parent_version} → version {done.version} (run {done.run_id}), now the lineage head; "
                  + (f"production → version {done.production_after} ({done.production_reason})" if moved
                     else f"production = version {done.production_after} ({done.production_reason})"),
                  highlight=False, soft_wrap=True)


@app.command("demo")
def demo(months: int = typer.Option(0, help="stop after N months (0 = all)")) -> None:
    """From scratch: fresh local state, every month through the lifecycle, the report."""
    reset_data_sources(fresh=True)
    run_all_months(months)
    report()


@app.command("mlflow_ui")
def mlflow_ui(port: int = typer.Option(5000)) -> None:
    """The MLflow UI on the configured store, bound to 127.0.0.1 (a tracking server: its URL).
    The server is the UI: `mlflow ui --backend-store-uri http://…` cannot start."""
    import os

    from taxifare_flow._core import mask_dsn

    s = _settings()
    if _is_server(s.mlflow_tracking_uri):
        console.print(f"the tracking server serves the MLflow UI: {mask_dsn(s.mlflow_tracking_uri)}")
        return
    from taxifare_flow.ml_logic.store import ready_store

    # Created whole here: the UI would migrate a new SQLite file in place, and a UI stopped
    # part-way leaves a half-migrated store every other command trips over.
    _guard(lambda: ready_store(s))
    cmd = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(port)]
    if s.tracking_is_embedded:
        cmd += ["--default-artifact-root", s.artifact_location]
    # Through the environment (mlflow's own variable), not argv: a PostgreSQL URI's password
    # would show in `ps`.
    raise typer.Exit(subprocess.call(cmd, env={**os.environ, "MLFLOW_BACKEND_STORE_URI": s.mlflow_tracking_uri}))


@app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def psql(ctx: typer.Context) -> None:
    """psql on the PostgreSQL tracking DB, the password kept off its command line. The DB is
    MLFLOW_TRACKING_DB or MLFLOW_DB_*; the password goes in psql's PGPASSWORD. Extra arguments go to psql:
    `taxifare psql -c "select count(*) from runs"`."""
    from taxifare_flow.psql import exec_psql, psql_command

    s = _settings()
    command = _guard(lambda: psql_command(s, list(ctx.args)))
    sys.stdout.flush()
    sys.stderr.flush()
    _guard(lambda: exec_psql(command))


@app.command("reset_bq_tables")
def reset_bq_tables() -> None:
    """(Re)creates the BigQuery dataset and table with an explicit schema, empty."""
    from taxifare_flow.data import open_source

    s = _settings()
    console.print(_guard(lambda: open_source(s, "bigquery").reset()))


@app.command("show_bq_tables")
def show_bq_tables() -> None:
    """Months in BigQuery (rows, row_id range) and months pending."""
    from taxifare_flow.data import open_source

    s = _settings()
    _guard(lambda: _show(s, open_source(s, "bigquery")))


@app.command("push_month_to_bq")
def push_month_to_bq() -> None:
    """Loads the next pending month into BigQuery. Exit status 3 when nothing is pending."""
    from taxifare_flow.data import open_source

    from taxifare_flow.ml_logic.lineage import assert_may_arrive

    s = _settings()

    def bring() -> SourceMonth | None:
        assert_may_arrive(s)
        return open_source(s, "bigquery").bring_next_month()

    _next_month(s, bring, "loaded", "is in BigQuery")


@app.command("bq_cost")
def bq_cost() -> None:
    """What the next lifecycle would bill in BigQuery, from dry runs: nothing runs, nothing is
    billed. BQ_COMPUTE decides which queries."""
    from taxifare_flow.data.bigquery import BigQuerySource
    from taxifare_flow.ml_logic.watermark import get_latest_trained_row

    s = _settings()

    def estimate() -> None:
        source = BigQuerySource(s)
        w, t = get_latest_trained_row(settings=s), source.row_count()
        if t <= w:
            console.print(f"nothing to train: all {t:,} rows of {source.where()} are trained")
            return
        h = t - int((t - w) * s.holdout_fraction)
        costs = source.lifecycle_cost(w, t, h, s.feature_version)
        console.print(f"next lifecycle: rows {w:,}..{t:,} of {source.where()}, BQ_COMPUTE={s.bq_compute}", soft_wrap=True)
        table = Table()
        for col in ("query", "bytes (dry run)", "USD"):
            table.add_column(col, justify="left" if col == "query" else "right")
        for c in costs:
            table.add_row(c.what, f"{c.bytes:,}", f"{c.usd:.4f}")
        console.print(table)
        cap = s.bq_max_bytes_billed
        over = [c.what for c in costs if cap is not None and c.bytes > cap]
        console.print(f"BQ_MAX_BYTES_BILLED={cap:,}: " + (f"[red]refused[/red] ({', '.join(over)} over the cap)" if over else "under the cap")
                      if cap is not None else "no byte cap (BQ_MAX_BYTES_BILLED=0)")

    _guard(estimate)


@app.command("api")
def api(
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, help="port to listen on"),
) -> None:
    """The prediction API (FastAPI on uvicorn) on the production model: GET /predict with the
    course's query parameters, POST /predict of a batch, GET /health, GET /model."""
    from taxifare_flow.api import serve
    from taxifare_flow.ml_logic.store import ready_store

    s = _settings()
    # A wrong store is one line now, not a 503 after start.
    _guard(lambda: ready_store(s))
    console.print(f"serving {s.mlflow_model_name!r}@production on http://{host}:{port} "
                  f"(the alias is re-read every {s.api_refresh_seconds:g} s; Ctrl-C stops)", highlight=False)
    _guard(lambda: serve(s, host, port))


class _OneLinePerFailure(logging.Filter):
    """Prefect logs a failed task and flow with the traceback at ERROR; the command prints the
    failure as its one line (or Python's traceback for a bug), so those records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name in ("prefect.flow_runs", "prefect.task_runs") and record.levelno >= logging.ERROR)


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="tracebacks and INFO logs (also TAXIFARE_DEBUG=1)")) -> None:
    if debug:
        os.environ["TAXIFARE_DEBUG"] = "1"
        logging.getLogger().setLevel(logging.INFO)
        for handler in logging.getLogger().handlers:
            handler.filters.clear()


def main() -> None:
    # MLflow logs table creation and migrations at INFO; the CLI shows warnings and up.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.basicConfig(level=logging.INFO if debug() else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug():
        for handler in logging.getLogger().handlers:
            handler.addFilter(_OneLinePerFailure())
        # MLflow logs every failed database write with its traceback at ERROR (through its own
        # handler) before raising it: the command reports the failure as its one line.
        logging.getLogger("mlflow.store.db.utils").addFilter(lambda record: record.levelno < logging.ERROR)
    app()


if __name__ == "__main__":
    main()
