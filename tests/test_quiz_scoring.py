"""`ganji quiz` scores: fool rates and their bootstrap intervals on known answers, `--report` pooling
every session (per reader), and the "fooled" column of `ganji compare`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from quiz_support import GAN, VAE, synthetic_session
from rich.console import Console
from cli_support import cli, one_line_error, succeeded

from ganji.quiz.deck import REAL_SOURCE
from ganji.quiz.scoring import Rate, bootstrap_interval, run_fool_rates, score
from ganji.quiz.session import Answer


def answers(source, called_real: int, total: int) -> list[Answer]:
    return [Answer(i, source, "real" if i < called_real else "fake", 1000, "t") for i in range(total)]


def test_fool_rate_and_interval_on_known_answers() -> None:
    scores = score(answers(VAE, 3, 10) + answers(GAN, 8, 10) + answers(REAL_SOURCE, 9, 12), order=[GAN, VAE])
    assert [g.source for g in scores.generators] == [GAN, VAE]  # the deck's order of generators
    vae = next(g.fooled for g in scores.generators if g.source == VAE)
    assert (vae.hits, vae.total, vae.value) == (3, 10, 0.3)
    assert vae.low < 0.3 < vae.high and 0.0 <= vae.low and vae.high <= 0.7
    assert scores.real.value == 0.75 and scores.answers == 32
    assert scores.accuracy.hits == 9 + 7 + 2
    # Deterministic: the same answers always give the same interval.
    assert bootstrap_interval(3, 10) == bootstrap_interval(3, 10) == (vae.low, vae.high)
    # The percentile bootstrap of resampled answer lists, done the long way, agrees.
    outcomes = np.array([1] * 3 + [0] * 7)
    rng = np.random.default_rng(1)
    rates = outcomes[rng.integers(0, 10, size=(20_000, 10))].mean(axis=1)
    assert np.allclose(np.percentile(rates, [2.5, 97.5]), (vae.low, vae.high), atol=0.1 + 1e-9)
    # All fooled, none fooled: the interval collapses on the rate; more answers, a narrower interval.
    assert bootstrap_interval(10, 10) == (1.0, 1.0) and bootstrap_interval(0, 10) == (0.0, 0.0)
    wide, narrow = bootstrap_interval(5, 10), bootstrap_interval(500, 1000)
    assert narrow[1] - narrow[0] < wide[1] - wide[0] and narrow[0] < 0.5 < narrow[1]
    assert Rate.of(24 * 38 // 100, 24).text() == "38% (24)"


def play(session, said: str) -> None:
    for card, answer in enumerate(said):
        session.record(card, {"r": "real", "f": "fake"}[answer], 500 + card)


def test_report_pools_every_session_and_per_reader(home: Path, capsys: pytest.CaptureFixture) -> None:
    one_line_error(cli(capsys, "quiz", "--report"), "no quiz answers")
    ann = synthetic_session(home, n=6, seed=0, reader="ann")
    bob = synthetic_session(home, n=6, seed=1, reader="bob")
    play(ann, "rrrrrr")
    play(bob, "fff")  # unfinished sessions count too: every answer given
    out, _ = succeeded(cli(capsys, "quiz", "--report", "--json"))
    pooled = json.loads(out)
    assert pooled["answers"] == 9 and pooled["sessions"] == 2 and pooled["readers"] == ["ann", "bob"]
    out, _ = succeeded(cli(capsys, "quiz", "--report", "--json", "--reader", "ann"))
    only = json.loads(out)
    assert only["answers"] == 6 and only["real_accuracy"]["rate"] == 1.0
    assert {g["model"]: g["fooled"]["rate"] for g in only["generators"]} == {"vae": 1.0, "gan": 1.0}
    out, _ = succeeded(cli(capsys, "quiz", "--report"))
    assert "vae (run r)" in out and "fool rate" in out and "9 answers, 2 sessions" in out
    one_line_error(cli(capsys, "quiz", "--report", "--reader", "carl"), "no quiz answers by carl")
    one_line_error(cli(capsys, "quiz", "--report", "vae"), "--report pools the saved answers: leave out MODEL")
    # A damaged session is left out with a note, never a traceback.
    (bob.path / "answers.jsonl").write_text("{not json\n")
    out, err = succeeded(cli(capsys, "quiz", "--report", "--json"))
    assert json.loads(out)["answers"] == 6 and "left out quiz session" in err


def _row(model: str, run: str = "r"):
    from ganji.metrics.protocol import Score
    from ganji.report.study import RunSummary

    score_ = Score(model=model, run=run, n=10, extractor="kanji", fid=1.0, kid=1.0, kid_std=0.1, precision=0.5, recall=0.5,
                   novelty_copies=0.0, nn_distance=1.0, seconds=1.0, dataset="k16")
    return RunSummary(model=model, run=run, config="tiny", parameters=10, epochs=1.0, train_seconds=60.0, images_per_s=1.0,
                      device="cpu", sample_10k_seconds=1.0, score=score_)


def _render(table) -> str:
    console = Console(width=300, record=True)
    console.print(table)
    return console.export_text()


def test_compare_has_a_fooled_column_only_where_answers_exist(home: Path) -> None:
    from ganji.cli.compare import result_table
    from ganji.report.study import add_quiz_scores, markdown

    rows = [_row("vae"), _row("gan")]
    assert add_quiz_scores(home, rows) == [] and all(r.fooled is None for r in rows)
    plain_table, plain_md = _render(result_table(rows)), markdown(rows, None, ["cpu"], "now", [])
    assert "fooled" not in plain_table and "fooled" not in plain_md.lower() and "fooled" not in rows[0].to_json()

    session = synthetic_session(home, n=8, seed=0, generators=(VAE,))  # answers on vae/r only
    said = {True: "fake", False: "real"}  # every vae card called real, every real card fake
    for card in session.deck.cards:
        session.record(card.index, said[card.source.real], 700)
    rates, _ = run_fool_rates(home)
    assert set(rates) == {("vae", "r")}
    add_quiz_scores(home, rows)
    assert rows[0].fooled is not None and rows[1].fooled is None
    assert rows[0].fooled.text() == "100% (4)"
    table = _render(result_table(rows))
    assert "fooled" in table and "100% (4)" in table
    md = markdown(rows, None, ["cpu"], "now", [])
    vae_line, gan_line = (line for line in md.splitlines() if line.startswith(("| vae |", "| gan |")))
    assert "| fooled |" in md and vae_line.endswith("| 100% (4) |") and gan_line.endswith("% | - |")  # gan: no answers
    data = rows[0].to_json()
    assert data["fooled"] == 1.0 and data["fooled_answers"] == 4 and "fooled" not in rows[1].to_json()


def test_compare_command_shows_the_fooled_column(home: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """The command's own table, with the measuring stubbed out (tests/test_compare.py measures for real)."""
    import ganji.features.extractors
    import ganji.report.study

    run = home / "runs" / "vae" / "r"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"created": 1}')
    monkeypatch.setattr(ganji.features.extractors, "load_extractor", lambda *a, **k: None)
    monkeypatch.setattr(ganji.report.study, "measure", lambda *a, **k: ([_row("vae")], []))
    monkeypatch.setattr(ganji.report.study, "measure_references", lambda *a, **k: ([], []))
    monkeypatch.setattr(ganji.report.study, "write_report", lambda *a, **k: [tmp_path / "comparison.md", tmp_path / "x.png"])
    out, _ = succeeded(cli(capsys, "compare", "-q", "-o", str(tmp_path)))
    assert "fooled" not in out
    session = synthetic_session(home, n=4, seed=0, generators=(VAE,))
    for card in session.deck.cards:
        session.record(card.index, "real", 700)
    out, _ = succeeded(cli(capsys, "compare", "-q", "-o", str(tmp_path)))
    assert "fooled" in out and "100% (2)" in out
    out, _ = succeeded(cli(capsys, "compare", "-q", "--json", "-o", str(tmp_path)))
    assert json.loads(out)[0]["fooled_answers"] == 2
