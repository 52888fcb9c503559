"""The GLUE task registry: every task is data, nothing else in the package branches on task names.

Each `TaskSpec` says where its official files live (relative to a GLUE data directory laid out as the
standard ``download_glue_data.py`` leaves it), which columns hold what, the label strings in the order
the Hugging Face ``glue`` configs use, the official metrics, what the GLUE server wants back, which task's
model predicts it, its diagnostic categories and where its files are downloaded from.

A new GLUE-style task is one `register_task` call (plus its files in the data directory): run, score,
submit, check and download read only the registry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TypeVar, overload
from urllib.parse import urlsplit

from gluebench.errors import GluebenchError

_T = TypeVar("_T")

GLUE_HOST = "https://dl.fbaipublicfiles.com"  # where download_glue_data.py fetches from
HUB_REPO = "nyu-mll/glue"  # the Hugging Face Hub's parquet copy of GLUE (a dataset repository)
HUB_FILE = "{config}/{split}-00000-of-00001.parquet"  # one file per (config, split) in that repository


@dataclass(frozen=True)
class SplitSpec:
    """One official file of a task and how to read it."""

    name: str
    path: str  # relative to the GLUE data directory
    rows: int  # official number of examples
    header: bool = True
    text_a: int = 0
    text_b: int | None = None
    label: int | str | None = None  # column index, or a header name (MNLI's gold_label); None: unlabeled (test)
    index: int | None = None  # None: the row number is the index
    fields: int | None = None  # exact number of fields per row, where the file guarantees it
    sha256: str | None = None  # digest of the official file
    git_blob: str | None = None  # git blob id, where only that is published

    @property
    def labeled(self) -> bool:
        return self.label is not None


@dataclass(frozen=True)
class Remote:
    """One file a task is downloaded from. ``dest`` is where a plain file goes; ``None``: a zip to extract."""

    url: str
    size: int | None = None
    sha256: str | None = None
    dest: str | None = None

    @property
    def name(self) -> str:
        return PurePosixPath(urlsplit(self.url).path).name


@dataclass(frozen=True)
class DiagnosticSpec:
    """A labeled set that is only predicted, never trained on, and analysed per linguistic phenomenon."""

    categories: tuple[str, ...]  # coarse categories: columns holding ';'-separated fine tags
    domain_column: str | None = None
    stand_ins: tuple[str, ...] = ()  # tasks whose models predict it when `predicted_by`'s is missing, best first


@dataclass(frozen=True)
class HubSpec:
    """Where a task lives in the Hub's parquet copy (`HUB_REPO`) and what its columns mean.

    Every file has the text columns, ``label`` (the class id; float32 for regression; -1 on test) and ``idx``
    (the row number of the official file: on test, the official index). ``label_names`` are the Hub's class
    names by id, matched to the task's `TaskSpec.class_names`, so a Hub id becomes the official label string.
    """

    config: str  # the repository folder, e.g. "sst2"
    text_a: str
    text_b: str | None = None
    label_names: tuple[str, ...] = ()  # the Hub's class names, by class id; () for regression
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "dev": "validation", "test": "test"})

    def path(self, split: str) -> str | None:
        """The split's file relative to a snapshot; None where the Hub has no counterpart of it."""
        hub_split = self.splits.get(split)
        return None if hub_split is None else HUB_FILE.format(config=self.config, split=hub_split)


@dataclass(frozen=True)
class TaskSpec:
    """A GLUE task described declaratively."""

    name: str
    description: str
    domain: str
    splits: tuple[SplitSpec, ...]
    labels: tuple[str, ...] | None  # None: regression
    metrics: tuple[str, ...]  # official metric names, the first is the main one
    dev_splits: dict[str, str] = field(default_factory=lambda: {"dev": ""})  # split -> metric suffix
    test_files: dict[str, str] = field(default_factory=dict)  # test split -> server file name
    in_glue_score: bool = True
    label_range: tuple[float, float] | None = None  # regression targets (required for regression)
    positive_label: str | None = None  # the class F1 is computed for (required with the f1 metric)
    label_names: tuple[str, ...] | None = None  # what coded labels ("0", "1") mean, in the order of `labels`
    predicted_by: str | None = None  # the task whose model predicts this one (AX: MNLI)
    diagnostic: DiagnosticSpec | None = None
    extra_columns: tuple[str, ...] = ()  # named columns beyond the texts (AX categories)
    aliases: tuple[str, ...] = ()  # other names `get_task` accepts
    downloads: tuple[Remote, ...] = ()  # what `gluebench download` fetches
    build: str | None = None  # recipe in `gluebench.data.download.BUILDS` that turns the downloads into the files
    hub: HubSpec | None = None  # its place in the Hub's parquet copy of GLUE, if it has one

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def is_pair(self) -> bool:
        return any(s.text_b is not None for s in self.splits)

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def main_metric(self) -> str:
        return self.metric_keys[0]

    @property
    def metric_keys(self) -> tuple[str, ...]:
        """Keys of this task's results, e.g. ``("f1", "accuracy")`` or MNLI's matched/mismatched pair."""
        return tuple(
            f"{metric}_{suffix}" if suffix else metric
            for split, suffix in self.dev_splits.items()
            for metric in self.metrics
        )

    @property
    def has_train(self) -> bool:
        return any(s.name == "train" for s in self.splits)

    def split(self, name: str) -> SplitSpec:
        for spec in self.splits:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.splits)
        raise GluebenchError(f"task {self.name} has no split {name!r} (splits: {known})")

    def label_index(self, label: str) -> int:
        assert self.labels is not None
        return self.labels.index(label)

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The labels' names, as a checkpoint's ``id2label`` would say them (``acceptable``, not ``1``)."""
        return self.label_names or self.labels

    @property
    def hub_labels(self) -> tuple[str, ...]:
        """The task's label strings by Hub class id (WNLI's id 1 is ``"1"``, entailment; RTE's is not_entailment)."""
        assert self.hub is not None and self.labels is not None and self.class_names is not None
        return tuple(self.labels[self.class_names.index(name)] for name in self.hub.label_names)


def _pair_glue_splits(
    dirname: str, rows: tuple[int, int, int], sha: tuple[str | None, str | None, str | None]
) -> tuple[SplitSpec, ...]:
    """RTE, WNLI and QNLI share one layout: index, sentence1, sentence2, label."""
    train, dev, test = rows
    return (
        SplitSpec("train", f"{dirname}/train.tsv", train, text_a=1, text_b=2, label=3, index=0, fields=4,
                  sha256=sha[0]),
        SplitSpec("dev", f"{dirname}/dev.tsv", dev, text_a=1, text_b=2, label=3, index=0, fields=4,
                  sha256=sha[1]),
        SplitSpec("test", f"{dirname}/test.tsv", test, text_a=1, text_b=2, index=0, fields=3, sha256=sha[2]),
    )


def _zip(name: str, size: int, sha256: str) -> tuple[Remote, ...]:
    """One archive on the GLUE host, pinned as the Hugging Face `glue` loader pins it (dataset_infos.json)."""
    return (Remote(f"{GLUE_HOST}/glue/data/{name}", size, sha256),)


NLI3 = ("entailment", "neutral", "contradiction")
NLI2 = ("entailment", "not_entailment")
BINARY = ("0", "1")
_AX_CATEGORIES = ("Lexical Semantics", "Predicate-Argument Structure", "Logic", "Knowledge")

_GLUE: tuple[TaskSpec, ...] = (
    TaskSpec(
        name="CoLA",
        description="Is the sentence grammatically acceptable?",
        domain="linguistics books and articles",
        labels=BINARY,
        label_names=("unacceptable", "acceptable"),
        metrics=("mcc",),
        test_files={"test": "CoLA.tsv"},
        hub=HubSpec("cola", "sentence", label_names=("unacceptable", "acceptable")),
        downloads=_zip("CoLA.zip", 376971, "f212fcd832b8f7b435fb991f101abf89f96b933ab400603bf198960dfc32cbff"),
        splits=(
            SplitSpec("train", "CoLA/train.tsv", 8551, header=False, text_a=3, label=1, fields=4,
                      sha256="cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624"),
            SplitSpec("dev", "CoLA/dev.tsv", 1043, header=False, text_a=3, label=1, fields=4,
                      sha256="8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd"),
            SplitSpec("test", "CoLA/test.tsv", 1063, text_a=1, index=0, fields=2,
                      sha256="3b4df85f7a9a0633574b38d181e18090ac961a24b18fb6bcd74999ddea8ad0b8"),
        ),
    ),
    TaskSpec(
        name="SST-2",
        description="Is the movie-review sentence positive (1) or negative (0)?",
        domain="movie reviews",
        labels=BINARY,
        label_names=("negative", "positive"),
        metrics=("accuracy",),
        test_files={"test": "SST-2.tsv"},
        hub=HubSpec("sst2", "sentence", label_names=("negative", "positive")),
        aliases=("sst",),
        downloads=_zip("SST-2.zip", 7439277, "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa"),
        splits=(
            SplitSpec("train", "SST-2/train.tsv", 67349, text_a=0, label=1, fields=2,
                      sha256="48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),
            SplitSpec("dev", "SST-2/dev.tsv", 872, text_a=0, label=1, fields=2,
                      sha256="54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
            SplitSpec("test", "SST-2/test.tsv", 1821, text_a=1, index=0, fields=2,
                      sha256="69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13"),
        ),
    ),
    TaskSpec(
        name="MRPC",
        description="Are the two sentences paraphrases of each other?",
        domain="news",
        labels=BINARY,
        label_names=("not_equivalent", "equivalent"),
        positive_label="1",  # paraphrase
        metrics=("f1", "accuracy"),
        test_files={"test": "MRPC.tsv"},
        hub=HubSpec("mrpc", "sentence1", "sentence2", label_names=("not_equivalent", "equivalent")),
        # Microsoft's corpus split by the official dev ids, as download_glue_data.py does
        downloads=(
            Remote(f"{GLUE_HOST}/senteval/senteval_data/msr_paraphrase_train.txt", 1047044,
                   "60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89",
                   dest="MRPC/msr_paraphrase_train.txt"),
            Remote(f"{GLUE_HOST}/senteval/senteval_data/msr_paraphrase_test.txt", 441275,
                   "a04e271090879aaba6423d65b94950c089298587d9c084bf9cd7439bd785f784",
                   dest="MRPC/msr_paraphrase_test.txt"),
            Remote(f"{GLUE_HOST}/glue/data/mrpc_dev_ids.tsv", 6222,
                   "971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7", dest="MRPC/dev_ids.tsv"),
        ),
        build="msr-paraphrase-split",
        splits=(
            SplitSpec("train", "MRPC/train.tsv", 3668, text_a=3, text_b=4, label=0, fields=5,
                      sha256="69abcedee3cf738c6ce58d772e43e1b7cdf5b4edee4aceda459c0d9f4e5599f3"),
            SplitSpec("dev", "MRPC/dev.tsv", 408, text_a=3, text_b=4, label=0, fields=5,
                      sha256="9e8f284788040f7c9ecde2e1b3c07237c756f926bd9ef8548ef5d34b56f69f17"),
            SplitSpec("test", "MRPC/test.tsv", 1725, text_a=3, text_b=4, index=0, fields=5,
                      sha256="aee460ceda833926b8ab2ad952d399f5cf8bc9335cff19afcac03dc449558622"),
        ),
    ),
    TaskSpec(
        name="STS-B",
        description="How similar are the two sentences, from 0 to 5?",
        domain="news captions, video and image captions, forums",
        labels=None,
        label_range=(0.0, 5.0),
        metrics=("pearson", "spearman"),
        test_files={"test": "STS-B.tsv"},
        hub=HubSpec("stsb", "sentence1", "sentence2"),
        aliases=("sts",),
        downloads=_zip("STS-B.zip", 802872, "e60a6393de5a8b5b9bac5020a1554b54e3691f9d600b775bd131e613ac179c85"),
        splits=(
            SplitSpec("train", "STS-B/train.tsv", 5749, text_a=7, text_b=8, label=9, index=0, fields=10,
                      sha256="41c4d978b6162abdcada7e49a982211954cca5459c228db478af333124b257a2"),
            SplitSpec("dev", "STS-B/dev.tsv", 1500, text_a=7, text_b=8, label=9, index=0, fields=10,
                      sha256="fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59"),
            SplitSpec("test", "STS-B/test.tsv", 1379, text_a=7, text_b=8, index=0, fields=9,
                      sha256="16b4223d7d44a644fbc10f1b449472cfe81e1715fb07cf44023b0aa88ce856eb"),
        ),
    ),
    TaskSpec(
        name="QQP",
        description="Are the two Quora questions duplicates?",
        domain="social QA questions",
        labels=BINARY,
        label_names=("not_duplicate", "duplicate"),
        positive_label="1",  # duplicate
        metrics=("f1", "accuracy"),
        test_files={"test": "QQP.tsv"},
        # the Hub's train/dev idx is the row number: the official file's pair id (its index column) is not kept
        hub=HubSpec("qqp", "question1", "question2", label_names=("not_duplicate", "duplicate")),
        downloads=_zip("QQP-clean.zip", 41696084, "40e7c862c04eb26ee04b67fd900e76c45c6ba8e6d8fab4f8f1f8072a1a3fbae0"),
        splits=(
            SplitSpec("train", "QQP/train.tsv", 363846, text_a=3, text_b=4, label=5, index=0, fields=6,
                      git_blob="9298352dd48d3f0886865f9abad89d74c3360a2d"),
            SplitSpec("dev", "QQP/dev.tsv", 40430, text_a=3, text_b=4, label=5, index=0, fields=6,
                      git_blob="75842e0860b72c7d52778ad6d72b55edc6fb2c7d"),
            SplitSpec("test", "QQP/test.tsv", 390965, text_a=1, text_b=2, index=0, fields=3,
                      git_blob="d64b558208ca6e0cde87d902aca186c4ef377b25"),
        ),
    ),
    TaskSpec(
        name="MNLI",
        description="Does the premise entail, contradict or say nothing of the hypothesis?",
        domain="fiction, government, travel, telephone, letters and more (matched / mismatched genres)",
        labels=NLI3,
        metrics=("accuracy",),
        dev_splits={"dev_matched": "matched", "dev_mismatched": "mismatched"},
        test_files={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
        hub=HubSpec("mnli", "premise", "hypothesis", label_names=NLI3, splits={
            "train": "train", "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched",
            "test_matched": "test_matched", "test_mismatched": "test_mismatched"}),
        downloads=_zip("MNLI.zip", 312783507, "e7c1d896d26ed6caf700110645df426cc2d8ebf02a5ab743d5a5c68ac1c83633"),
        splits=(
            SplitSpec("train", "MNLI/train.tsv", 392702, text_a=8, text_b=9, label="gold_label", index=0),
            SplitSpec("dev_matched", "MNLI/dev_matched.tsv", 9815, text_a=8, text_b=9, label="gold_label", index=0,
                      git_blob="6837729e383ed9df86cd4826a213d01c990b2f49"),
            SplitSpec("dev_mismatched", "MNLI/dev_mismatched.tsv", 9832, text_a=8, text_b=9, label="gold_label",
                      index=0, git_blob="b759450eec8ff62a5edfda5d37e453eb6122c683"),
            SplitSpec("test_matched", "MNLI/test_matched.tsv", 9796, text_a=8, text_b=9, index=0, fields=10,
                      git_blob="618ccbdf51d48461d3a433112fd111c4b544d693"),
            SplitSpec("test_mismatched", "MNLI/test_mismatched.tsv", 9847, text_a=8, text_b=9, index=0,
                      fields=10, git_blob="b8b24febe8c850c23526e3df8b310e74e6f8fcbb"),
        ),
    ),
    TaskSpec(
        name="QNLI",
        description="Does the Wikipedia sentence contain the answer to the question?",
        domain="Wikipedia",
        labels=NLI2,
        metrics=("accuracy",),
        test_files={"test": "QNLI.tsv"},
        hub=HubSpec("qnli", "question", "sentence", label_names=NLI2),
        downloads=_zip("QNLIv2.zip", 10627589, "e634e78627a29adaecd4f955359b22bf5e70f2cbd93b493f2d624138a0c0e5f5"),
        splits=(
            SplitSpec("train", "QNLI/train.tsv", 104743, text_a=1, text_b=2, label=3, index=0, fields=4,
                      git_blob="712d0ecf5d185ee525c02acd908b96f3b43624a5"),
            SplitSpec("dev", "QNLI/dev.tsv", 5463, text_a=1, text_b=2, label=3, index=0, fields=4,
                      sha256="ac19409dcb04631eaaa094bdebdcf621086bc352503dfb6a1a648b614986f4fd"),
            SplitSpec("test", "QNLI/test.tsv", 5463, text_a=1, text_b=2, index=0, fields=3,
                      sha256="6d856264e292fa7a7bc7b8e182efa1454ffd9532733c12ad813017dd5b377a5a"),
        ),
    ),
    TaskSpec(
        name="RTE",
        description="Does the first text entail the second?",
        domain="news, Wikipedia",
        labels=NLI2,
        metrics=("accuracy",),
        test_files={"test": "RTE.tsv"},
        hub=HubSpec("rte", "sentence1", "sentence2", label_names=NLI2),
        downloads=_zip("RTE.zip", 697150, "6bf86de103ecd335f3441bd43574d23fef87ecc695977a63b82d5efb206556ee"),
        splits=_pair_glue_splits(
            "RTE",
            (2490, 277, 3000),
            (
                "41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c",
                "80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb",
                "6e33f09b5c2bfd5fd5fde217070f3dd49e484e33b9752b5864cf36fc421a213f",
            ),
        ),
    ),
    TaskSpec(
        name="WNLI",
        description="Is the sentence with the pronoun replaced entailed by the original (Winograd)?",
        domain="fiction books",
        labels=BINARY,
        label_names=("not_entailment", "entailment"),
        metrics=("accuracy",),
        test_files={"test": "WNLI.tsv"},
        # the Hub's ids are reversed from RTE's and QNLI's: 0 not_entailment, 1 entailment (the TSV's "1")
        hub=HubSpec("wnli", "sentence1", "sentence2", label_names=("not_entailment", "entailment")),
        downloads=_zip("WNLI.zip", 28999, "ae0e8e4d16f4d46d4a0a566ec7ecceccfd3fbfaa4a7a4b4e02848c0f2561ac46"),
        splits=_pair_glue_splits(
            "WNLI",
            (635, 71, 146),
            (
                "9a88e9d54b6861cc796a088e9acf4f5f65064a9ef65ae6fa7a688b28391e5c9a",
                "cba00490596dd14be8cf53b4f53bb744abe3a7b89f81ab210528d80225338ed5",
                "ff0296817e235bf6f7a230c5f6781bd6ee228a45445f6510831fdef6f2a04766",
            ),
        ),
    ),
    TaskSpec(
        name="AX",
        description="Diagnostic NLI pairs tagged with linguistic phenomena, predicted with the MNLI model",
        domain="hand-crafted, news, Reddit, Wikipedia, ACL papers",
        labels=NLI3,
        metrics=("r3",),
        dev_splits={"full": ""},
        test_files={"test": "AX.tsv"},
        # the Hub has the unlabeled test set only: the labeled "full" split is the official TSV alone
        hub=HubSpec("ax", "premise", "hypothesis", label_names=NLI3, splits={"test": "test"}),
        in_glue_score=False,
        predicted_by="MNLI",
        # without an MNLI model, an RTE or QNLI one stands in (two-way only: scored on the binary collapse)
        diagnostic=DiagnosticSpec(categories=_AX_CATEGORIES, domain_column="Domain", stand_ins=("RTE", "QNLI")),
        extra_columns=(*_AX_CATEGORIES, "Domain"),
        downloads=(
            Remote(f"{GLUE_HOST}/glue/data/AX.tsv", 222257,
                   "0e13510b1bb14436ff7e2ee82338f0efb0133ecf2e73507a697dc210db3f05fd",
                   dest="diagnostic/diagnostic.tsv"),
            # the labeled file, from the link the GLUE authors' jiant toolkit uses; not pinned here: its
            # content is verified against the sha256 of the split below
            Remote("https://www.dropbox.com/s/ju7d95ifb072q9f/diagnostic-full.tsv?dl=1",
                   dest="diagnostic/diagnostic-full.tsv"),
        ),
        splits=(
            SplitSpec("test", "diagnostic/diagnostic.tsv", 1104, text_a=1, text_b=2, index=0, fields=3,
                      sha256="0e13510b1bb14436ff7e2ee82338f0efb0133ecf2e73507a697dc210db3f05fd"),
            SplitSpec("full", "diagnostic/diagnostic-full.tsv", 1104, text_a=5, text_b=6, label=7, fields=8,
                      sha256="f3e30cb6e5b8f229c0883f3da66d7378c6f037a5c89be9ca7d33929ab3333115"),
        ),
    ),
)

TASKS: dict[str, TaskSpec] = {}  # name -> spec, in registration order; `register_task` adds to it
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def _hub_problem(spec: TaskSpec, hub: HubSpec) -> str | None:
    """Why ``hub`` cannot describe ``spec``'s Hub copy, or None."""
    if unknown := set(hub.splits) - {s.name for s in spec.splits}:
        return f"hub.splits names splits it does not have: {', '.join(sorted(unknown))}"
    names = spec.class_names or ()
    if len(hub.label_names) != len(names) or set(hub.label_names) != set(names):
        return f"hub.label_names {list(hub.label_names)} are not its class names {list(names)} in some order"
    return None


def _problem(spec: TaskSpec) -> str | None:
    """Why ``spec`` cannot join the registry as it stands, or None."""
    if not _NAME.fullmatch(spec.name) or _key(spec.name) == "all":
        return "a task name is letters, digits, '.', '_' or '-' (and not 'all')"
    keys = {_key(n) for n in (spec.name, *spec.aliases)}
    for other in TASKS.values():
        if keys & {_key(n) for n in (other.name, *other.aliases)}:
            return f"its name or an alias is taken by {other.name}"
        if set(spec.test_files.values()) & set(other.test_files.values()):
            return f"a server file name is taken by {other.name}"
    splits = {s.name for s in spec.splits}
    if unknown := (set(spec.dev_splits) | set(spec.test_files)) - splits:
        return f"dev_splits/test_files name splits it does not have: {', '.join(sorted(unknown))}"
    if (spec.labels is None) != (spec.label_range is not None):
        return "a task has labels (classification) or a label_range (regression), not both or neither"
    if spec.positive_label is not None and spec.positive_label not in (spec.labels or ()):
        return f"positive_label {spec.positive_label!r} is not one of its labels"
    if "f1" in spec.metrics and spec.positive_label is None:
        return "the f1 metric needs a positive_label"
    if spec.hub is not None and (hub_problem := _hub_problem(spec, spec.hub)):
        return hub_problem
    sources = [spec.predicted_by] if spec.predicted_by else []
    sources += list(spec.diagnostic.stand_ins) if spec.diagnostic else []
    if missing := [name for name in sources if name not in TASKS]:
        return f"predicted by unregistered task(s) {', '.join(missing)}"
    return None


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task: from then on run, score, submit, check and download know it like a built-in one."""
    problem = _problem(spec)
    if problem:
        raise GluebenchError(f"cannot register task {spec.name!r}: {problem}")
    TASKS[spec.name] = spec
    return spec


def unregister_task(name: str) -> None:
    """Remove a task added with `register_task`; the GLUE tasks themselves stay."""
    if name in _BUILTIN:
        raise GluebenchError(f"{name} is a built-in GLUE task and cannot be unregistered")
    if name not in TASKS:
        raise GluebenchError(f"no registered task {name!r}")
    if users := [t.name for t in TASKS.values()
                 if t.predicted_by == name or (t.diagnostic and name in t.diagnostic.stand_ins)]:
        raise GluebenchError(f"{name} predicts {', '.join(users)}; unregister those first")
    del TASKS[name]


for _spec in _GLUE:
    register_task(_spec)
_BUILTIN = frozenset(TASKS)


class RegistryView(Sequence[_T]):
    """A read-only tuple recomputed from the registry at every use.

    Names bound at import (``from gluebench.tasks import GLUE_TASKS``) thereby still see tasks registered later.
    """

    def __init__(self, compute: Callable[[], tuple[_T, ...]]) -> None:
        self._compute = compute

    @overload
    def __getitem__(self, index: int) -> _T: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[_T, ...]: ...

    def __getitem__(self, index: int | slice) -> _T | tuple[_T, ...]:
        return self._compute()[index]

    def __len__(self) -> int:
        return len(self._compute())

    def __iter__(self) -> Iterator[_T]:
        return iter(self._compute())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RegistryView | tuple | list):
            return self._compute() == tuple(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._compute())


GLUE_TASKS: RegistryView[str] = RegistryView(lambda: tuple(t.name for t in TASKS.values() if t.in_glue_score))


def predicted_tasks(source: str) -> list[TaskSpec]:
    """The tasks predicted with ``source``'s model instead of one of their own (MNLI's: AX)."""
    return [t for t in TASKS.values() if t.predicted_by == source]


def diagnostic_tasks() -> list[TaskSpec]:
    """The diagnostic sets (AX), in registry order."""
    return [t for t in TASKS.values() if t.diagnostic is not None]


def get_task(name: str) -> TaskSpec:
    """Look a task up by its name or an alias, case, dashes and underscores ignored (``sst2``, ``STS-B``)."""
    key = _key(name)
    for spec in TASKS.values():
        if key in {_key(n) for n in (spec.name, *spec.aliases)}:
            return spec
    raise GluebenchError(f"unknown task {name!r} (choose from: {', '.join(TASKS)}, or 'all')")


def resolve_tasks(names: Iterable[str] | str | None, *, include_ax: bool = False) -> list[TaskSpec]:
    """Turn user input (``"all"``, ``"CoLA,RTE"`` or a list) into task specs, in registry order.

    ``"all"`` means the tasks of the GLUE score; ``include_ax`` adds the others (AX).
    """
    if names is None or names == "all" or (not isinstance(names, str) and list(names) == ["all"]):
        return [t for t in TASKS.values() if t.in_glue_score or include_ax]
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    wanted = {get_task(n).name for part in names for n in part.split(",") if n.strip()}
    return [t for t in TASKS.values() if t.name in wanted]
