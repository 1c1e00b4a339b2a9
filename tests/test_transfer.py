"""DYNO's transfer experiments (docs/protocol.md §17): the Imagenette / Imagewoof / Galaxy10 readers on files
in their real formats, VGG11 with conv-channel units, its pretrained weights, DYNO on conv layers, Auto-RGN
(``sft``), weight decay, and a short run end to end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from scenario_data import write_galaxy10, write_image_folder
from structural_helpers import fake_strategy
from torch import nn
from torch.nn import functional as F

from plasticity_bench.core.masks import zero_optimizer_state
from plasticity_bench.core.models import count_flops
from plasticity_bench.core.networks import build_network
from plasticity_bench.core.vgg import (
    POOLED,
    TORCHVISION_HEAD,
    TORCHVISION_LAYERS,
    WeightsError,
    check_weights,
    load_pretrained,
    nominal_widths,
    read_weights,
)
from plasticity_bench.run.config import OptimizerSpec, RunConfig
from plasticity_bench.scenarios.readers import CorruptDatasetError, DatasetNotFoundError
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.scenarios.transfer import IMAGENETTE, IMAGEWOOF, galaxy10, imagenette
from plasticity_bench.strategies.base import StrategyConfig
from plasticity_bench.strategies.dyno import DynoPlugin
from plasticity_bench.strategies.sft import SurgicalFineTuningPlugin, parameter_groups, rgn_scales
from plasticity_bench.sweep.plan import used_options

SCALE = 1 / 16  # VGG11 at 4..32 channels and 256-wide dense layers: fast on a CPU
SHAPE = (3, 32, 32)


def test_image_folder_reader_resizes_crops_and_labels_by_wnid(tmp_path: Path) -> None:
    write_image_folder(tmp_path, IMAGENETTE.wnids, {"train": 3, "val": 1})
    bench = imagenette(0, 1, None, tmp_path, image_size=32)
    task = bench.train_stream[0].task
    assert task.x.shape == (30, 3, 32, 32) and task.test_x.shape == (10, 3, 32, 32)
    assert task.y.tolist() == [k for k in range(10) for _ in range(3)] and task.test_y.tolist() == list(
        range(10)
    )
    # class k's pixels are 20k..20k+7: after ImageNet normalisation the class means rise with k
    means = [float(task.x[task.y == k].mean()) for k in range(10)]
    assert means == sorted(means)
    assert (
        bench.info.imagenet_classes == IMAGENETTE.imagenet_classes and bench.info.options["image_size"] == 32
    )


def test_image_folder_errors_name_paths_and_bad_classes(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="imagenette2-320") as missing:
        imagenette(0, 1, None, tmp_path, image_size=32)
    assert "fast-ai-imageclas" in str(missing.value)
    write_image_folder(tmp_path, IMAGEWOOF.wnids, {"train": 1, "val": 1})  # Imagewoof's classes
    with pytest.raises(CorruptDatasetError, match="expected wnids"):
        imagenette(0, 1, None, tmp_path, image_size=32)
    with pytest.raises(ValueError, match="--tasks 1"):
        imagenette(0, 2, None, tmp_path, image_size=32)


def test_imagenet_class_indices_name_the_classes() -> None:
    from torchvision.models import VGG11_Weights

    names = VGG11_Weights.IMAGENET1K_V1.meta["categories"]  # torchvision's ImageNet-1k class names
    assert [names[i] for i in IMAGENETTE.imagenet_classes] == [
        "tench", "English springer", "cassette player", "chain saw", "church", "French horn", "garbage truck",
        "gas pump", "golf ball", "parachute",
    ]  # fmt: skip
    assert (
        names[IMAGEWOOF.imagenet_classes[0]] == "Shih-Tzu"
        and names[IMAGEWOOF.imagenet_classes[-1]] == "dingo"
    )


def test_galaxy10_reader_and_its_seeded_split(tmp_path: Path) -> None:
    labels = write_galaxy10(tmp_path / "Galaxy10_DECals.h5")
    a = galaxy10(0, 1, None, tmp_path, image_size=32, test_fraction=0.2, split_seed=0)
    b = galaxy10(7, 1, None, tmp_path, image_size=32, test_fraction=0.2, split_seed=0)  # another run seed
    c = galaxy10(0, 1, None, tmp_path, image_size=32, test_fraction=0.2, split_seed=1)
    task_a, task_b, task_c = (x.train_stream[0].task for x in (a, b, c))
    assert task_a.x.shape == (24, 3, 32, 32) and task_a.test_x.shape == (6, 3, 32, 32)
    assert torch.equal(task_a.test_x, task_b.test_x) and not torch.equal(task_a.test_x, task_c.test_x)
    assert sorted(task_a.y.tolist() + task_a.test_y.tolist()) == sorted(labels.tolist())
    assert a.info.options["split_seed"] == 0 and a.info.imagenet_classes is None


def test_galaxy10_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"Galaxy10_DECals\.h5") as missing:
        galaxy10(0, 1, None, tmp_path)
    assert "zenodo" in str(missing.value)
    (tmp_path / "Galaxy10_DECals.h5").write_bytes(b"not hdf5")
    with pytest.raises(CorruptDatasetError, match="HDF5"):
        galaxy10(0, 1, None, tmp_path)
    with h5py.File(tmp_path / "Galaxy10_DECals.h5", "w") as handle:
        handle["images"] = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(CorruptDatasetError, match="'ans'"):
        galaxy10(0, 1, None, tmp_path)


def vgg(width_factor: float = 1.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_network("vgg11", SHAPE, 10, width_factor=width_factor, width_scale=SCALE)


def test_vgg11_units_are_every_conv_channel_and_dense_unit() -> None:
    model = vgg()
    layers = model.masked_layers()
    assert (
        [layer.width for layer in layers]
        == list(nominal_widths(SCALE))
        == [4, 8, 16, 16, 32, 32, 32, 32, 256, 256]
    )
    assert [type(layer.producer).__name__ for layer in layers] == ["Conv2d"] * 8 + ["Linear"] * 2
    assert layers[8].producer.in_features == 32 * POOLED[0] * POOLED[1]  # a channel owns 49 columns
    assert not any(k.startswith("after.") for k in model.state_dict())  # no parameters in the after-modules


def test_compact_export_of_conv_units_keeps_the_function() -> None:
    model, x = vgg(), torch.randn(3, *SHAPE)
    gen = torch.Generator().manual_seed(0)
    for layer in model.masked_layers():
        layer.units.set_units(torch.randperm(layer.width, generator=gen)[: layer.width // 3], False)
    model.eval()
    compact = model.export_compact()
    torch.testing.assert_close(compact(x), model(x), atol=1e-5, rtol=1e-5)
    assert count_flops(compact, SHAPE) < count_flops(model, SHAPE)


def test_optimizer_surgery_on_conv_slices_is_exact() -> None:
    model = vgg()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    F.cross_entropy(model(torch.randn(4, *SHAPE)), torch.arange(4)).backward()
    optimizer.step()
    layer = model.masked_layers()[2]  # conv -> conv
    before = {p: {k: v.clone() for k, v in optimizer.state[p].items()} for p in model.parameters()}
    units = torch.tensor([1, 5])
    zero_optimizer_state(optimizer, layer.slices(units))
    for name in ("exp_avg", "exp_avg_sq"):
        producer, consumer = (
            optimizer.state[layer.producer.weight][name],
            optimizer.state[layer.consumer.weight][name],
        )
        assert producer[units].abs().sum() == 0 and consumer[:, units].abs().sum() == 0
        assert optimizer.state[layer.producer.bias][name][units].abs().sum() == 0
        kept = torch.ones(layer.width, dtype=torch.bool)
        kept[units] = False
        assert torch.equal(producer[kept], before[layer.producer.weight][name][kept])
        assert torch.equal(consumer[:, kept], before[layer.consumer.weight][name][:, kept])


def dyno_on_vgg(reserve: float = 2.0) -> tuple[DynoPlugin, nn.Module, torch.Tensor]:
    model, x = vgg(reserve), torch.randn(12, *SHAPE)
    plugin = DynoPlugin(
        StrategyConfig("dyno"), reserve_factor=reserve, buffer_factor=2.0, candidates_per_unit=4
    )
    plugin.setup(model, SHAPE)
    model.train()
    return plugin, model, x


def test_dyno_sizes_conv_buffers_by_positions_and_prunes_and_grows_conv_channels() -> None:
    plugin, model, x = dyno_on_vgg()
    layers = model.masked_layers()
    assert model.active_units() == list(nominal_widths(SCALE))
    # a conv sample gives H x W rows: layer 0 (32x32 outputs) needs one sample for 2 x 8 rows
    assert plugin.buffers[0].capacity == 1 and plugin.buffers[8].capacity == 2 * 512
    strategy = fake_strategy(model, x, torch.randint(0, 10, (12,)), torch.optim.Adam(model.parameters()))
    plugin.before_training_exp(strategy)
    model(x)
    layer = layers[3]
    inputs = plugin.layer_inputs(layers, 3)
    assert inputs.shape == (1, 16 * 2, 8, 8)  # (n, C, H, W): the previous conv's channels, reserve masked
    h = model.eval()(x)
    layer.units.set_units(torch.tensor([0, 1]), False)  # prune two channels, as DYNO does
    grown = plugin.grow(strategy, layers, layer, inputs, torch.zeros(1, 14, 8, 8), 3)
    torch.testing.assert_close(model(x), _with_units_off(model, h, layer, grown, x))
    assert layer.units.n_active() == 16 - 2 + 3 and layer.slices(grown).fan_out[0].read().abs().sum() == 0
    assert layer.slices(grown).fan_in[0].read().abs().sum() > 0  # NORTH-Select conv filters


def _with_units_off(
    model: nn.Module, h: torch.Tensor, layer, grown: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """The network's output with the newborn channels switched off again (what it computed before birth)."""
    layer.units.set_units(grown, False)
    out = model(x)
    layer.units.set_units(grown, True)
    return out


def test_dyno_trains_a_vgg11_through_its_triggers() -> None:
    plugin, model, x = dyno_on_vgg()
    plugin.trigger_every = 2
    y = torch.randint(0, 10, (12,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    strategy = fake_strategy(model, x, y, optimizer)
    plugin.before_training_exp(strategy)
    for _ in range(8):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        plugin.after_training_iteration(strategy)
    assert plugin.phi_star[0] is not None and len(plugin.active_width) >= 1
    assert all(0 < n <= layer.width for n, layer in zip(model.active_units(), model.masked_layers()))


def torchvision_state(scale: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict in torchvision ``vgg11`` key names at ``scale`` of its widths, random values."""
    gen = torch.Generator().manual_seed(seed)
    widths, state, previous = nominal_widths(scale), {}, 3
    for i, (key, width) in enumerate(zip(TORCHVISION_LAYERS, widths)):
        shape = (width, previous, 3, 3) if i < 8 else (width, previous * (49 if i == 8 else 1))
        state[f"{key}.weight"] = torch.randn(shape, generator=gen) * 0.2
        state[f"{key}.bias"] = torch.randn(width, generator=gen) * 0.1
        previous = width
    state[f"{TORCHVISION_HEAD}.weight"] = torch.randn(1000, previous, generator=gen) * 0.1
    state[f"{TORCHVISION_HEAD}.bias"] = torch.randn(1000, generator=gen)
    return state


def reference_vgg11(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's VGG11 forward written out (eval mode): convs, ReLU, pools, classifier."""
    pooled_after = {0, 1, 3, 5, 7}
    for i, key in enumerate(TORCHVISION_LAYERS[:8]):
        x = F.relu(F.conv2d(x, state[f"{key}.weight"], state[f"{key}.bias"], padding=1))
        x = F.max_pool2d(x, 2) if i in pooled_after else x
    x = torch.flatten(F.adaptive_avg_pool2d(x, POOLED), 1)
    for key in TORCHVISION_LAYERS[8:]:
        x = F.relu(F.linear(x, state[f"{key}.weight"], state[f"{key}.bias"]))
    return F.linear(x, state[f"{TORCHVISION_HEAD}.weight"], state[f"{TORCHVISION_HEAD}.bias"])


def test_pretrained_weights_give_torchvisions_function_with_a_reserve_switched_off() -> None:
    state, x = torchvision_state(SCALE), torch.randn(2, *SHAPE)
    heads = IMAGENETTE.imagenet_classes
    model = vgg(width_factor=2.0)
    load_pretrained(model, state, heads)
    model.weights = {"weights": "test", "sha256": "0"}
    DynoPlugin(StrategyConfig("dyno"), reserve_factor=2.0).setup(model, SHAPE)  # no rescale: pretrained
    expected = reference_vgg11(state, x)[:, list(heads)]
    torch.testing.assert_close(model.eval()(x), expected, atol=1e-4, rtol=1e-4)
    wide = vgg(width_factor=1.0)
    load_pretrained(wide, state, None)  # Galaxy10: the head keeps its fresh draw
    assert not torch.equal(wide.head.weight, state[f"{TORCHVISION_HEAD}.weight"][:10])


def test_weights_files_are_read_safely_and_bad_ones_refused(tmp_path: Path) -> None:
    path = tmp_path / "vgg11.pth"
    torch.save(torchvision_state(SCALE), path)
    state, source = read_weights(str(path))
    assert len(source["sha256"]) == 64 and source["weights"] == str(path) and "classifier.6.bias" in state
    with pytest.raises(WeightsError, match="no such file"):
        read_weights(str(tmp_path / "absent.pth"))
    with pytest.raises(WeightsError, match="no such file"):  # before any run starts (the sweep's preflight)
        check_weights(str(tmp_path / "absent.pth"))
    for fine in ("none", "imagenet1k_v1", str(path)):  # imagenet1k_v1: the run fetches it when online
        check_weights(fine)
    with pytest.raises(WeightsError, match="not a torchvision vgg11"):
        load_pretrained(vgg(), {"features.0.weight": torch.zeros(1)}, None)
    with pytest.raises(WeightsError, match="does not fit"):
        load_pretrained(vgg(), torchvision_state(SCALE * 2), None)


def test_rgn_scales_on_a_hand_computed_case() -> None:
    a, b = nn.Parameter(torch.tensor([3.0, 4.0])), nn.Parameter(torch.tensor([1.0]))
    a.grad, b.grad = torch.tensor([0.0, 1.0]), torch.tensor([0.4])
    # RGN_a = 1 / 5 = 0.2, RGN_b = 0.4 / 1 = 0.4: b learns at the full rate, a at half
    torch.testing.assert_close(rgn_scales([[a], [b]]), torch.tensor([0.5, 1.0]))
    # one group of both: sqrt(1 + 0.16) / sqrt(26)
    torch.testing.assert_close(rgn_scales([[a, b]]), torch.tensor([1.0]))


def test_sft_equals_adam_at_the_scaled_learning_rates() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    reference = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    reference.load_state_dict(model.state_dict())
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    ours = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    theirs = torch.optim.Adam([{"params": [p]} for p in reference.parameters()], lr=1e-2, weight_decay=1e-3)
    plugin, host = SurgicalFineTuningPlugin("tensor"), fake_strategy(model, x, y, ours)
    for _ in range(3):
        for net, optimizer in ((model, ours), (reference, theirs)):
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
        plugin.before_update(host)
        scales = rgn_scales(parameter_groups(reference, "tensor"))
        for group, scale in zip(theirs.param_groups, scales):
            group["lr"] = 1e-2 * float(scale)
        ours.step()
        plugin.after_update(host)
        theirs.step()
    assert float(plugin.scales.max()) == 1.0 and float(plugin.scales.min()) < 1.0
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_weight_decay_is_an_option_of_the_transfer_streams_only() -> None:
    transfer = used_options(SCENARIOS["imagenette"], "dyno+sft", False)
    assert transfer["weight_decay"].default == 1e-3 and "weights" in transfer and "sft_group" in transfer
    assert "weight_decay" not in used_options(SCENARIOS["permuted_mnist"], "dense", False)
    config = RunConfig("imagenette", None, "dense", 1.0, 0, 3e-4, "vgg11", 1, 10, 8,
                       options={"weight_decay": 1e-3, "decoupled_weight_decay": True})  # fmt: skip
    optimizer = OptimizerSpec.of(config).build(nn.Linear(2, 2).parameters(), 3e-4)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == 1e-3
    plain = OptimizerSpec.of(replace(config, options={"weight_decay": 1e-3})).build(
        nn.Linear(2, 2).parameters(), 1
    )
    assert type(plain) is torch.optim.Adam and plain.param_groups[0]["weight_decay"] == 1e-3
    with pytest.raises(ValueError, match="needs Adam"):
        OptimizerSpec("sgd", weight_decay=1e-3, decoupled=True)


@pytest.mark.parametrize("scenario", ["imagenette", "galaxy10"])
def test_a_short_transfer_run_end_to_end(data_root: Path, tmp_path: Path, scenario: str) -> None:
    from typer.testing import CliRunner

    from plasticity_bench.cli import app, load_records

    weights = tmp_path / "vgg11.pth"
    torch.save(torchvision_state(SCALE), weights)
    out = tmp_path / "out"
    args = [
        "run", "--scenario", scenario, "--strategy", "dense,dyno+sft", "--seeds", "1", "--steps", "12",
        "--batch-size", "4", "--data-root", str(data_root), "--weights", str(weights), "--out", str(out),
        "--option", f"width_scale={SCALE}", "--option", "image_size=32", "--option", "trigger_every=4",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "inference FLOPs" in result.output
    by_strategy = {r["config"]["strategy"]: r for r in load_records(out).records}
    assert set(by_strategy) == {"dense", "dyno+sft"}
    dyno = by_strategy["dyno+sft"]
    assert dyno["data"]["pretrained"]["sha256"] == read_weights(str(weights))[1]["sha256"]
    assert dyno["config"]["options"]["weight_decay"] == 1e-3 and dyno["summary"]["flops"] > 0
    assert dyno["inference_flops"][0] == [
        0,
        by_strategy["dense"]["inference_flops"][0][1] and dyno["inference_flops"][0][1],
    ]
    assert dyno["dyno"]["active_width"][0]["widths"] == list(nominal_widths(SCALE))
    plot = CliRunner().invoke(app, ["plot", "--out", str(out)])
    assert plot.exit_code == 0, plot.output
    for name in ("accuracy_flops", "inference_cost", "layer_changes"):
        assert (out / "figures" / f"{scenario}_{name}.png").is_file()


def test_north_select_in_chunks_makes_the_same_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import plasticity_bench.strategies.dyno as dyno

    gen = torch.Generator().manual_seed(0)
    inputs, existing = torch.randn(40, 6, generator=gen), torch.relu(torch.randn(40, 3, generator=gen))
    whole = dyno.north_select(inputs, existing, torch.relu, 4, 0.5, torch.Generator().manual_seed(1), 50)
    monkeypatch.setattr(dyno, "CANDIDATE_ELEMENTS", 7 * 6)  # chunks of 7 candidates
    chunked = dyno.north_select(inputs, existing, torch.relu, 4, 0.5, torch.Generator().manual_seed(1), 50)
    assert torch.equal(whole, chunked) and whole.shape == (4, 6)


@pytest.mark.slow
def test_torchvision_vgg11_weights_at_full_size_keep_torchvisions_function() -> None:
    """Real sizes (224 px, 4096-wide dense layers, a 2x reserve): our VGG11 with torchvision's (randomly
    drawn, no download) VGG11 weights computes torchvision's model, head rows of Imagenette's classes."""
    from torchvision.models import vgg11

    torch.manual_seed(0)
    reference = vgg11().eval()
    shape = (3, 224, 224)
    model = build_network("vgg11", shape, 10, width_factor=2.0)
    load_pretrained(model, reference.state_dict(), IMAGENETTE.imagenet_classes)
    model.weights = {"weights": "torchvision draw", "sha256": "-"}
    DynoPlugin(StrategyConfig("dyno"), reserve_factor=2.0).setup(model, shape)
    x = torch.randn(1, *shape)
    with torch.no_grad():
        expected = reference(x)[:, list(IMAGENETTE.imagenet_classes)]
        torch.testing.assert_close(model.eval()(x), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("decoupled", [False, True])
def test_element_step_adam_decays_weights_as_torchs_adam(decoupled: bool) -> None:
    from plasticity_bench.core.element_adam import ElementStepAdam

    torch.manual_seed(0)
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    decay = {"weight_decay": 0.1, "decoupled_weight_decay": decoupled}
    ours, theirs = (
        ElementStepAdam(a.parameters(), lr=0.01, **decay),
        torch.optim.Adam(b.parameters(), lr=0.01, **decay),
    )
    x = torch.randn(16, 5)
    for _ in range(5):
        for net, optimizer in ((a, ours), (b, theirs)):
            optimizer.zero_grad()
            net(x).square().mean().backward()
            optimizer.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_large_images_are_evaluated_in_smaller_batches() -> None:
    from plasticity_bench.core.defaults import eval_batch_size

    # 2**24 values per batch: 16,777,216 // 150,528 = 111 rows of 224-pixel images; CIFAR keeps 1000
    assert eval_batch_size((3, 224, 224)) == 111 and eval_batch_size((3, 32, 32)) == 1000
    assert eval_batch_size((3, 8192, 8192)) == 1


def test_net2wider_splits_a_conv_channel_and_keeps_the_function() -> None:
    from plasticity_bench.strategies.interventions import net2wider_split

    model, x = vgg().eval(), torch.randn(2, *SHAPE)
    layer = model.masked_layers()[2]  # conv -> conv
    newborn, donors = torch.tensor([14, 15]), torch.tensor([3, 3])
    layer.units.set_units(newborn, False)
    before = model(x)
    net2wider_split(layer, donors, newborn)
    layer.units.set_units(newborn, True)
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)
    fan_out = layer.consumer.weight
    torch.testing.assert_close(fan_out[:, 14], fan_out[:, 3])  # the donor's input channel shared in three


def test_a_fresh_ticket_of_a_pretrained_run_is_a_random_draw(tmp_path: Path) -> None:
    """``wt_init=original`` rewinds to the pretrained weights; ``fresh`` is the random-reinit control."""
    from plasticity_bench.run.build import new_model
    from plasticity_bench.scenarios.stream import StreamInfo

    path = tmp_path / "vgg11.pth"
    state = torchvision_state(SCALE)
    torch.save(state, path)
    options = {"weights": str(path), "width_scale": SCALE}
    config = RunConfig("galaxy10", None, "dense", 1.0, 0, 3e-4, "vgg11", 1, 4, 4, options=options)
    info = StreamInfo("galaxy10", None, SHAPE, 10, "test")
    original, fresh = (new_model(config, info, 1.0, key, "cpu") for key in ("init", "wt-init"))
    first = state[f"{TORCHVISION_LAYERS[0]}.weight"]
    assert torch.equal(original.hidden[0].weight, first) and original.weights["sha256"]
    assert not torch.equal(fresh.hidden[0].weight, first) and fresh.weights is None
