"""How a slot picks its next token: greedy, llama.cpp's sampler chain, or the chain under a
grammar (JSON mode, a JSON schema, a tool call).

A grammar applied to every candidate costs as much as the rest of a step: measured on the demo
model, 39 tokens/s plain and 9-13 with a grammar checking all 262k candidates. So, as
llama.cpp's own server does, the token is drawn without the grammar first and checked alone;
only when the grammar refuses it are all candidates masked and the draw made again.
"""

from __future__ import annotations

import ctypes
import random
from typing import Protocol

import llama_cpp
import llama_cpp._internals as internals
import numpy as np
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

from fovea.engine.tools.grammar import AUTO_TRIGGER, json_schema_grammar, tool_grammar
from fovea.engine.types import GenerationRequest, ResponseFormat, ToolUse


class Sampler(Protocol):
    def sample(self, index: int) -> int:
        """The next token from the logits at ``index`` of the last decode."""

    def close(self) -> None: ...


def build_sampler(
    model: internals.LlamaModel,
    ctx: internals.LlamaContext,
    n_vocab: int,
    request: GenerationRequest,
) -> Sampler:
    """The sampler for ``request``: its own seed, penalties and grammar."""
    params = request.sampling
    tools = request.tools
    grammar = _grammar_for(request.response_format) if tools is None else _tool_grammar(tools)
    if (
        params.temperature == 0.0
        and grammar is None
        and params.frequency_penalty == 0.0
        and params.presence_penalty == 0.0
    ):
        return GreedySampler(ctx, n_vocab)
    seed = params.seed if params.seed is not None else random.getrandbits(31)
    chain = internals.LlamaSampler()
    chain.add_penalties(
        n_vocab=n_vocab,
        penalty_last_n=64,
        penalty_repeat=1.0,
        penalty_freq=params.frequency_penalty,
        penalty_present=params.presence_penalty,
    )
    if params.temperature == 0.0:
        chain.add_greedy()
    else:
        chain.add_top_p(params.top_p, 1)
        chain.add_temp(params.temperature)
        chain.add_dist(seed)
    if grammar is None:
        return ChainSampler(ctx, chain)
    # The grammar lives in a chain of its own, applied only when a draw needs it.
    checker = internals.LlamaSampler()
    if tools is not None and tools.choice == "auto":
        # Free text until the model opens a call; the call itself under the grammar.
        checker.add_grammar_lazy_patterns(model, grammar, [AUTO_TRIGGER], [])
    else:
        checker.add_grammar(model, grammar)
    return GrammarSampler(ctx, chain, checker, n_vocab)


class GreedySampler:
    """Temperature 0, no grammar, no penalties: the logits' argmax, read in place."""

    def __init__(self, ctx: internals.LlamaContext, n_vocab: int) -> None:
        self._ctx = ctx
        self._n_vocab = n_vocab

    def sample(self, index: int) -> int:
        logits = llama_cpp.llama_get_logits_ith(self._ctx.ctx, index)
        return int(np.argmax(np.ctypeslib.as_array(logits, shape=(self._n_vocab,))))

    def close(self) -> None:
        pass


class ChainSampler:
    """llama.cpp's sampler chain (penalties, top-p, temperature, seeded draw)."""

    def __init__(self, ctx: internals.LlamaContext, chain: internals.LlamaSampler) -> None:
        self._ctx = ctx
        self._chain = chain

    def sample(self, index: int) -> int:
        # llama_sampler_sample also accepts the token: the penalties move on.
        return int(self._chain.sample(self._ctx, index))

    def close(self) -> None:
        self._chain.close()


class GrammarSampler:
    """The chain's draw, kept when the grammar allows it; else a draw among the candidates
    the grammar allows. The grammar then accepts the token, whichever way it was drawn."""

    def __init__(
        self,
        ctx: internals.LlamaContext,
        chain: internals.LlamaSampler,
        grammar: internals.LlamaSampler,
        n_vocab: int,
    ) -> None:
        self._ctx = ctx
        self._chain = chain
        self._grammar = grammar
        self._n_vocab = n_vocab
        self._one = (llama_cpp.llama_token_data * 1)()
        self._single = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._one, llama_cpp.llama_token_data_p), size=1, selected=-1
        )
        self._all: internals.LlamaTokenDataArray | None = None  # made on the first refusal
        self.refusals = 0

    def sample(self, index: int) -> int:
        token = int(self._chain.sample(self._ctx, index))
        if not self._allows(token):
            self.refusals += 1
            token = self._constrained(index)
        llama_cpp.llama_sampler_accept(self._grammar.sampler, token)
        return token

    def _allows(self, token: int) -> bool:
        self._one[0] = llama_cpp.llama_token_data(token, 1.0, 0.0)
        self._single.size, self._single.selected, self._single.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(self._grammar.sampler, ctypes.byref(self._single))
        return bool(np.isfinite(self._one[0].logit))

    def _constrained(self, index: int) -> int:
        if self._all is None:
            self._all = internals.LlamaTokenDataArray(n_vocab=self._n_vocab)
        logits = llama_cpp.llama_get_logits_ith(self._ctx.ctx, index)
        self._all.copy_logits(np.ctypeslib.as_array(logits, shape=(self._n_vocab,)))
        candidates = ctypes.byref(self._all.candidates)
        llama_cpp.llama_sampler_apply(self._grammar.sampler, candidates)
        # The chain draws again among what the grammar left (its penalties have seen the
        # refused token: a small bias, only with penalties set, only on refusals).
        llama_cpp.llama_sampler_apply(self._chain.sampler, candidates)
        # Read through the array's own pointer: a sampler may have moved its data.
        chosen = self._all.candidates
        return int(chosen.data[chosen.selected].id)

    def close(self) -> None:
        self._chain.close()
        self._grammar.close()


def _tool_grammar(tools: ToolUse) -> LlamaGrammar:
    return LlamaGrammar.from_string(tool_grammar(tools), verbose=False)


def _grammar_for(response_format: ResponseFormat) -> LlamaGrammar | None:
    if response_format.kind == "json_object":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    if response_format.kind == "json_schema":
        grammar = json_schema_grammar(response_format.schema or {})
        return LlamaGrammar.from_string(grammar, verbose=False)
    return None
