"""Component-conditioned DDPM and flow (`--condition components`) with classifier-free guidance (CPU, 16 px)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_kanji, sample_images

from ganji.data.components import ANY, split_key, split_pair
from ganji.data.store import load_dataset, save_dataset
from ganji.errors import GanjiError
from ganji.features.component_mix import MadeUpKanji
from ganji.features.component_net import load_component_net
from ganji.home import datasets_dir
from ganji.metrics.conditioning import held_out_pairs
from ganji.models.unet import UNet, UNetConfig
from ganji.recipes import spec
from ganji.recipes.flow import TIME_SCALE
from ganji.runtime.checkpoint import read_safetensors_header
from ganji.runtime.device import choose_precision
from ganji.runtime.distributed import World
from ganji.sampling import SampleRequest, load_model
from ganji.train.loop import epoch_permutation, normalise
from ganji.train.start import train

TINY = {"dataset": "kanji16", "epochs": 1, "batch_size": 16, "log_every": 1, "sample_every": 0, "lr": 1e-3}
FLOW = {"base_width": 8}
DDPM = {"base_width": 4, "timesteps": 16}
CPU = choose_precision(True, torch.device("cpu"), "fp32", False, "default")


def ganji(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GANJI_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ganji", *args], env=env, capture_output=True, text=True, timeout=300)


def cpu_recipe(model: str, vocabulary: tuple[str, ...] = (), **options):
    """A model's recipe on the CPU for 16 px images, built without a run (conditional with a vocabulary)."""
    if vocabulary:
        options = {"condition": "components", "vocabulary": vocabulary, **options}
    cfg = spec(model).config(spec(model).options(**options), dataset="x", epochs=1)
    return spec(model).recipe_class()(cfg, 16, 1, 10, CPU)


def labelled(home: Path, name: str = "labelled16", n: int = 64) -> Path:
    """A small dataset of kanji images with made-up component labels over a five-key vocabulary."""
    make_kanji(home, name="kanji16", size=16, limit=n)
    images = load_dataset(home, "kanji16").images
    rows = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 1, 1, 0], [0, 1, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=torch.uint8)
    components = rows[torch.arange(len(images)) % len(rows)]
    vocabulary = ["a:left", "a:any", "b:right", "b:any", "c:any"]
    save_dataset(datasets_dir(home) / name, images, {"source": "test", "components": {"vocabulary": vocabulary}}, components=components)
    return datasets_dir(home) / name


def positioned(vocabulary: list[str]) -> list[str]:
    """The vocabulary's position keys ("亻:left"), most frequent first."""
    return [k for k in vocabulary if split_key(k)[1] != ANY]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conditional flow (c), an unconditional flow (u) and a conditional DDPM (d), a few steps each,
    on 16 px kanji with component labels."""
    home = tmp_path_factory.mktemp("home")
    make_kanji(home, name="kanji16", size=16, limit=400)
    train(home, "flow", {**TINY, "max_steps": 6, "options": {**FLOW, "condition": "components"}}, run_name="c")
    train(home, "flow", {**TINY, "max_steps": 2, "options": FLOW}, run_name="u")
    train(home, "ddpm", {**TINY, "max_steps": 3, "options": {**DDPM, "condition": "components"}}, run_name="d")
    return home


def test_null_label_is_the_unconditional_network() -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=16, base_width=4, condition_dim=5)).eval()
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([1, 50, 900])
    assert torch.equal(net(x, t), net(x, t, torch.zeros(3, 5)))  # no biases: y = 0 adds exactly zero
    assert not torch.allclose(net(x, t), net(x, t, torch.eye(5)[:3]))
    assert all(m.bias is None for m in net.condition if isinstance(m, torch.nn.Linear))
    blocks = [*net.down, *net.bottleneck, *net.up]
    assert all(block.film is not None and block.film.bias is None for block in blocks)
    # FiLM starts as the identity; trained, it scales and shifts, and still not for the null label.
    before = net(x, t, torch.eye(5)[:3])
    with torch.no_grad():
        for block in blocks:
            block.film.weight.normal_()
    assert torch.equal(net(x, t), net(x, t, torch.zeros(3, 5)))
    assert not torch.allclose(before, net(x, t, torch.eye(5)[:3]))
    torch.manual_seed(0)
    plain = UNet(UNetConfig(image_size=16, base_width=4))
    assert not hasattr(plain, "condition")  # the paper's U-Net has no conditioning module
    # The conditioning layers are made last: from one seed every other weight is the paper's U-Net's.
    mine = {k: v for k, v in net.state_dict().items() if not k.startswith("condition.") and ".film." not in k}
    assert mine.keys() == plain.state_dict().keys() and all(torch.equal(v, plain.state_dict()[k]) for k, v in mine.items())


def test_region_maps_keep_the_null_label_the_unconditional_network() -> None:
    """--component-regions: per-pixel scale and shift from the keys' region maps, no biases either."""
    positions = ("left", "any", "right", "top", "none")
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=16, base_width=4, condition_dim=5, condition_positions=positions)).eval()
    blocks = [*net.down, *net.bottleneck, *net.up]
    assert net.regions is not None and all(b.region_film is not None and b.region_film.bias is None for b in blocks)
    x, t, left = torch.randn(2, 1, 16, 16), torch.tensor([3, 700]), torch.eye(5)[[0, 0]]
    before = net(x, t, left)
    with torch.no_grad():  # as if trained
        for block in blocks:
            block.film.weight.normal_()
            block.region_film.weight.normal_()
    assert torch.equal(net(x, t), net(x, t, torch.zeros(2, 5)))
    assert not torch.allclose(before, net(x, t, left))
    # The region layers are made after the rest: without them, the global-only conditional U-Net.
    torch.manual_seed(0)
    plain = UNet(UNetConfig(image_size=16, base_width=4, condition_dim=5)).state_dict()
    mine = {k: v for k, v in net.state_dict().items() if not k.startswith("regions.") and ".region_film." not in k}
    assert mine.keys() == plain.keys()
    with pytest.raises(ValueError, match="one position per key"):
        UNetConfig(image_size=16, base_width=4, condition_dim=4, condition_positions=positions)


def test_run_keeps_its_vocabulary_and_samples_without_the_dataset(trained: Path) -> None:
    vocabulary = load_dataset(trained, "kanji16").component_vocabulary
    assert len(vocabulary) >= 4
    run = trained / "runs" / "flow" / "c"
    assert json.loads((run / "config.json").read_text())["config"]["options"]["vocabulary"] == vocabulary
    tensors, metadata = read_safetensors_header(run / "checkpoint.safetensors")
    assert json.loads(metadata["ganji"])["config"]["options"]["vocabulary"] == vocabulary
    assert tensors["net.unet.condition.0.weight"].shape == (256, len(vocabulary))
    plain, _ = read_safetensors_header(trained / "runs" / "flow" / "u" / "checkpoint.safetensors")
    assert not any("condition" in k for k in plain)  # an unconditional run's checkpoint keys are the paper's
    hidden = trained / ".datasets-away"
    datasets_dir(trained).rename(hidden)  # sampling needs the run, not the dataset
    try:
        loaded = load_model(trained, "flow", "c", device="cpu")
        images = sample_images(loaded, 4, sampler="euler", steps=3, with_keys=[positioned(vocabulary)[0]])
        assert images.shape == (4, 1, 16, 16)
    finally:
        hidden.rename(datasets_dir(trained))


@pytest.mark.parametrize(("model", "run", "sampler", "steps"), [("flow", "c", "heun", 3), ("ddpm", "d", "ancestral", None)])
def test_guidance_zero_is_the_unconditional_output_bit_for_bit(trained: Path, model: str, run: str, sampler: str, steps: int | None) -> None:
    loaded = load_model(trained, model, run, device="cpu")
    vocabulary = loaded.recipe.cfg.options.vocabulary
    first, second = positioned(vocabulary)[0], next(k for k in vocabulary if split_key(k)[0] != split_key(positioned(vocabulary)[0])[0])

    def draw(**request) -> torch.Tensor:
        return sample_images(loaded, 6, sampler=sampler, steps=steps, seed=4, **request)

    plain = draw()
    assert torch.equal(plain, draw(with_keys=[first], guidance=0.0))
    guided, other = draw(with_keys=[first]), draw(with_keys=[second])  # the default guidance
    assert not torch.equal(plain, guided) and not torch.equal(guided, other)
    assert torch.equal(guided, draw(with_keys=[first], guidance=3.0))  # the default is 3


def test_guidance_is_one_batched_call(trained: Path) -> None:
    """w = 1 is the conditional model alone; both passes go through the network as one batch of 2N."""
    loaded = load_model(trained, "flow", "c", device="cpu")
    recipe = loaded.recipe
    key = positioned(recipe.cfg.options.vocabulary)[0]
    y = recipe.condition_vector([key], 3)
    x, t = torch.randn(3, 1, 16, 16), torch.full((3,), 0.5)
    net = recipe.nets["unet"].eval()
    seen: list[int] = []
    handle = net.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            one = recipe.network_fn(net, TIME_SCALE, y, 1.0)(x, t)
            two = recipe.network_fn(net, TIME_SCALE, y, 2.0)(x, t)
            conditional, unconditional = net(x, t * TIME_SCALE, y), net(x, t * TIME_SCALE)
    finally:
        handle.remove()
    assert seen == [6, 6, 3, 3]
    torch.testing.assert_close(one, conditional, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(two, 2 * conditional - unconditional, atol=1e-5, rtol=1e-5)


def test_the_loop_hands_each_batch_its_own_labels(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch's rows of the component labels reach the step, row for row with the images."""
    from ganji.recipes.flow import FlowRecipe

    labelled(home)
    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    step = FlowRecipe.train_step
    monkeypatch.setattr(FlowRecipe, "train_step",
                        lambda self, x, labels=None, made_up=None: seen.append((x.clone(), labels)) or step(self, x, labels, made_up))
    train(home, "flow", {**TINY, "dataset": "labelled16", "max_steps": 3, "options": {"base_width": 4, "condition": "components"}},
          run_name="l")
    d = load_dataset(home, "labelled16")
    order = epoch_permutation(TINY.get("seed", 0), 0, len(d))
    assert len(seen) == 3
    for i, (x, labels) in enumerate(seen):
        rows = order[16 * i : 16 * i + 16]
        assert torch.equal(x, normalise(d.images[rows], (-1.0, 1.0), CPU))
        assert labels is not None and torch.equal(labels, d.components[rows])
    seen.clear()
    train(home, "flow", {**TINY, "dataset": "labelled16", "max_steps": 1, "options": {"base_width": 4}}, run_name="p")
    assert len(seen) == 1 and seen[0][1] is None  # an unconditional run gets none


def test_a_step_trains_the_embedding_of_the_keys_it_sees() -> None:
    recipe = cpu_recipe("flow", ("a:left", "a:any", "b:any"), base_width=4, condition_dropout=0.0, component_keep=1.0)
    before = recipe.nets["unet"].condition[0].weight.detach().clone()
    torch.manual_seed(0)
    recipe.train_step(torch.randn(8, 1, 16, 16), torch.tensor([[0, 1, 0]] * 8, dtype=torch.uint8))
    moved = (recipe.nets["unet"].condition[0].weight != before).any(dim=0)
    assert moved.tolist() == [False, True, False]


def test_label_thinning_rates() -> None:
    """Whole labels dropped at `condition_dropout`, components kept at `component_keep`, a kept
    component's position key half the time and never without its "any" key."""
    recipe = cpu_recipe("ddpm", ("a:left", "a:any", "b:right", "b:any", "c:any"), base_width=4, timesteps=8,
                        condition_dropout=0.2, component_keep=0.5)
    torch.manual_seed(0)
    n = 20_000
    labels = torch.tensor([[1, 1, 0, 1, 0]] * n, dtype=torch.uint8)  # a on the left, b somewhere
    y = recipe.training_condition(labels)
    assert y.dtype == torch.float32 and y.shape == labels.shape
    assert y[:, 2].sum() == 0 and y[:, 4].sum() == 0  # keys the image lacks are never switched on
    assert ((y[:, 0] == 1) & (y[:, 1] == 0)).sum() == 0  # never "a on the left" without "a"
    rate = y.mean(0)
    assert abs(rate[1] - 0.8 * 0.5) < 0.015 and abs(rate[3] - 0.8 * 0.5) < 0.015
    assert abs(rate[0] - 0.8 * 0.5 * 0.5) < 0.015
    empty = (y.sum(1) == 0).float().mean()
    assert abs(empty - (0.2 + 0.8 * 0.25)) < 0.015  # dropped, or both components left out
    both = ((y[:, 1] == 1) & (y[:, 3] == 1)).float().mean()
    assert abs(both - 0.8 * 0.25) < 0.015  # components kept independently
    assert recipe.training_condition(None) is None
    assert recipe.condition_vector(["a:left"], 2).tolist() == [[1, 1, 0, 0, 0]] * 2  # sent as training shows it
    assert recipe.condition_vector(["b:any"], 1).tolist() == [[0, 0, 0, 1, 0]]


def test_label_thinning_is_drawn_for_the_global_batch() -> None:
    """With two processes each rank gets its rows of the one-process draw (like t and ε)."""
    vocabulary = ("a:left", "a:any", "b:any")
    labels = torch.tensor([[1, 1, 1]] * 8, dtype=torch.uint8)
    recipe = cpu_recipe("flow", vocabulary, base_width=4, condition_dropout=0.3)
    torch.manual_seed(3)
    whole = recipe.training_condition(labels)
    parts = []
    for rank in (0, 1):
        recipe.world = World(rank=rank, size=2)
        torch.manual_seed(3)
        parts.append(recipe.training_condition(labels[4 * rank : 4 * rank + 4]))
    assert torch.equal(torch.cat(parts), whole)


def test_made_up_kanji_keep_their_whole_label() -> None:
    """`--component-mix`: made-up rows are never dropped or thinned (both parts, both positions);
    the other rows get exactly the labels they would get without them (the same draws)."""
    vocabulary = ("a:left", "a:any", "b:right", "b:any")
    labels = torch.tensor([[1, 1, 1, 1]] * 400, dtype=torch.uint8)
    recipe = cpu_recipe("flow", vocabulary, base_width=4, condition_dropout=0.5, component_keep=0.3)
    made_up = torch.arange(400) % 2 == 0
    torch.manual_seed(1)
    plain = recipe.training_condition(labels)
    torch.manual_seed(1)
    mixed = recipe.training_condition(labels, made_up)
    assert (mixed[made_up] == 1).all()
    assert torch.equal(mixed[~made_up], plain[~made_up])
    assert (plain[made_up] == 0).any()  # without the mask these rows would have been thinned


def test_component_mix_trains_and_resumes_exactly(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conditional flow with --component-mix (and region maps) sees made-up kanji and resumes bit for bit."""
    from ganji.recipes.flow import FlowRecipe

    make_kanji(home, name="kanji16", size=16, limit=200)
    seen: list[int] = []
    step = FlowRecipe.train_step
    monkeypatch.setattr(FlowRecipe, "train_step", lambda self, x, labels=None, made_up=None:
                        seen.append(int(made_up.sum()) if made_up is not None else -1) or step(self, x, labels, made_up))
    options = {**FLOW, "condition": "components", "component_mix": 1.0, "component_regions": True}
    straight = train(home, "flow", {**TINY, "max_steps": 4, "options": options}, run_name="straight")
    assert len(seen) == 4 and min(seen) >= 0 and sum(seen) > 0
    train(home, "flow", {**TINY, "max_steps": 2, "options": options}, run_name="split")
    resumed = train(home, "flow", {"max_steps": 4}, run_name="split", resume=True)
    a = load_model(home, "flow", "straight", device="cpu").recipe.nets["unet"].state_dict()
    b = load_model(home, "flow", "split", device="cpu").recipe.nets["unet"].state_dict()
    assert resumed.step == 4 and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("regions.") for k in a) and a["regions.embed.weight"].abs().sum() > 0  # trained
    with pytest.raises(GanjiError, match="--component-regions needs --condition components"):
        spec("flow").options(component_regions=True).validate()
    with pytest.raises(GanjiError, match="--component-mix must be in"):
        spec("flow").options(condition="components", component_mix=1.5).validate()
    with pytest.raises(GanjiError, match="--component-mix needs --condition components"):
        spec("flow").options(component_mix=0.5).validate()


def suite_held_out(home: Path) -> tuple[list[str], torch.Tensor]:
    """The request suite's existing pairs on `home`'s kanji16 and the rows of the kanji that have one."""
    d = load_dataset(home, "kanji16")
    pairs, rows = held_out_pairs(d.component_vocabulary, d.components, list(d.manifest["codepoints"]), set(load_component_net().vocabulary))
    assert pairs and len(rows) >= len(pairs)
    return pairs, torch.from_numpy(rows)


def has_pair(labels: torch.Tensor, vocabulary: list[str], pairs: list[str]) -> torch.Tensor:
    """Which rows of multi-hot `labels` have both keys of one of `pairs`."""
    column = {k: i for i, k in enumerate(vocabulary)}
    return torch.stack([labels[:, [column[k] for k in split_pair(p)]].bool().all(dim=1) for p in pairs]).any(dim=0)


def test_holding_out_requests_leaves_their_kanji_out(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--hold-out-requests`: in a whole epoch no kanji with both parts of one of the suite's existing
    pairs reaches a step, real or made up; the run records the pairs, and `ganji fid` marks them."""
    from ganji.recipes.flow import FlowRecipe

    make_kanji(home, name="kanji16", size=16, limit=400)
    d = load_dataset(home, "kanji16")
    pairs, rows = suite_held_out(home)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    step = FlowRecipe.train_step
    monkeypatch.setattr(FlowRecipe, "train_step", lambda self, x, labels=None, made_up=None:
                        seen.append((x.clone(), labels.clone())) or step(self, x, labels, made_up))
    options = {**FLOW, "condition": "components", "component_mix": 0.5, "hold_out_requests": True}
    train(home, "flow", {**TINY, "options": options}, run_name="h")  # one whole epoch
    config = json.loads((home / "runs" / "flow" / "h" / "config.json").read_text(encoding="utf-8"))
    assert config["config"]["options"]["held_out"] == pairs and config["dataset"]["count"] == len(d) - len(rows)
    images, labels = torch.cat([x for x, _ in seen]), torch.cat([y for _, y in seen])
    assert len(images) >= len(d) - len(rows) - TINY["batch_size"]  # the epoch: every kept kanji but a last partial batch
    held = normalise(d.images[rows], (-1.0, 1.0), CPU)
    assert not (images[:, None] == held[None]).flatten(2).all(dim=2).any()
    kept = normalise(d.images[:len(d) // 2], (-1.0, 1.0), CPU)  # the test can see images: kept ones are there
    assert (images[:, None] == kept[None]).flatten(2).all(dim=2).any()
    assert not has_pair(labels, d.component_vocabulary, pairs).any()

    out = ganji(home, "fid", "flow", "--run", "h", "--condition", "components", "--per-request", "4", "--steps", "2", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    assert "existing, held out" in out.stdout and f"the kanji of {len(pairs)} pairs held out of training" in " ".join(out.stdout.split())
    result = json.loads((home / "runs" / "flow" / "h" / "conditioning.json").read_text(encoding="utf-8"))
    assert result["held_out"] == pairs and {"+".join(r["keys"]) for r in result["requests"] if r["kind"] == "existing"} == set(pairs)


def test_made_up_kanji_never_pair_what_is_held_out(home: Path) -> None:
    """The made-up kanji of `--component-mix` put the suite's existing pairs together (they are common
    parts) unless those are held out; then never, and other kanji are still made up."""
    make_kanji(home, name="kanji16", size=16, limit=400)
    d = load_dataset(home, "kanji16")
    pairs, _ = suite_held_out(home)
    rows = torch.arange(len(d)).numpy()
    for held_out in ((), tuple(pairs)):
        made = MadeUpKanji(d.images, list(d.manifest["codepoints"]), d.component_vocabulary, held_out=held_out)
        labels = [made.mix(d.images, rows, d.components, 1.0, 0, step, 0, len(d)) for step in range(20)]
        made_up = torch.cat([y[m] for _, y, m in labels])
        assert len(made_up) > len(d)
        assert has_pair(made_up, d.component_vocabulary, pairs).any() == (not held_out)


def test_holding_out_needs_a_run_that_never_saw_them(home: Path) -> None:
    make_kanji(home, name="kanji16", size=16, limit=400)
    with pytest.raises(GanjiError, match="--hold-out-requests needs --condition components"):
        spec("flow").options(hold_out_requests=True).validate()
    train(home, "flow", {**TINY, "max_steps": 1, "options": {**FLOW, "condition": "components"}}, run_name="saw")
    with pytest.raises(GanjiError, match="run flow/saw trained on kanji this run holds out"):
        train(home, "flow", {**TINY, "max_steps": 1, "init_from": "saw", "options": {**FLOW, "condition": "components", "hold_out_requests": True}},
              run_name="held")
    assert not (home / "runs" / "flow" / "held").exists()


def test_component_mix_needs_code_points(home: Path) -> None:
    labelled(home)  # labels but no code points: which kanji's parts could be cut?
    with pytest.raises(GanjiError, match="--component-mix needs to know which kanji each image"):
        train(home, "flow", {**TINY, "dataset": "labelled16", "options": {"base_width": 4, "condition": "components", "component_mix": 0.5}},
              run_name="m")
    assert not (home / "runs" / "flow" / "m").exists()


def test_unconditional_runs_draw_no_labels(home: Path) -> None:
    """Without --condition nothing changes: the same seed gives the same weights whether or not the
    dataset has labels (the loop hands none to the recipe, which draws nothing more)."""
    labelled(home)
    d = load_dataset(home, "labelled16")
    assert d.components is not None and d.components.any()
    save_dataset(datasets_dir(home) / "plain16", d.images, {"source": "folder"})
    train(home, "ddpm", {**TINY, "dataset": "labelled16", "options": DDPM}, run_name="a")
    train(home, "ddpm", {**TINY, "dataset": "plain16", "options": DDPM}, run_name="b")
    a = load_model(home, "ddpm", "a", device="cpu").recipe.nets["unet"].state_dict()
    b = load_model(home, "ddpm", "b", device="cpu").recipe.nets["unet"].state_dict()
    assert a.keys() == b.keys() and not any("condition" in k for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_needs_the_same_vocabulary(home: Path) -> None:
    labelled(home)
    train(home, "ddpm", {**TINY, "dataset": "labelled16", "max_steps": 1, "options": {**DDPM, "condition": "components"}}, run_name="r")
    d = load_dataset(home, "labelled16")
    vocabulary = d.component_vocabulary[::-1]  # the same images, their keys in another order
    manifest = {k: v for k, v in d.manifest.items() if k in ("source", "codepoints")}
    save_dataset(datasets_dir(home) / ".new", d.images, {**manifest, "components": {"vocabulary": vocabulary}},
                 components=d.components.flip(1).contiguous())
    (datasets_dir(home) / "labelled16").rename(datasets_dir(home) / ".old")
    (datasets_dir(home) / ".new").rename(datasets_dir(home) / "labelled16")
    with pytest.raises(GanjiError, match="component keys have changed since run ddpm/r started"):
        train(home, "ddpm", {"max_steps": 2}, run_name="r", resume=True)


def test_bad_requests(trained: Path) -> None:
    loaded = load_model(trained, "flow", "c", device="cpu")
    vocabulary = list(loaded.recipe.cfg.options.vocabulary)
    element = split_key(positioned(vocabulary)[0])[0]

    def resolve(recipe=loaded.recipe, model=loaded.spec, **request) -> SampleRequest:
        return SampleRequest.resolve(model, recipe, 2, **request)

    assert resolve(with_keys=[element]).condition == (f"{element}:any",)  # no position: anywhere
    with pytest.raises(GanjiError, match=f"{element} is not known at position 'nowhere': try .*{element}:any"):
        resolve(with_keys=[f"{element}:nowhere"])
    with pytest.raises(GanjiError, match="unknown component '鬱'.*" + split_key(vocabulary[0])[0]):
        resolve(with_keys=["鬱:left"])
    with pytest.raises(GanjiError, match="--guidance applies to a request for components"):
        resolve(guidance=2.0)
    for bad in (-1.0, float("nan"), float("inf"), 1e9):
        with pytest.raises(GanjiError, match="--guidance must be a number from 0 to 100"):
            resolve(with_keys=[element], guidance=bad)
    for model in ("vae", "gan"):
        with pytest.raises(GanjiError, match=f"--with applies to ddpm and flow runs trained with --condition components, not to the {model}"):
            resolve(recipe=cpu_recipe(model), model=spec(model), with_keys=[element])

    out = ganji(trained, "sample", "flow", "--run", "c", "--n", "2", "--with", f"{element}:nowhere", "-o", str(trained / "x.png"))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert f"{element} is not known at position 'nowhere'" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    plain = ganji(trained, "sample", "flow", "--run", "u", "--n", "2", "--with", element, "-o", str(trained / "x.png"))
    assert plain.returncode != 0 and "trained without components" in plain.stderr and "Traceback" not in plain.stderr
    assert not (trained / "x.png").exists()
    helped = ganji(trained, "sample", "--help")
    flat = re.sub(r"[\s│]+", "", helped.stdout)  # rich wraps the help in a box
    assert "--withCOMPONENT[:POSITION]" in flat and "pushesharder[default:3]" in flat


def test_condition_needs_labelled_data(home: Path) -> None:
    save_dataset(datasets_dir(home) / "plain16", torch.zeros(32, 1, 16, 16, dtype=torch.uint8), {"source": "folder"})
    with pytest.raises(GanjiError, match="has no component labels, which --condition components needs: rebuild it with `ganji fetch-data --force`"):
        train(home, "flow", {**TINY, "dataset": "plain16", "options": {"base_width": 4, "condition": "components"}}, run_name="x")
    assert not (home / "runs" / "flow" / "x").exists()
    with pytest.raises(GanjiError, match="--condition must be none or components"):
        spec("flow").options(condition="radicals").validate()
    for bad in ({"condition_dropout": 1.0}, {"component_keep": 0.0}, {"component_keep": float("nan")}, {"vocabulary": ("a:any",)}):
        with pytest.raises(GanjiError):
            spec("ddpm").options(**bad).validate()


def test_the_run_says_it_is_conditioned() -> None:
    o = spec("flow").options(base_width=8, condition="components", vocabulary=("a:any", "b:any"))
    assert spec("flow").recipe_class().describe(o).endswith(", conditioned on 2 component keys")
    o = spec("flow").options(base_width=8, condition="components", vocabulary=("a:any", "b:any"), component_regions=True)
    assert spec("flow").recipe_class().describe(o).endswith(", conditioned on 2 component keys with region maps")
    assert "condition" not in spec("ddpm").recipe_class().describe(spec("ddpm").options())


def test_measuring_requests_needs_a_conditional_run(trained: Path) -> None:
    from ganji.metrics.conditioning import evaluate_conditioning

    with pytest.raises(GanjiError, match="trained without --condition components: there is nothing to ask it for"):
        evaluate_conditioning(trained, "flow", "u", device="cpu")
    with pytest.raises(GanjiError, match="--per-request must be at least 4"):
        evaluate_conditioning(trained, "flow", "c", per_request=2, device="cpu")
    out = ganji(trained, "fid", "flow", "--run", "c", "--condition", "radicals")
    assert out.returncode != 0 and "--condition must be components" in out.stderr and "Traceback" not in out.stderr


def test_measuring_requests_from_the_command_line(trained: Path) -> None:
    out = ganji(trained, "fid", "flow", "--run", "c", "--condition", "components", "--per-request", "4", "--steps", "2", "--device", "cpu",
                "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert "real parts" in out.stdout and "real kanji" in out.stdout
    result = json.loads((trained / "runs" / "flow" / "c" / "conditioning.json").read_text(encoding="utf-8"))
    assert result["run"] == "c" and result["per_request"] == 4 and result["requests"]
    assert result["seed"] == 3 and result["best_of"] == 1 and result["classifier_guidance"] == 0.0  # what makes the reading repeatable
    # The sampler the requests were drawn with is recorded (the flow's default sampler, the steps asked for).
    assert (result["sampler"], result["steps"]) == ("heun", 2) and "heun-2" in out.stdout
    for request in result["requests"]:
        assert 0.0 <= request["hit_rate"] <= 1.0 and request["samples"] == 4
        # A pair the font has is read in the font's own kanji too: at least the one it was taken from.
        if request["kind"] == "existing":
            assert request["example"] and 1 <= request["real_kanji"] <= 4 and 0.0 <= request["real_kanji_hit_rate"] <= 1.0
        else:
            assert request["real_kanji_hit_rate"] is None
    existing = result["by_kind"]["existing"]
    assert existing["real_kanji_requests"] == existing["requests"]
