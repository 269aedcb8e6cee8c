"""The frozen Gemma 3 270M in torch (dequantised from the demo's GGUF), fed soft tokens where
libmtmd puts them, with Gemma 3's attention rule: the image block bidirectional, the rest causal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fovea.modelgen.vision.mtmd_runner import PromptLayout


@dataclass(frozen=True)
class Example:
    """One training sequence: the prompt's layout and the answer's token ids (target)."""

    layout: PromptLayout
    answer: list[int]


def load_frozen(model_path: Path) -> nn.Module:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(model_path.parent), gguf_file=model_path.name, dtype=torch.float32
    )
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


class FrozenLanguageModel:
    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.embed = model.get_input_embeddings()
        with torch.no_grad():
            sample = self.embed(torch.arange(1000, 3000))
        # The norm of a (scaled) text token's embedding: the scale soft tokens are measured by.
        self.text_norm = float(sample.norm(dim=-1).mean())

    def hidden(
        self, soft: list[torch.Tensor], examples: list[Example]
    ) -> tuple[torch.Tensor, list[int]]:
        """Final hidden states for every position, and where each example's answer starts.

        ``soft[row]`` holds that example's images' soft tokens, one block after another
        ([n_images * n_image_tokens, n_embd]). The vocabulary head (262k rows) runs only where
        a token is scored: most of a step's time otherwise."""
        sequences, image_spans, starts = [], [], []
        for row, example in enumerate(examples):
            layout = example.layout
            block = layout.n_image_tokens
            parts, spans, position = [], [], 0
            for index, piece in enumerate(layout.pieces):
                tokens = list(piece) + (example.answer if index == layout.n_images else [])
                parts.append(self.embed(torch.tensor(tokens, dtype=torch.long)))
                position += len(piece)
                if index < layout.n_images:
                    parts.append(soft[row][index * block : (index + 1) * block])
                    spans.append((position, position + block))
                    position += block
            sequences.append(torch.cat(parts))
            image_spans.append(spans)
            starts.append(position)
        length = max(s.shape[0] for s in sequences)
        embeds = torch.zeros(len(sequences), length, sequences[0].shape[1])
        for row, sequence in enumerate(sequences):
            embeds[row, : sequence.shape[0]] = sequence
        mask = attention_mask(length, image_spans)
        output = self.model.model(
            inputs_embeds=embeds,
            attention_mask={"full_attention": mask, "sliding_attention": mask},
        )
        return output.last_hidden_state, starts

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.lm_head(hidden)
        cap = self.model.config.final_logit_softcapping
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def loss(self, soft: list[torch.Tensor], examples: list[Example]) -> torch.Tensor:
        """Cross-entropy at the answer positions only."""
        hidden, starts = self.hidden(soft, examples)
        rows = [
            hidden[row, start - 1 : start - 1 + len(example.answer)]
            for row, (example, start) in enumerate(zip(examples, starts, strict=True))
        ]
        targets = torch.tensor([token for example in examples for token in example.answer])
        logits = self.head(torch.cat(rows))
        # Every example weighs the same, whatever its answer's length.
        weights = torch.cat([torch.full((len(e.answer),), 1 / len(e.answer)) for e in examples])
        losses = nn.functional.cross_entropy(logits, targets, reduction="none")
        return (losses * weights).sum() / len(examples)

    @torch.no_grad()
    def greedy(
        self, soft: list[torch.Tensor], layouts: list[PromptLayout], steps: int
    ) -> list[list[int]]:
        """Greedy continuations (no KV cache: the sequences are short)."""
        answers: list[list[int]] = [[] for _ in layouts]
        for _ in range(steps):
            examples = [
                Example(layout, answer) for layout, answer in zip(layouts, answers, strict=True)
            ]
            hidden, starts = self.hidden(soft, examples)
            last = torch.stack(
                [hidden[row, start - 1 + len(answers[row])] for row, start in enumerate(starts)]
            )
            for row, token in enumerate(self.head(last).argmax(-1).tolist()):
                answers[row].append(int(token))
        return answers


def attention_mask(length: int, image_spans: list[list[tuple[int, int]]]) -> torch.Tensor:
    """Additive [B, 1, T, T] mask: causal, plus every image token sees its whole image block."""
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    masks = []
    for spans in image_spans:
        allowed = causal.clone()
        for start, end in spans:
            allowed[start:end, start:end] = True
        masks.append(allowed)
    allowed_all = torch.stack(masks)[:, None]
    return torch.zeros(allowed_all.shape).masked_fill(~allowed_all, torch.finfo(torch.float32).min)
