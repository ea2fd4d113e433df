"""Train the byte-level BPE tokenizer shipped with tokbench's offline presets.

The presets use random weights, but their tokenizer is a real byte-level BPE so that token counts,
prompt construction and decode behave like a production model. It is trained on English prose that
the repository owns (``data/tokenizer-corpus/*.txt`` plus ``src/tokbench/presets/prompt.txt``), so
anyone can regenerate it byte for byte.

Usage (from the repository root)::

    python scripts/train_tokenizer.py            # (re)write src/tokbench/presets/tokenizer/
    python scripts/train_tokenizer.py --check    # retrain into a temp dir; exit 1 if the committed
                                                 # files differ (for CI / after editing the corpus)
    python scripts/train_tokenizer.py --out DIR  # write somewhere else

Outputs: ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``, loadable
offline with ``transformers.AutoTokenizer.from_pretrained("src/tokbench/presets/tokenizer")``.
Special tokens are fixed at ids 0-2 and every encoding starts with ``<|begin_of_text|>``.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = REPO_ROOT / "data" / "tokenizer-corpus"
PROMPT_FILE = REPO_ROOT / "src" / "tokbench" / "presets" / "prompt.txt"
DEFAULT_OUT = REPO_ROOT / "src" / "tokbench" / "presets" / "tokenizer"

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
PAD = "<|pad|>"
# Order matters: the trainer assigns ids in this order, so BOS=0, EOS=1, PAD=2.
SPECIAL_TOKENS = [BOS, EOS, PAD]
VOCAB_SIZE = 8192
MIN_FREQUENCY = 2
MODEL_MAX_LENGTH = 131072
OUTPUT_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def corpus_files() -> list[Path]:
    """All training inputs, sorted so the merge order never depends on directory listing order."""
    files = sorted(CORPUS_DIR.glob("*.txt"))
    if not files:
        raise SystemExit(f"no corpus files found in {CORPUS_DIR}")
    return [*files, PROMPT_FILE]


def read_texts(files: list[Path]) -> list[str]:
    # Read bytes and decode explicitly so the platform's default encoding / newline translation
    # cannot change what the trainer sees.
    return [f.read_bytes().decode("utf-8") for f in files]


def build_tokenizer(texts: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    # add_prefix_space=False: the first word of a text is encoded without a synthetic leading space,
    # which keeps decode(encode(text)) == text exact.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=MIN_FREQUENCY,
        special_tokens=SPECIAL_TOKENS,
        # All 256 byte symbols up front, so any input (even non-ASCII) stays encodable.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    bos_id = tok.token_to_id(BOS)
    # ByteLevel keeps offsets correct; the template prepends BOS like Llama-3-style tokenizers.
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=False, trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS}:0 $A:0",
                pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
                special_tokens=[(BOS, bos_id)],
            ),
        ]
    )
    return tok


def tokenizer_config() -> dict[str, object]:
    # Written by hand rather than via transformers.save_pretrained so the file does not change with
    # the installed transformers version (that would break --check).
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": BOS,
        # Cleanup would turn " ." into "." and break exact round-trips.
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": MODEL_MAX_LENGTH,
        "pad_token": PAD,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def write_json(path: Path, obj: object) -> None:
    # sort_keys + fixed indent + trailing newline: stable bytes across runs and Python versions.
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def train(out_dir: Path) -> Tokenizer:
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(read_texts(corpus_files()))
    for token, expected in zip(SPECIAL_TOKENS, range(len(SPECIAL_TOKENS)), strict=True):
        actual = tok.token_to_id(token)
        if actual != expected:
            raise SystemExit(f"special token {token!r} got id {actual}, expected {expected}")
    if tok.get_vocab_size() > VOCAB_SIZE:
        raise SystemExit(f"vocab size {tok.get_vocab_size()} exceeds {VOCAB_SIZE}")
    # Tokenizer.save re-serialises the same JSON as to_str; pretty=True keeps diffs reviewable.
    (out_dir / "tokenizer.json").write_text(tok.to_str(pretty=True) + "\n", encoding="utf-8")
    write_json(out_dir / "tokenizer_config.json", tokenizer_config())
    write_json(
        out_dir / "special_tokens_map.json",
        {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD},
    )
    return tok


def check(committed: Path) -> int:
    """Retrain into a temp dir and compare byte for byte with the committed files."""
    with tempfile.TemporaryDirectory(prefix="tokbench-tok-") as tmp:
        fresh = Path(tmp)
        train(fresh)
        bad = [
            name
            for name in OUTPUT_FILES
            if not (committed / name).is_file() or not filecmp.cmp(committed / name, fresh / name, shallow=False)
        ]
    if bad:
        print(
            f"tokenizer assets out of date in {committed}: {', '.join(bad)}\n"
            f"regenerate with: python scripts/train_tokenizer.py",
            file=sys.stderr,
        )
        return 1
    print(f"tokenizer assets in {committed} are up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--check",
        action="store_true",
        help="retrain into a temp dir and exit 1 if the files in --out differ",
    )
    args = parser.parse_args(argv)
    if args.check:
        return check(args.out)
    tok = train(args.out)
    print(f"wrote {', '.join(OUTPUT_FILES)} to {args.out}")
    print(f"final vocab size: {tok.get_vocab_size()} (target {VOCAB_SIZE})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
