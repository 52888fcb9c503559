"""The registered model families: the one place that maps a ``--model`` name to the family that builds it.

Listing them here, rather than having each family register itself when imported, keeps the imports one way:
the registry imports the families, the families import only `gluebench.models.base`.
"""

from __future__ import annotations

from collections.abc import Callable

from gluebench.errors import GluebenchError
from gluebench.models.base import ModelFamily
from gluebench.models.static import DEFAULTS, StaticFamily
from gluebench.models.transformer import HF_PREFIX, MINILM, TransformerFamily

# ``--model NAME`` -> the factory called with NAME; "hf:" stands for every ``hf:<model id or path>``
FAMILIES: dict[str, Callable[[str], ModelFamily]] = {
    **dict.fromkeys(DEFAULTS, StaticFamily),
    MINILM: TransformerFamily,
    HF_PREFIX: TransformerFamily,
}


def get_family(name: str) -> ModelFamily:
    """The family for ``--model NAME``; ``hf:<id or path>`` selects any Hugging Face encoder."""
    key = HF_PREFIX if name.startswith(HF_PREFIX) else name
    if key not in FAMILIES:
        known = ", ".join(sorted(n for n in FAMILIES if n != HF_PREFIX))
        raise GluebenchError(f"unknown model {name!r} (choose from: {known}, or hf:<model id or path>)")
    return FAMILIES[key](name)
