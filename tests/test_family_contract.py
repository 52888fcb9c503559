"""Every registered model family against the contract of `gluebench.models.base`, on real GLUE rows.

In the spirit of scikit-learn's ``check_estimator``: one set of checks, run over every family the registry
knows (``hf:`` through the offline MiniLM package path), so a new family is checked by being registered.
A single-sentence task (CoLA), a pair task (RTE) and a regression task (STS-B) cover every head and input
shape; nothing trains beyond one optimiser step.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gluebench.data.read import Example, read_split
from gluebench.errors import GluebenchError
from gluebench.models import (
    FAMILIES,
    Capability,
    FamilyOptions,
    ModelFamily,
    TaskModel,
    UnsupportedCapability,
    get_family,
)
from gluebench.models.transformer import HF_PREFIX, minilm_path
from gluebench.tasks import TASKS, TaskSpec
from gluebench.training import load_weights, save_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES = [f"{HF_PREFIX}{minilm_path()}" if key == HF_PREFIX else key for key in sorted(FAMILIES)]
IDS = ["hf:<minilm path>" if name.startswith(HF_PREFIX) else name for name in NAMES]
TASK_NAMES = ["CoLA", "RTE", "STS-B"]  # single sentence, pair, regression
OPTIONS = FamilyOptions(max_length=64)
ROWS = 32

by_family = pytest.mark.parametrize("name", NAMES, ids=IDS)
by_task = pytest.mark.parametrize("task", TASK_NAMES)

Built = Callable[[str, str], TaskModel]


@pytest.fixture(scope="module")
def rows(glue_dir: Path) -> dict[str, list[Example]]:
    """The first training rows of each task: what a run passes to `build` (and trains on)."""
    return {task: read_split(TASKS[task], "train", glue_dir)[:ROWS] for task in TASK_NAMES}


@pytest.fixture(scope="module")
def built(rows: dict[str, list[Example]]) -> Built:
    """``built(family, task)``: one fresh model per family and task, shared by the checks that only read it."""
    cache: dict[tuple[str, str], TaskModel] = {}

    def get(name: str, task: str) -> TaskModel:
        if (name, task) not in cache:
            cache[name, task] = get_family(name).build(TASKS[task], rows[task], OPTIONS, seed=1)
        return cache[name, task]

    return get


def _check_output(output: torch.Tensor, spec: TaskSpec, count: int) -> None:
    expected = (count,) if spec.is_regression else (count, spec.num_labels)
    assert tuple(output.shape) == expected and output.dtype.is_floating_point


def _forward(model: TaskModel, examples: list[Example]) -> torch.Tensor:
    model.module.eval()
    with torch.no_grad():
        return model.module(**model.collate(model.encode(examples)))


@by_family
def test_family_declares_its_defaults_and_capabilities(name: str, built: Built) -> None:
    family = get_family(name)
    assert isinstance(family, ModelFamily) and family.name == name
    assert isinstance(family.default_lr, float) and 0 < family.default_lr < 1
    assert isinstance(family.default_epochs, int) and family.default_epochs >= 1
    assert isinstance(family.default_batch_size, int) and family.default_batch_size >= 1
    assert isinstance(family.default_warmup, float) and 0 <= family.default_warmup < 1
    assert isinstance(family.capabilities, frozenset)
    assert all(isinstance(c, Capability) for c in family.capabilities)
    for task in TASK_NAMES:  # the task models declare what the family does, except the family's own capabilities
        model = built(name, task)
        assert isinstance(model, TaskModel)
        assert model.capabilities == family.capabilities - {Capability.MULTITASK, Capability.FINETUNED}


@by_family
@by_task
def test_forward_gives_logits_or_scores_per_example(name: str, task: str, built: Built,
                                                    rows: dict[str, list[Example]]) -> None:
    model, spec = built(name, task), TASKS[task]
    features = model.encode(rows[task])
    assert len(features) == ROWS
    assert all(isinstance(model.length(f), int) and model.length(f) > 0 for f in features)
    batch = model.collate(features[:8])
    assert batch and all(isinstance(value, torch.Tensor) for value in batch.values())
    model.module.eval()
    with torch.no_grad():
        _check_output(model.module(**batch), spec, 8)
    json.dumps(model.metadata())  # the run directory keeps it as JSON


@by_family
@by_task
def test_padding_does_not_change_an_example_output(name: str, task: str, built: Built,
                                                   rows: dict[str, list[Example]]) -> None:
    model = built(name, task)
    features = model.encode(rows[task])
    order = sorted(range(ROWS), key=lambda i: model.length(features[i]))
    short, longest = features[order[0]], [features[i] for i in order[-4:]]
    assert model.length(short) < model.length(longest[-1])  # the short one really is padded below
    alone, padded = model.collate([short]), model.collate([*longest[:2], short, *longest[2:]])
    model.module.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.module(**padded)[2], model.module(**alone)[0], atol=1e-5, rtol=1e-4)
    if Capability.LAYER_OUTPUTS in model.capabilities:
        by_itself, among_longer = model.layer_outputs(alone), model.layer_outputs(padded)
        for layer, value in by_itself.items():
            torch.testing.assert_close(among_longer[layer][2], value[0], atol=1e-5, rtol=1e-4, msg=layer)


@by_family
@by_task
def test_metadata_and_weights_restore_identical_predictions(name: str, task: str, built: Built, tmp_path: Path,
                                                            rows: dict[str, list[Example]]) -> None:
    model, spec = copy.deepcopy(built(name, task)), TASKS[task]
    model.module.train()
    trainable = [p for p in model.module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    model.module(**model.collate(model.encode(rows[task][:8]))).float().square().mean().backward()
    optimizer.step()  # one step, so the saved weights are no longer those of any fresh model
    save_weights(model.module, tmp_path / "model.safetensors")
    restored = get_family(name).restore(spec, json.loads(json.dumps(model.metadata())), OPTIONS)
    load_weights(restored.module, tmp_path / "model.safetensors")
    assert torch.equal(_forward(restored, rows[task]), _forward(model, rows[task]))
    model.export(tmp_path / "export")  # the family's own format, reloaded with its weights
    exported = get_family(name).load_exported(spec, tmp_path / "export", OPTIONS)
    torch.testing.assert_close(_forward(exported, rows[task]), _forward(model, rows[task]))
    assert not list((tmp_path / "export").rglob("*.pkl")) and not list((tmp_path / "export").rglob("*.bin"))


@by_family
def test_finetuned_checkpoints_load_or_the_family_says_it_cannot(name: str) -> None:
    family = get_family(name)
    if Capability.FINETUNED not in family.capabilities:
        with pytest.raises(UnsupportedCapability, match="does not offer evaluating a checkpoint"):
            family.load_finetuned(TASKS["RTE"], OPTIONS)


@by_family
@by_task
def test_layer_outputs_are_per_example_in_forward_order(name: str, task: str, built: Built,
                                                        rows: dict[str, list[Example]]) -> None:
    model = built(name, task)
    batch = model.collate(model.encode(rows[task][:6]))
    if Capability.LAYER_OUTPUTS not in model.capabilities:
        with pytest.raises(UnsupportedCapability, match="does not offer per-layer outputs"):
            model.layer_outputs(batch)
        return
    model.module.eval()
    layers = model.layer_outputs(batch)
    assert len(layers) >= 2 and all(value.shape[0] == 6 for value in layers.values())
    with torch.no_grad():
        output = model.module(**batch)
    torch.testing.assert_close(list(layers.values())[-1].reshape(output.shape), output)  # the output comes last


@by_family
def test_multitask_models_share_one_encoder_or_the_family_says_it_cannot(name: str,
                                                                         rows: dict[str, list[Example]]) -> None:
    family = get_family(name)
    specs = [TASKS[task] for task in TASK_NAMES]
    if Capability.MULTITASK not in family.capabilities:
        with pytest.raises(UnsupportedCapability, match=f"{name} does not offer multitask") as error:
            family.build_multitask(specs, rows, OPTIONS, seed=1)
        assert isinstance(error.value, GluebenchError) and "\n" not in str(error.value)
        return
    models = family.build_multitask(specs, rows, OPTIONS, seed=1)
    assert list(models) == TASK_NAMES
    for task, model in models.items():
        _check_output(_forward(model, rows[task][:5]), TASKS[task], 5)
    parameters = {task: {id(p) for p in model.module.parameters()} for task, model in models.items()}
    shared = set.intersection(*parameters.values())
    assert shared  # the encoder: the very same parameters in every task's module
    assert all(own - shared for own in parameters.values())  # and a head of its own each


@by_family
@by_task
def test_word_embedding_accessors_agree(name: str, task: str, built: Built, rows: dict[str, list[Example]]) -> None:
    model = built(name, task)
    if Capability.WORD_EMBEDDINGS not in model.capabilities:
        for call in (model.word_embedding, model.word_vocabulary, lambda: model.read_words("a"),
                     lambda: model.pretrained_word_embedding(OPTIONS)):
            with pytest.raises(UnsupportedCapability, match="does not offer word embeddings"):
                call()
        return
    weight = model.word_embedding()
    assert weight.ndim == 2 and any(weight is p for p in model.module.parameters())  # the live parameter
    vocabulary = model.word_vocabulary()
    assert len(vocabulary) == weight.shape[0]
    pretrained = model.pretrained_word_embedding(OPTIONS)
    assert torch.equal(pretrained, weight.detach())  # a fresh model starts from exactly these vectors
    known = set(vocabulary)
    for example in rows[task][:8]:
        words = model.read_words(example.text_a)
        assert words and all(word is None or word in known for word in words)
        assert any(word is not None for word in words)


@by_family
def test_task_vocabulary_is_declared_exactly_when_vocabularies_follow_the_task(name: str, built: Built) -> None:
    cola, rte = built(name, "CoLA"), built(name, "RTE")
    if Capability.WORD_EMBEDDINGS not in cola.capabilities:
        assert Capability.TASK_VOCABULARY not in cola.capabilities
        return
    per_task = Capability.TASK_VOCABULARY in cola.capabilities
    assert (cola.word_vocabulary() != rte.word_vocabulary()) == per_task
    assert (None in cola.read_words("zxqvjw")) == per_task  # a word outside a closed vocabulary is unknown
