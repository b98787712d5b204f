"""`ganji quiz`: do people take our kanji for real? A HYPE-∞ quiz in the browser or the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ganji.cli import app
from ganji.cli.options import SAMPLERS_HELP, HomeOption
from ganji.cli.output import stage_progress
from ganji.console import console, err_console
from ganji.errors import GanjiError
from ganji.home import resolve_home
from ganji.recipes import model_names

if TYPE_CHECKING:
    from ganji.quiz.scoring import Scores
    from ganji.quiz.session import Session

DEFAULT_N = 40
MAX_PORT = 65_535


def _complete_model(incomplete: str) -> list[str]:
    return [m for m in model_names() if m.startswith(incomplete)]


def scores_table(scores: Scores, title: str) -> Table:
    """Each generator's fool rate with its interval, then the reader's accuracy on real cards."""
    table = Table(title=title, caption="fool rate: the share called real (50% = people cannot tell; HYPE-∞)")
    for c in ("source", "cards", "called real", "fool rate", "95% interval"):
        table.add_column(c, justify="left" if c == "source" else "right")
    for g in scores.generators:
        if g.fooled.total:
            f = g.fooled
            table.add_row(g.source.label, str(f.total), str(f.hits), f"{100 * f.value:.0f}%", f.interval_text())
    r = scores.real
    if r.total:
        table.add_row("real kanji (accuracy)", str(r.total), str(r.hits), f"{100 * r.value:.0f}%", r.interval_text(), style="dim")
    return table


def cards_table(session: Session) -> Table:
    table = Table(title="what each card was")
    for c in ("card", "was", "you said", ""):
        table.add_column(c)
    for a in session.answers:
        table.add_row(a.id, a.source.label, a.answer, "[green]right[/]" if a.correct else "[red]wrong[/]")
    return table


def _refuse(given: dict[str, object], why: str) -> None:
    names = [name for name, value in given.items() if value not in (None, False, [], ())]
    if names:
        raise GanjiError(f"{why}: leave out {', '.join(names)}")


@app.command("quiz")
def quiz_command(
    models: Annotated[list[str] | None, typer.Argument(metavar="MODEL", help="Models to quiz \\[default: every model with a run]; with --resume, the session to continue \\[default: the latest unfinished].", show_default=False, autocompletion=_complete_model)] = None,
    runs: Annotated[str | None, typer.Option(help="Runs to quiz, e.g. gan=r1,ddpm=r2 \\[default: each model's latest].", show_default=False)] = None,
    images: Annotated[Path | None, typer.Option(help="Also (or only) quiz this folder (or zip) of generated images.", show_default=False)] = None,
    dataset: Annotated[str | None, typer.Option(help="The real cards' dataset when only --images is quizzed \\[default: kanji; otherwise the runs' own].", show_default=False)] = None,
    n: Annotated[int | None, typer.Option("--n", help=f"Cards: half real, half generated, split evenly over the models \\[default: {DEFAULT_N}].", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help="Seed: the same seed gives the same deck \\[default: 0].", show_default=False)] = None,
    sampler: Annotated[str | None, typer.Option(help=f"Sampler of the iterative models that have it ({SAMPLERS_HELP}) \\[default: each model's fast one].", show_default=False)] = None,
    steps: Annotated[int | None, typer.Option(help="Steps of a step-choosing sampler.", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (to generate the cards).")] = "auto",
    terminal: Annotated[bool, typer.Option("--terminal", help="In the terminal (glyphs in half blocks; keys r, f, q) instead of the browser.")] = False,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the quiz in the web browser (--no-open: print its address).")] = True,
    host: Annotated[str, typer.Option(help="Address to listen on (another than 127.0.0.1 lets other machines answer).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one).")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted quiz: the latest unfinished one, or the SESSION given.")] = False,
    report: Annotated[bool, typer.Option("--report", help="Scores of every session's answers pooled (per reader with --reader).")] = False,
    reader: Annotated[str | None, typer.Option(help="Who answers (saved with the session); with --report, only their sessions.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --report: print JSON instead of the table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    home: HomeOption = None,
) -> None:
    """Do people take the kanji for real? A quiz of real and generated kanji (HYPE-∞), scored per model."""
    from ganji.quiz.session import check_reader

    models = list(models or [])
    if reader is not None:
        check_reader(reader)
    if not 0 <= port <= MAX_PORT:
        raise GanjiError(f"--port must be between 0 and {MAX_PORT} (got {port})")
    deck_options = {"--runs": runs, "--images": images, "--dataset": dataset, "--n": n, "--seed": seed, "--sampler": sampler,
                    "--steps": steps}
    if as_json and not report:
        raise GanjiError("--json goes with --report")
    root = resolve_home(home)
    if not (report or terminal):
        from ganji.quiz.server import check_address

        check_address(host, port)  # before a deck is drawn
    if report:
        _refuse({"MODEL": models, **deck_options, "--resume": resume, "--terminal": terminal}, "--report pools the saved answers")
        return _report(root, reader, as_json)
    if resume:
        _refuse(deck_options, "--resume continues a saved deck")
        if len(models) > 1:
            raise GanjiError(f"--resume continues one session (got {' '.join(models)})")
        from ganji.quiz.session import find_session

        session = find_session(root, models[0] if models else None)
        if reader is not None and reader != session.deck.reader:
            raise GanjiError(f"quiz session {session.name} is {session.deck.reader or 'nobody'}'s: leave out --reader")
    else:
        session = _new_session(root, models, runs, images, dataset, DEFAULT_N if n is None else n, seed or 0, sampler, steps,
                               device, reader, quiet)
    _take(session, terminal, open_browser, host, port, resumed=resume)


def _new_session(root: Path, models: list[str], runs: str | None, images: Path | None, dataset: str | None, n: int, seed: int,
                 sampler: str | None, steps: int | None, device: str, reader: str | None, quiet: bool) -> Session:
    """Draw, shuffle and save a new deck (the models' samples drawn with a progress bar)."""
    from ganji.cli.compare import parse_runs
    from ganji.quiz.deck import check_deck_size
    from ganji.runtime.config import MAX_SEED

    if not 0 <= seed <= MAX_SEED:
        raise GanjiError(f"--seed must be between 0 and {MAX_SEED:,} (got {seed})")
    if dataset is not None:
        from ganji.data.store import check_dataset_name

        check_dataset_name(dataset)
    from ganji.quiz.sources import resolve_sources

    sources = resolve_sources(root, models, parse_runs(runs), images)
    check_deck_size(n, len(sources))  # before any model is loaded
    from ganji.quiz.deck import shuffle
    from ganji.quiz.session import create_session
    from ganji.quiz.sources import draw_deck

    progress, track = stage_progress(quiet, remaining=False)

    with progress:
        drawn = draw_deck(root, sources, n, seed, dataset=dataset, sampler=sampler, steps=steps, device=device, track=track)
    session = create_session(root, shuffle(drawn.drawn, seed), seed=seed, dataset=drawn.dataset, size=drawn.size, reader=reader,
                             generators=drawn.generators)
    split = ", ".join(f"{g['cards']} {Path(g['run']).name if g['model'] == 'images' else g['model']}" for g in drawn.generators)
    err_console.print(f"quiz session {session.name}: {n} cards, {n // 2} real from {drawn.dataset!r} and {split}; in {session.path}",
                      highlight=False, soft_wrap=True)
    return session


def _take(session: Session, terminal: bool, open_browser: bool, host: str, port: int, resumed: bool = False) -> None:
    """Hold the session's lock while the reader answers; then the scores. Ctrl-C keeps every answer given."""
    from ganji.quiz.scoring import score

    lock = session.lock()
    if resumed:
        from ganji.quiz.session import load_session

        try:  # read again under the lock: a process that held it until now may have saved more answers
            session = load_session(session.path)
        except BaseException:
            lock.release()
            raise
        if session.finished:
            lock.release()
            raise GanjiError(f"quiz session {session.name} was finished meanwhile: see the scores with `ganji quiz --report`")
        err_console.print(f"resuming quiz session {session.name}: card {len(session.answers) + 1} of {session.total}")
    try:
        finished = _in_terminal(session) if terminal else _in_browser(session, open_browser, host, port)
    except KeyboardInterrupt:
        finished = None
    finally:
        lock.release()
    if finished is not True:
        if terminal:
            console.print()  # off the line of keys
        given = len(session.answers)
        err_console.print(f"stopped at card {given + 1} of {session.total}: {given} answer{'s' * (given != 1)} saved in "
                          f"{session.answers_path}; `ganji quiz --resume {session.name}` continues", highlight=False, soft_wrap=True)
    if session.answers:
        console.print(scores_table(score(session.answers, session.deck.sources), f"quiz session {session.name}"))
        if terminal and finished:
            console.print(cards_table(session))
    if finished is None:
        raise typer.Exit(130)


def _in_terminal(session: Session) -> bool:
    from ganji.quiz.terminal import KeyReader, play

    with KeyReader() as keys:
        return play(session, console, keys)


def _in_browser(session: Session, open_browser: bool, host: str, port: int) -> bool:
    import webbrowser

    from ganji.quiz.server import QuizApp, address, make_server, serve

    app_ = QuizApp(session)
    server = make_server(app_, host, port)
    url = address(server, app_)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"listening on {host}: anyone who can reach it and has the address can answer", highlight=False)
    opened = open_browser and webbrowser.open(url)
    console.print(f"{'opened' if opened else 'open'} {url}", highlight=False, soft_wrap=True)
    err_console.print("the quiz ends when its results are shown; Ctrl-C stops it (every answer is saved as you give it)", highlight=False)
    console.file.flush()
    serve(server, app_)
    return session.finished


def _report(root: Path, reader: str | None, as_json: bool) -> None:
    from ganji.quiz.scoring import pooled
    from ganji.quiz.session import quiz_dir

    scores, notes = pooled(root, reader)
    for note in notes:
        err_console.print(note, highlight=False, soft_wrap=True)
    if not scores.answers:
        whose = f" by {reader}" if reader else ""
        raise GanjiError(f"no quiz answers{whose} in {quiz_dir(root)}: take a quiz with `ganji quiz`")
    if as_json:
        typer.echo(json.dumps(scores.to_json(), indent=2))
        return
    readers = ", ".join(scores.readers) or "unnamed"
    console.print(scores_table(scores, f"ganji quiz: {scores.answers} answers, {scores.sessions} sessions, readers: {readers}"))
