"""Every registered model family against the contract of `gluebench.models.base`, on real GLUE rows.

In the spirit of scikit-learn's ``check_estimator``: one set of checks, run over every family the registry
knows (``hf:`` through the offline MiniLM package path), so a new family is checked by being registered.
A single-sentence task (CoLA), a pair task (RTE) and a regression task (STS-B) cover every head and input
shape; nothing trains beyond one optimiser step. The checks of a task model also run over the variants a
family builds from its options (Transformers with ``freeze_encoder``: a head on a frozen, cached encoder).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
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
from gluebench.models.base import TokenOutputs
from gluebench.models.transformer import HF_PREFIX, TransformerFamily, minilm_path
from gluebench.tasks import TASKS, TaskSpec
from gluebench.training import load_weights, save_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES = [f"{HF_PREFIX}{minilm_path()}" if key == HF_PREFIX else key for key in sorted(FAMILIES)]
IDS = ["hf:<minilm path>" if name.startswith(HF_PREFIX) else name for name in NAMES]
TASK_NAMES = ["CoLA", "RTE", "STS-B"]  # single sentence, pair, regression
OPTIONS = FamilyOptions(max_length=64)
FROZEN = FamilyOptions(max_length=64, freeze_encoder=True)
ROWS = 32
# every family with its default options, and the Transformers once more with a frozen encoder
VARIANTS = [(name, OPTIONS) for name in NAMES] + [(name, FROZEN) for name in NAMES
                                                  if isinstance(get_family(name), TransformerFamily)]
VARIANT_IDS = [*IDS, *(f"{i}+frozen" for n, i in zip(NAMES, IDS, strict=True)
                       if isinstance(get_family(n), TransformerFamily))]

by_family = pytest.mark.parametrize("name", NAMES, ids=IDS)
by_model = pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
by_task = pytest.mark.parametrize("task", TASK_NAMES)

Built = Callable[..., TaskModel]


@pytest.fixture(scope="module")
def rows(glue_dir: Path) -> dict[str, list[Example]]:
    """The first training rows of each task: what a run passes to `build` (and trains on)."""
    return {task: read_split(TASKS[task], "train", glue_dir)[:ROWS] for task in TASK_NAMES}


@pytest.fixture(scope="module")
def built(rows: dict[str, list[Example]]) -> Built:
    """``built(family, task[, options])``: one fresh model per variant and task, shared by the read-only checks."""
    cache: dict[tuple[str, str, bool], TaskModel] = {}

    def get(name: str, task: str, options: FamilyOptions = OPTIONS) -> TaskModel:
        key = (name, task, options.freeze_encoder)
        if key not in cache:
            cache[key] = get_family(name).build(TASKS[task], rows[task], options, seed=1)
        return cache[key]

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


@by_model
def test_a_variant_declares_no_capability_its_family_lacks(name: str, options: FamilyOptions, built: Built) -> None:
    family = get_family(name)
    for task in TASK_NAMES:
        assert built(name, task, options).capabilities <= family.capabilities - {Capability.MULTITASK,
                                                                                  Capability.FINETUNED}


@by_model
@by_task
def test_forward_gives_logits_or_scores_per_example(name: str, options: FamilyOptions, task: str, built: Built,
                                                    rows: dict[str, list[Example]]) -> None:
    model, spec = built(name, task, options), TASKS[task]
    features = model.encode(rows[task])
    assert len(features) == ROWS
    assert all(isinstance(model.length(f), int) and model.length(f) > 0 for f in features)
    batch = model.collate(features[:8])
    assert batch and all(isinstance(value, torch.Tensor) for value in batch.values())
    model.module.eval()
    with torch.no_grad():
        _check_output(model.module(**batch), spec, 8)
    json.dumps(model.metadata())  # the run directory keeps it as JSON


@by_model
@by_task
def test_padding_does_not_change_an_example_output(name: str, options: FamilyOptions, task: str, built: Built,
                                                   rows: dict[str, list[Example]]) -> None:
    model = built(name, task, options)
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


@by_model
@by_task
def test_metadata_and_weights_restore_identical_predictions(name: str, options: FamilyOptions, task: str,
                                                            built: Built, tmp_path: Path,
                                                            rows: dict[str, list[Example]]) -> None:
    model, spec = copy.deepcopy(built(name, task, options)), TASKS[task]
    model.module.train()
    trainable = [p for p in model.module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    model.module(**model.collate(model.encode(rows[task][:8]))).float().square().mean().backward()
    optimizer.step()  # one step, so the saved weights are no longer those of any fresh model
    save_weights(model.module, tmp_path / "model.safetensors")
    restored = get_family(name).restore(spec, json.loads(json.dumps(model.metadata())), options)
    load_weights(restored.module, tmp_path / "model.safetensors")
    assert torch.equal(_forward(restored, rows[task]), _forward(model, rows[task]))
    model.export(tmp_path / "export")  # the family's own format, reloaded with its weights
    exported = get_family(name).load_exported(spec, tmp_path / "export", options)
    torch.testing.assert_close(_forward(exported, rows[task]), _forward(model, rows[task]))
    assert not list((tmp_path / "export").rglob("*.pkl")) and not list((tmp_path / "export").rglob("*.bin"))


@by_family
def test_finetuned_checkpoints_load_or_the_family_says_it_cannot(name: str) -> None:
    family = get_family(name)
    if Capability.FINETUNED not in family.capabilities:
        with pytest.raises(UnsupportedCapability, match="does not offer evaluating a checkpoint"):
            family.load_finetuned(TASKS["RTE"], OPTIONS)


@by_model
@by_task
def test_layer_outputs_are_per_example_in_forward_order(name: str, options: FamilyOptions, task: str, built: Built,
                                                        rows: dict[str, list[Example]]) -> None:
    model = built(name, task, options)
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


@by_model
@by_task
def test_token_outputs_give_every_token_a_vector_at_every_layer(name: str, options: FamilyOptions, task: str,
                                                               built: Built, rows: dict[str, list[Example]]) -> None:
    model = built(name, task, options)
    texts = [example.text_a for example in rows[task][:6]]
    if Capability.TOKEN_OUTPUTS not in model.capabilities:
        with pytest.raises(UnsupportedCapability, match="does not offer per-token layer outputs"):
            model.token_outputs(texts)
        return
    outputs = model.token_outputs(texts)
    assert len(outputs) == len(texts) and all(isinstance(o, TokenOutputs) for o in outputs)
    for output in outputs:
        tokens = len(output.word_of_token)
        assert len(output.layers) >= 2 and all(v.shape[0] == tokens and v.ndim == 2 for v in output.layers.values())
        indices = output.word_of_token[output.word_of_token >= 0]
        assert set(indices.tolist()) == set(range(len(output.words)))  # every word has a token, in order
        assert (np.diff(indices) >= 0).all() and any(word is not None for word in output.words)
    alone = model.token_outputs(texts[-1:])[0]  # a text's tokens do not depend on the texts batched with it
    for layer, value in alone.layers.items():
        np.testing.assert_allclose(outputs[-1].layers[layer], value, atol=1e-5, rtol=1e-4, err_msg=layer)


@by_model
@by_task
def test_word_embedding_accessors_agree(name: str, options: FamilyOptions, task: str, built: Built,
                                        rows: dict[str, list[Example]]) -> None:
    model = built(name, task, options)
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
