"""Pack what ``bench_transformer.py --parts gpu`` reads into one ignored folder, for a GPU machine that has
PyTorch and transformers but neither this project's data nor MiniLM's package (nothing can be fetched there).

The folder holds SST-2's train and dev files, QNLI's dev file and MiniLM in float16 (45 MB instead of 91, so
the folder and the checkout travel under 64 MiB). ``--unpack`` on the GPU machine writes the float32
checkpoint the benchmark trains (float16 weights would make transformers load a float16 model).

    .venv/bin/python bench/gpu_bundle.py                       # here: writes .gpu-bundle/
    python3 bench/gpu_bundle.py --unpack /tmp/minilm           # there, then:
    PYTHONPATH=src python3 bench/bench_transformer.py --parts gpu --data-dir .gpu-bundle/glue \\
        --model-path /tmp/minilm --work-dir $OUT/bench-gpu --out $OUT/gpu.md
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = ("SST-2/train.tsv", "SST-2/dev.tsv", "QNLI/dev.tsv")


def copy_checkpoint(source: Path, target: Path, dtype_name: str) -> None:
    """The encoder and tokenizer of ``source`` saved to ``target`` with weights in ``dtype_name``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(source, dtype=getattr(torch, dtype_name)).save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)


def pack(bundle: Path, glue: Path) -> None:
    from gluebench.models.transformer import minilm_path

    for name in FILES:
        (bundle / "glue" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(glue / name, bundle / "glue" / name)
    copy_checkpoint(minilm_path(), bundle / "minilm-fp16", "float16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(REPO / ".gpu-bundle"))
    parser.add_argument("--data-dir", default=None, help="the GLUE folder to copy from (found as gluebench finds it)")
    parser.add_argument("--unpack", default=None, metavar="DIR", help="write the float32 checkpoint to DIR")
    args = parser.parse_args()
    if args.unpack:
        copy_checkpoint(Path(args.bundle) / "minilm-fp16", Path(args.unpack), "float32")
        return
    from gluebench.data.locate import find_data_dir

    glue, _ = find_data_dir(args.data_dir)
    if glue is None:
        raise SystemExit("no GLUE data found (give --data-dir)")
    pack(Path(args.bundle), glue)
    size = sum(f.stat().st_size for f in Path(args.bundle).rglob("*") if f.is_file())
    print(f"wrote {args.bundle} ({size / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
