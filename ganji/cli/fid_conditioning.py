"""`ganji fid MODEL --condition components`: how well a component-conditioned run does what it is asked."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ganji.cli.output import stage_progress
from ganji.console import console

RESULTS_FILE = "conditioning.json"  # in the run folder: the latest measurement


def measure_conditioning(home: Path, model: str, run: str | None, per_request: int, guidance: float | None, seed: int,
                         sampler: str | None, steps: int | None, batch_size: int, device: str, picture: Path | None,
                         as_json: bool, quiet: bool, guide_run: str | None = None, classifier_guidance: float | None = None,
                         best_of: int | None = None) -> None:
    from ganji.atomic import write_json_atomic
    from ganji.data.components import join_pair
    from ganji.metrics.conditioning import RequestScore, evaluate_conditioning

    if picture is not None:
        from ganji.images import image_format

        image_format(picture)  # a bad name fails before minutes of sampling
    progress, _ = stage_progress(quiet)
    with progress:
        task = progress.add_task(f"requests to {model}", total=None)
        score, extra = evaluate_conditioning(home, model, run, per_request=per_request, guidance=guidance, seed=seed, sampler=sampler,
                                             steps=steps, batch_size=batch_size, device=device,
                                             on_request=lambda _r: progress.advance(task), guide_run=guide_run,
                                             classifier_scale=classifier_guidance, best_of=best_of)
    held = set(extra["held_out"])  # pairs whose kanji the run never saw (`ganji train --hold-out-requests`)

    def kind_label(s: RequestScore) -> str:
        return f"{s.request.kind}, held out" if join_pair(s.request.keys) in held else s.request.kind

    used = extra["sampler"]  # resolved: the model's default where --sampler/--steps were not given
    result = {"model": model, "run": extra["run"].name, "step": extra["step"], "seed": seed, "guide_run": extra["guide_run"],
              "classifier_guidance": extra["classifier_guidance"], "best_of": extra["best_of"],
              **used.fields,
              "held_out": extra["held_out"], **score.to_json()}
    write_json_atomic(extra["run"].path / RESULTS_FILE, result)
    if picture is not None:
        from ganji.report.figures import conditioning_figure

        dataset = extra["dataset"]
        rows = [(f"{s.request.label} ({kind_label(s)}{', like ' + s.request.example if s.request.example else ''}): "
                 f"hit {100 * s.hit_rate:.0f}% (unasked {100 * s.chance:.0f}%)", extra["samples"][s.request.keys], dataset.images[s.nearest])
                for s in score.requests if s.request.kind != "single"]
        conditioning_figure(rows, picture)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    guided = f" guided by {extra['guide_run']}" if extra["guide_run"] else ""
    if extra["classifier_guidance"]:
        guided += f", classifier guidance {extra['classifier_guidance']:g}"
    if extra["best_of"] > 1:
        guided += f", best of {extra['best_of']}"
    held_note = f"; the kanji of {len(held)} pairs held out of training" if held else ""
    table = Table(title=f"{model} run {extra['run'].name}: component requests,{guided} guidance {score.guidance:g}, sampler {used.label}, "
                        f"{per_request} samples each{held_note}")
    numbers = ("hit rate", "each key", "real parts", "real kanji", "unasked", "nearest has", "nearest, unasked", "novel")
    for col in ("request", "kind", "like", *numbers):
        table.add_column(col, justify="right" if col in numbers else "left")
    for s in score.requests:
        table.add_row(s.request.label, kind_label(s), s.request.example, f"{100 * s.hit_rate:.0f}%",
                      " · ".join(f"{100 * v:.0f}%" for v in s.found_each),
                      *("–" if v is None else f"{100 * v:.0f}%" for v in (s.real_hit_rate, s.real_kanji_hit_rate)),
                      *(f"{100 * v:.0f}%" for v in (s.chance, s.nearest_has, s.nearest_chance, s.novelty)))
    console.print(table)
    console.print("hit rate: ComponentNet finds every asked-for key (each key: each one alone); real parts: the same for the "
                  "dataset's own renderings with those keys (for a pair, one real kanji's first part beside another's second), "
                  "the most ComponentNet reads; real kanji: the same for the dataset's kanji that have both parts; "
                  "nearest has: the sample's nearest real kanji has them; unasked: the same for the model's unconditional "
                  "samples (guidance 0)")
    def fewer(v: dict[str, float], requests: str, model_there: str) -> str:
        """Where a reference covers only some of a kind's requests: how many, and the model's hit rate on those."""
        return "" if v[requests] == v["requests"] else f" (over {v[requests]:.0f} requests; the model there {100 * v[model_there]:.1f}%)"

    for kind, v in score.by_kind().items():
        parts = (f", first part found {100 * v['first_found']:.1f}%, second {100 * v['second_found']:.1f}%"
                 if "first_found" in v else "")
        if "real_hit_rate" in v:
            real_each = (f": first part {100 * v['real_first_found']:.1f}%, second {100 * v['real_second_found']:.1f}%"
                         if "real_first_found" in v else "")
            parts += f", real parts {100 * v['real_hit_rate']:.1f}%{real_each}" + fewer(v, "real_requests", "hit_rate_where_real")
        if "real_kanji_hit_rate" in v:
            parts += f", real kanji {100 * v['real_kanji_hit_rate']:.1f}%" + fewer(v, "real_kanji_requests", "hit_rate_where_real_kanji")
        name = f"{kind}, held out" if kind == "existing" and held else kind
        console.print(f"{name}: hit rate {100 * v['hit_rate']:.1f}% (unasked {100 * v['chance']:.1f}%){parts}, nearest has "
                      f"{100 * v['nearest_has']:.1f}% (unasked {100 * v['nearest_chance']:.1f}%), novelty {100 * v['novelty']:.1f}% "
                      f"over {v['requests']:.0f} requests")
    if score.fid_conditioned is not None:
        console.print(f"FID against {score.real_n} real kanji with the asked-for component: conditioned {score.fid_conditioned:.1f}, "
                      f"unconditioned (guidance 0) {score.fid_unconditioned:.1f}")
    if picture is not None:
        console.print(f"wrote {picture}")
