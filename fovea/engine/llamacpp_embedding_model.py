"""An embedding model in llama.cpp: loading, tokenizing, decoding inputs together, pooling.

Everything here runs on the embedder's one worker thread (``llamacpp_embeddings.py``).

Pooling happens here, on llama.cpp's per-token outputs (``LLAMA_POOLING_TYPE_NONE``), as the
model declares (``<arch>.pooling_type``: mean, cls or last), and as mean for a model that
declares none (a generative model used as an embedder, like the demo's). llama.cpp's own
pooling needs each input whole in one micro-batch, and a generative model's micro-batch also
holds a row of logits per token (262,144 floats for Gemma 3): 4.5 GB of buffers for a
2048-token input. Pooled here, an input of a causal model spans as many chunks of ``n_batch``
tokens as it needs, its KV cache carrying the earlier ones (measured on the demo model: a
791-token input in 256-token chunks gives the one-chunk vector, cosine 0.9999998, where
llama.cpp's mean across chunks gives 0.93). A model with bidirectional attention (BERT-like)
must see each input whole, so its chunks are whole rounds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import llama_cpp
import llama_cpp._internals as internals
import numpy as np
import numpy.typing as npt
from llama_cpp._logger import set_verbose as set_llama_verbose

from fovea.engine.model_files import check_gguf, unloadable
from fovea.errors import ContextLengthError, EngineError, InvalidRequestError

Pooling = Literal["mean", "cls", "last"]

_DECLARED: dict[int, Pooling] = {
    llama_cpp.LLAMA_POOLING_TYPE_MEAN: "mean",
    llama_cpp.LLAMA_POOLING_TYPE_CLS: "cls",
    llama_cpp.LLAMA_POOLING_TYPE_LAST: "last",
}


@dataclass(frozen=True)
class EmbeddingConfig:
    """What the llama.cpp embedder needs to load one deployment branch."""

    name: str
    model_path: Path
    # The longest input, in tokens; also the tokens one round of inputs shares.
    context_length: int = 2048
    pooling: Pooling | None = None  # None: as the model declares, else mean
    n_threads: int | None = None
    n_gpu_layers: int = 0
    flash_attn: bool = True
    # Tokens decoded at once (causal models). llama.cpp keeps a row of logits per token of a
    # generative model: measured RSS for the demo model 0.9 GB at 256, 1.4 GB at 512.
    n_batch: int = 256
    # Inputs one round holds at most (sequences of the KV cache).
    max_sequences: int = 64


class Cancelled(Exception):
    """The caller left; the rest of its inputs are not decoded."""


class EmbeddingModel:
    """A loaded GGUF and one context with embeddings on; a round of inputs at a time."""

    def __init__(self, config: EmbeddingConfig) -> None:
        self.config = config
        set_llama_verbose(False)
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = config.n_gpu_layers
        # Without repacked weights a token's arithmetic depends less on how many tokens share
        # its decode: an input embedded alone and in a batch agree more closely.
        params.use_extra_bufts = False
        check_gguf(config.model_path)
        try:
            self._model = internals.LlamaModel(
                path_model=str(config.model_path), params=params, verbose=False
            )
        except ValueError:
            raise unloadable(config.model_path) from None
        try:
            metadata = self._model.metadata()
            self.pooling: Pooling = config.pooling or declared_pooling(metadata) or "mean"
            self.is_causal = _is_causal(metadata)
            self.dimensions = int(llama_cpp.llama_model_n_embd_out(self._model.model))
            self.n_vocab = self._model.n_vocab()
            self.context_length = config.context_length
            # A bidirectional model sees a round whole; a causal one in chunks.
            self.chunk = (
                min(config.n_batch, config.context_length)
                if self.is_causal
                else config.context_length
            )
            self.ctx = self._new_context()
            self.batch = internals.LlamaBatch(
                n_tokens=self.chunk, embd=0, n_seq_max=1, verbose=False
            )
        except Exception:
            self._model.close()
            raise

    def _new_context(self) -> internals.LlamaContext:
        config = self.config
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = config.context_length
        params.n_batch = params.n_ubatch = self.chunk
        params.n_seq_max = config.max_sequences
        # Every token is an output; llama.cpp also reserves one per sequence.
        params.n_outputs_max = max(self.chunk, config.max_sequences)
        params.n_threads = params.n_threads_batch = config.n_threads or os.cpu_count() or 1
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_NONE  # pooled here
        # A round's inputs share the context's positions, however long each is.
        params.kv_unified = True
        params.swa_full = True
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if config.flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        return internals.LlamaContext(model=self._model, params=params, verbose=False)

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
        self._model.close()

    # -- inputs -----------------------------------------------------------------------------

    def tokens(self, inputs: Sequence[str | Sequence[int]]) -> list[list[int]]:
        """Each input's tokens (texts with the special tokens the vocabulary adds, BOS or
        CLS/SEP; token ids as given); raises the 400s (too long, unknown ids)."""
        result = []
        for index, item in enumerate(inputs):
            if isinstance(item, str):
                tokens: list[int] = self._model.tokenize(
                    item.encode("utf-8"), add_bos=True, special=False
                )
            else:
                tokens = list(item)
                self._check_ids(tokens, index)
            if len(tokens) > self.context_length:
                raise ContextLengthError(
                    f"This model's maximum context length is {self.context_length} tokens. "
                    f"However, input[{index}] has {len(tokens)} tokens. Please shorten it or "
                    "split it into several inputs.",
                    param="input",
                )
            result.append(tokens)
        return result

    def _check_ids(self, tokens: list[int], index: int) -> None:
        bad = next((t for t in tokens if not 0 <= t < self.n_vocab), None)
        if bad is not None:
            raise InvalidRequestError(
                f"input[{index}] has the token id {bad}, outside this model's vocabulary "
                f"(0 to {self.n_vocab - 1})",
                param="input",
            )

    # -- embedding --------------------------------------------------------------------------

    def embed(
        self, inputs: list[list[int]], is_cancelled: Callable[[], bool] = lambda: False
    ) -> npt.NDArray[np.float32]:
        """One L2-normalised vector per input, in order; rounds of inputs are decoded together."""
        vectors = np.empty((len(inputs), self.dimensions), dtype=np.float32)
        for indices in rounds(
            [len(t) for t in inputs], self.context_length, self.config.max_sequences
        ):
            if is_cancelled():
                raise Cancelled
            vectors[indices] = self._embed_round([inputs[i] for i in indices])
        return vectors

    def _embed_round(self, inputs: list[list[int]]) -> npt.NDArray[np.float32]:
        memory = llama_cpp.llama_get_memory(self.ctx.ctx)
        if memory:  # models without attention memory (BERT-like) keep nothing between calls
            llama_cpp.llama_memory_clear(memory, True)
        lengths = np.array([len(t) for t in inputs])
        seqs = np.repeat(np.arange(len(inputs)), lengths)
        positions = np.concatenate([np.arange(n) for n in lengths])
        tokens = np.concatenate([np.asarray(t, dtype=np.int64) for t in inputs])
        pool = _Pool(self.pooling, lengths, self.dimensions)
        for start in range(0, len(tokens), self.chunk):
            part = slice(start, start + self.chunk)
            rows = self._decode(tokens[part], seqs[part], positions[part])
            pool.add(seqs[part], positions[part], rows)
        return normalise(pool.result())

    def _decode(
        self,
        tokens: npt.NDArray[np.int64],
        seqs: npt.NDArray[np.int64],
        positions: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.float32]:
        """Decode one chunk; every token's output vector, in order."""
        batch = self.batch.batch
        batch.n_tokens = len(tokens)
        for i, (token, seq, position) in enumerate(
            zip(tokens.tolist(), seqs.tolist(), positions.tolist(), strict=True)
        ):
            batch.token[i] = token
            batch.pos[i] = position
            batch.seq_id[i][0] = seq
            batch.n_seq_id[i] = 1
            batch.logits[i] = True
        result = llama_cpp.llama_decode(self.ctx.ctx, batch)
        if result != 0:
            raise EngineError(f"llama_decode failed ({result})")
        output = llama_cpp.llama_get_embeddings(self.ctx.ctx)
        if not output:
            raise EngineError("llama.cpp returned no embeddings")
        return np.ctypeslib.as_array(output, shape=(len(tokens), self.dimensions))


def rounds(lengths: Sequence[int], context_length: int, max_sequences: int) -> Iterator[list[int]]:
    """Inputs (by index, in order) grouped so each group's tokens fit the context together."""
    group: list[int] = []
    used = 0
    for index, length in enumerate(lengths):
        if group and (used + length > context_length or len(group) == max_sequences):
            yield group
            group, used = [], 0
        group.append(index)
        used += length
    if group:
        yield group


class _Pool:
    """Token vectors of a round pooled into one per input, a chunk at a time."""

    def __init__(self, pooling: Pooling, lengths: npt.NDArray[np.int64], dimensions: int) -> None:
        self._pooling = pooling
        self._lengths = lengths
        self._sums = np.zeros((len(lengths), dimensions), dtype=np.float64)

    def add(
        self,
        seqs: npt.NDArray[np.int64],
        positions: npt.NDArray[np.int64],
        rows: npt.NDArray[np.float32],
    ) -> None:
        if self._pooling == "mean":
            np.add.at(self._sums, seqs, rows)
            return
        wanted = 0 if self._pooling == "cls" else self._lengths[seqs] - 1
        chosen = positions == wanted
        self._sums[seqs[chosen]] = rows[chosen]

    def result(self) -> npt.NDArray[np.float64]:
        if self._pooling == "mean":
            return self._sums / self._lengths[:, None]
        return self._sums


def normalise(vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def declared_pooling(metadata: dict[str, str]) -> Pooling | None:
    """The pooling the GGUF declares (``<arch>.pooling_type``); None when it declares none.
    A reranker's (rank) is refused: its output is a score, not a vector."""
    value = metadata.get(f"{metadata.get('general.architecture', '')}.pooling_type")
    if value is None or not value.lstrip("-").isdigit():
        return None
    code = int(value)
    if code == llama_cpp.LLAMA_POOLING_TYPE_RANK:
        raise ValueError("the model is a reranker (pooling type rank), not an embedding model")
    return _DECLARED.get(code)


def _is_causal(metadata: dict[str, str]) -> bool:
    value = metadata.get(f"{metadata.get('general.architecture', '')}.attention.causal")
    return value is None or value.strip().lower() not in ("false", "0")
