"""How well an embedding model finds the right document for a query: the 40 hand-written pairs
of ``bench/retrieval_pairs.json``, each query ranked against all 40 documents by cosine.

Reports top-1 accuracy (the right document ranked first), top-3 and the mean reciprocal rank,
against chance (1/40) and against a word-overlap baseline that knows no meaning at all.

    .venv/bin/python bench/embedding_retrieval.py [--model PATH] [--pooling mean|cls|last]

Without ``--model`` it measures the demo model (Gemma 3 270M base, as the demo catalog serves
it for ``text-search-doc`` and ``text-search-query``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fovea.engine.llamacpp_embeddings import EmbeddingConfig, LlamaCppEmbedder  # noqa: E402
from fovea.modelgen.demo import prepare_demo_model  # noqa: E402
from fovea.settings import Settings  # noqa: E402

PAIRS = ROOT / "bench" / "retrieval_pairs.json"


def load_pairs() -> tuple[list[str], list[str]]:
    pairs = json.loads(PAIRS.read_text(encoding="utf-8"))["pairs"]
    return [p["query"] for p in pairs], [p["document"] for p in pairs]


def ranks(scores: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
    """The rank (1 = first) of each query's right document (the one at its own index)."""
    right = np.diag(scores)[:, None]
    return (scores > right).sum(axis=1) + 1


def report(name: str, found: npt.NDArray[np.int64]) -> dict[str, float]:
    result = {
        "top1": float((found == 1).mean()),
        "top3": float((found <= 3).mean()),
        "mrr": float((1.0 / found).mean()),
    }
    print(
        f"{name:<28} top-1 {result['top1']:6.1%}   top-3 {result['top3']:6.1%}   "
        f"MRR {result['mrr']:.3f}"
    )
    return result


def word_overlap(queries: list[str], documents: list[str]) -> npt.NDArray[np.floating]:
    words = [set(re.findall(r"[a-z]+", text.lower())) for text in (*queries, *documents)]
    q, d = words[: len(queries)], words[len(queries) :]
    return np.array([[len(a & b) / (len(a | b) or 1) for b in d] for a in q])


async def embedding_scores(
    model: Path, pooling: str | None, queries: list[str], documents: list[str]
) -> npt.NDArray[np.floating]:
    embedder = LlamaCppEmbedder(
        EmbeddingConfig(name="bench", model_path=model, context_length=512, pooling=pooling)  # type: ignore[arg-type]
    )
    await embedder.start()
    try:
        vectors = (await embedder.embed([*queries, *documents])).vectors
    finally:
        await embedder.aclose()
    return vectors[: len(queries)] @ vectors[len(queries) :].T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--pooling", choices=["mean", "cls", "last"], default=None)
    args = parser.parse_args()
    model = args.model or prepare_demo_model(Settings().models_dir).model
    queries, documents = load_pairs()
    print(f"{len(queries)} queries, each ranked against {len(documents)} documents")
    print(f"{'chance':<28} top-1 {1 / len(documents):6.1%}")
    report("word overlap (no model)", ranks(word_overlap(queries, documents)))
    scores = asyncio.run(embedding_scores(model, args.pooling, queries, documents))
    report(f"{model.name} ({args.pooling or 'declared/mean'})", ranks(scores))


if __name__ == "__main__":
    main()
