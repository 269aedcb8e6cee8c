"""Train the demo's vision tower: classifier pre-training, then through the frozen Gemma 3 270M.

``python -m fovea.modelgen.vision.train --out DIR --steps N``. Resumes from ``DIR/checkpoint.pt``;
logs JSON lines to ``DIR/log.jsonl``; writes ``DIR/mmproj-gemma-3-demo.gguf`` at every checkpoint
and evaluates held-out pictures both in torch and through llama.cpp's libmtmd (what ships).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fovea.modelgen.demo import prepare_text_model
from fovea.modelgen.mmproj import VisionTowerShape
from fovea.modelgen.vision.evaluation import compare, held_out, held_out_pairs
from fovea.modelgen.vision.export import write_mmproj
from fovea.modelgen.vision.language_model import Example, FrozenLanguageModel, load_frozen
from fovea.modelgen.vision.mtmd_runner import MtmdRunner, Part, PromptLayout
from fovea.modelgen.vision.pictures import (
    COLOURS,
    SHAPES,
    Pair,
    Picture,
    draw_pair,
    draw_picture,
    to_model_input,
)
from fovea.modelgen.vision.tower import LAYER_NORM_EPS, TOKENS_PER_SIDE, VisionTower, pixels

TOWER_SHAPE = VisionTowerShape(hidden_size=256, feed_forward_size=1024, block_count=4, head_count=4)
_PRETRAIN_SEEDS = 5_000_000
_PAIR_SEEDS = 7_000_000
_PRETRAIN_EVAL_EVERY = 100
_FIT_SEEDS = 9_000_000
_FIT_PICTURES = 512
_END_OF_TURN = "<end_of_turn>"
_MMPROJ = "mmproj-gemma-3-demo.gguf"


@dataclass(frozen=True)
class TrainConfig:
    out: Path
    steps: int = 1400  # through the language model
    pretrain_steps: int = 2000  # tower as a colour + shape classifier, at most
    pretrain_target: float = 0.97  # ends early once held-out colour and shape reach this
    batch_size: int = 8
    pretrain_batch_size: int = 16
    lr: float = 3e-3
    pretrain_lr: float = 3e-4
    norm_cap: float = 3.0  # soft-token norm cap, in mean text-embedding norms
    checkpoint_seconds: float = 300.0
    eval_every: int = 200
    eval_pictures: int = 48
    eval_pairs: int = 12
    pair_share: float = 0.4  # of the examples through the language model: two-image prompts
    warmup_steps: int = 50
    decay_steps: int = 400  # the last steps through the LM: the rate falls to a tenth (cosine)
    threads: int = 2
    seed: int = 0


class Trainer:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.out = config.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.text_model = prepare_text_model(self.out / "models")
        torch.manual_seed(config.seed)
        self.tower = VisionTower(TOWER_SHAPE)
        hidden = TOWER_SHAPE.hidden_size
        # The heads read the projector's 4x4 pooled grid (what the language model will see), not a
        # mean over patches: with a mean, shape stayed at chance for 400 steps of 16 pictures.
        # Dense heads as well: every patch names the whole picture's colour and shape. 256
        # targets per picture instead of one, and they push each token to carry the answer.
        grid = hidden * TOKENS_PER_SIDE**2
        self.heads = nn.ModuleDict(
            {
                "colour": nn.Linear(grid, len(COLOURS)),
                "shape": nn.Linear(grid, len(SHAPES)),
                "patch_colour": nn.Linear(hidden, len(COLOURS)),
                "patch_shape": nn.Linear(hidden, len(SHAPES)),
            }
        )
        self.phase, self.step = "pretrain", 0
        self.projector_fitted = False
        self.optimizer = self._optimizer()
        self._resume()
        self._last_save = time.monotonic()

    def _optimizer(self) -> torch.optim.Optimizer:
        if self.phase == "pretrain":
            parameters = list(self.tower.parameters()) + list(self.heads.parameters())
            return torch.optim.AdamW(parameters, lr=self.config.pretrain_lr, weight_decay=0.05)
        projector = [self.tower.soft_emb_norm, self.tower.input_projection]
        body = [p for p in self.tower.parameters() if all(p is not q for q in projector)]
        groups = [
            {"params": projector, "lr": self.config.lr, "base_lr": self.config.lr},
            {"params": body, "lr": self.config.lr / 10, "base_lr": self.config.lr / 10},
        ]
        return torch.optim.AdamW(groups, weight_decay=0.0)

    # -- checkpoints ----------------------------------------------------------------------------

    def _resume(self) -> None:
        path = self.out / "checkpoint.pt"
        if not path.exists():
            return
        state = torch.load(path, weights_only=False)
        self.tower.load_state_dict(state["tower"])
        self.heads.load_state_dict(state["heads"])
        self.phase, self.step = state["phase"], state["step"]
        self.projector_fitted = state.get("projector_fitted", False)
        self.optimizer = self._optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.log({"event": "resumed", "phase": self.phase, "step": self.step})

    def save(self) -> None:
        state = {
            "tower": self.tower.state_dict(),
            "heads": self.heads.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "phase": self.phase,
            "step": self.step,
            "projector_fitted": self.projector_fitted,
            "config": {k: str(v) for k, v in asdict(self.config).items()},
        }
        tmp = self.out / "checkpoint.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.out / "checkpoint.pt")
        write_mmproj(self.out / _MMPROJ, TOWER_SHAPE, self.tower.gguf_tensors())
        self._last_save = time.monotonic()

    def maybe_save(self) -> None:
        if time.monotonic() - self._last_save >= self.config.checkpoint_seconds:
            self.save()

    def log(self, record: dict[str, object]) -> None:
        record = {"time": round(time.time(), 1), **record}
        with (self.out / "log.jsonl").open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    # -- phase 1: classifier --------------------------------------------------------------------

    def pretrain(self) -> None:
        config = self.config
        while self.phase == "pretrain" and self.step < config.pretrain_steps:
            started = time.monotonic()
            seeds = range(
                _PRETRAIN_SEEDS + self.step * config.pretrain_batch_size,
                _PRETRAIN_SEEDS + (self.step + 1) * config.pretrain_batch_size,
            )
            loss = self._classifier_loss([draw_picture(seed) for seed in seeds])
            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.tower.parameters(), 1.0)
            self._set_learning_rate(config.pretrain_lr)
            self.optimizer.step()
            self.step += 1
            if self.step % 10 == 0:
                elapsed = time.monotonic() - started
                self.log(
                    {
                        "phase": "pretrain",
                        "step": self.step,
                        "loss": round(loss.item(), 4),
                        "s_per_step": round(elapsed, 2),
                    }
                )
            if self.step % _PRETRAIN_EVAL_EVERY == 0 or self.step == config.pretrain_steps:
                accuracy = self._classifier_accuracy()
                self.log({"phase": "pretrain", "step": self.step, **accuracy})
                if min(accuracy.values()) >= config.pretrain_target:
                    break
            self.maybe_save()
        if self.phase == "pretrain":
            self.phase, self.step = "lm", 0
            self.optimizer = self._optimizer()
            self.save()

    def _set_learning_rate(self, lr: float, *, until: int | None = None) -> None:
        """Linear warm-up over the first steps of a phase (both phases start from scratch), and
        with ``until`` (the phase's last step) a cosine decay to a tenth over its last steps:
        at a constant rate, held-out shape wandered between 88% and 98% from step 600 to 1200."""
        factor = min(1.0, (self.step + 1) / self.config.warmup_steps)
        if until is not None:
            into_decay = self.step - (until - self.config.decay_steps)
            if into_decay > 0:
                progress = min(1.0, into_decay / self.config.decay_steps)
                factor *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
        for group in self.optimizer.param_groups:
            group["lr"] = group.get("base_lr", lr) * factor

    def _head_logits(self, pictures: list[Picture]) -> dict[str, torch.Tensor]:
        features = self.tower.features(model_pixels(pictures))
        pooled = self.tower.pool(features).flatten(1)
        return {
            name: head(features if name.startswith("patch_") else pooled)
            for name, head in self.heads.items()
        }

    def _classifier_loss(self, pictures: list[Picture]) -> torch.Tensor:
        logits = self._head_logits(pictures)
        colours = torch.tensor([list(COLOURS).index(p.colour) for p in pictures])
        shapes = torch.tensor([SHAPES.index(p.shape) for p in pictures])
        patches = logits["patch_colour"].shape[1]
        every_colour, every_shape = (t.repeat_interleave(patches) for t in (colours, shapes))
        cross_entropy = nn.functional.cross_entropy
        return (
            cross_entropy(logits["colour"], colours)
            + cross_entropy(logits["shape"], shapes)
            + cross_entropy(logits["patch_colour"].flatten(0, 1), every_colour)
            + cross_entropy(logits["patch_shape"].flatten(0, 1), every_shape)
        )

    @torch.no_grad()
    def _classifier_accuracy(self) -> dict[str, float]:
        pictures = held_out(self.config.eval_pictures * 2)
        logits = self._head_logits(pictures)
        colour = np.mean(
            [
                list(COLOURS)[int(i)] == p.colour
                for i, p in zip(logits["colour"].argmax(1), pictures, strict=True)
            ]
        )
        shape = np.mean(
            [
                SHAPES[int(i)] == p.shape
                for i, p in zip(logits["shape"].argmax(1), pictures, strict=True)
            ]
        )
        return {
            "classifier_colour": round(float(colour), 4),
            "classifier_shape": round(float(shape), 4),
        }

    # -- phase 2: through the frozen language model ---------------------------------------------

    def train_through_lm(self) -> None:
        config = self.config
        runner = self._runner()
        prompts = Prompts(runner)
        lm = FrozenLanguageModel(load_frozen(self.text_model))
        self.log({"event": "lm_loaded", "text_norm": round(lm.text_norm, 3)})
        if not self.projector_fitted:
            fit = self._fit_projector(lm, prompts)
            self.projector_fitted = True
            self.optimizer = self._optimizer()  # no stale moments for the new projection
            self.save()
            self.log({"event": "projector_fitted", "r2": round(fit, 4)})
        while self.step < config.steps:
            started = time.monotonic()
            examples = self._lm_batch(self.step)
            soft = soft_tokens(self.tower, examples)
            ratio = torch.cat(soft).norm(dim=-1) / lm.text_norm
            penalty = torch.relu(ratio - config.norm_cap).pow(2).mean()
            loss = lm.loss(soft, [prompts.example(e) for e in examples])
            self.optimizer.zero_grad()
            (loss + penalty).backward()
            nn.utils.clip_grad_norm_(self.tower.parameters(), 1.0)
            self._set_learning_rate(config.lr, until=config.steps)
            self.optimizer.step()
            self.step += 1
            if self.step % 10 == 0:
                self.log(
                    {
                        "phase": "lm",
                        "step": self.step,
                        "loss": round(loss.item(), 4),
                        "norm_ratio": round(ratio.mean().item(), 3),
                        "s_per_step": round(time.monotonic() - started, 2),
                    }
                )
            if self.step % config.eval_every == 0 or self.step == config.steps:
                self.save()
                self.log({"phase": "lm", "step": self.step, **self._lm_accuracy(lm, prompts)})
            self.maybe_save()
        self.save()
        runner.close()

    @torch.no_grad()
    def _fit_projector(self, lm: FrozenLanguageModel, prompts: Prompts) -> float:
        """Start the projection where the language model already reads: least squares from the
        pre-trained tower's normalised cells to the text embeddings of the picture's colour word
        plus its shape word. Through the frozen model alone, a random projection took 200 steps
        (16 minutes here) to learn the answer's form and still named colours at chance."""
        pictures = [draw_picture(_FIT_SEEDS + index) for index in range(_FIT_PICTURES)]
        pooled = torch.cat(
            [
                self.tower.pooled(model_pixels(pictures[i : i + 64]))
                for i in range(0, len(pictures), 64)
            ]
        )
        cells = pooled * torch.rsqrt(pooled.pow(2).mean(-1, keepdim=True) + LAYER_NORM_EPS)
        words = {
            word: lm.embed(torch.tensor(prompts.runner.tokenize(" " + word))).mean(0)
            for word in (*COLOURS, *SHAPES)
        }
        wanted = torch.stack([words[p.colour] + words[p.shape] for p in pictures])
        x = cells.reshape(-1, cells.shape[-1])
        y = wanted[:, None].expand(-1, cells.shape[1], -1).reshape(-1, wanted.shape[-1])
        ridge = 1e-2 * len(x) * torch.eye(x.shape[1])
        projection = torch.linalg.solve(x.T @ x + ridge, x.T @ y)
        self.tower.soft_emb_norm.fill_(1.0)
        self.tower.input_projection.copy_(projection)
        residual = (x @ projection - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum()
        return float(1 - residual)

    def _runner(self) -> MtmdRunner:
        self.save()  # an mmproj to load (token layouts do not depend on its weights)
        return MtmdRunner(self.text_model, self.out / _MMPROJ)

    def _lm_batch(self, step: int) -> list[Picture | Pair]:
        size = self.config.batch_size
        examples: list[Picture | Pair] = []
        for seed in range(step * size, (step + 1) * size):
            pair = (seed * 0.6180339887) % 1.0 < self.config.pair_share
            examples.append(draw_pair(_PAIR_SEEDS + seed) if pair else draw_picture(seed))
        return examples

    @torch.no_grad()
    def _lm_accuracy(self, lm: FrozenLanguageModel, prompts: Prompts) -> dict[str, object]:
        pictures = held_out(self.config.eval_pictures)
        pairs = held_out_pairs(self.config.eval_pairs)
        examples: list[Picture | Pair] = [*pictures, *pairs]
        torch_answers = greedy_answers(self.tower, lm, prompts, examples)
        runner = MtmdRunner(self.text_model, self.out / _MMPROJ)
        try:
            llama_answers = [runner.answer(parts_of(e)) for e in examples]
        finally:
            runner.close()
        single = len(pictures)
        return {
            **compare(pictures, pairs, torch_answers, llama_answers),
            "samples": [
                f"{e.answer} -> {a}"
                for e, a in zip(
                    examples[:3] + examples[single : single + 2],
                    llama_answers[:3] + llama_answers[single : single + 2],
                    strict=True,
                )
            ],
        }


def soft_tokens(tower: VisionTower, examples: list[Picture | Pair]) -> list[torch.Tensor]:
    """Each example's soft tokens, its images' blocks one after another."""
    pictures = [picture for example in examples for picture in images_of(example)]
    soft = tower(model_pixels(pictures))
    out, index = [], 0
    for example in examples:
        count = len(images_of(example))
        out.append(soft[index : index + count].flatten(0, 1))
        index += count
    return out


@torch.no_grad()
def greedy_answers(
    tower: VisionTower,
    lm: FrozenLanguageModel,
    prompts: Prompts,
    examples: list[Picture | Pair],
) -> list[str]:
    """Greedy answers in torch (what the tower was trained for), 16 examples at a time."""
    end = prompts.runner.tokenize(_END_OF_TURN)[0]
    answers = []
    for start in range(0, len(examples), 16):
        batch = examples[start : start + 16]
        steps = 20 if any(isinstance(e, Pair) for e in batch) else 6
        generated = lm.greedy(
            soft_tokens(tower, batch), [prompts.layout(e) for e in batch], steps=steps
        )
        for ids in generated:
            ids = ids[: ids.index(end)] if end in ids else ids
            answers.append(prompts.runner.detokenize(ids).strip())
    return answers


def images_of(example: Picture | Pair) -> list[Picture]:
    return [example.first, example.second] if isinstance(example, Pair) else [example]


def parts_of(example: Picture | Pair) -> list[Part]:
    """The user turn's parts in the order the example sends them."""
    images: list[Part] = [picture.image for picture in images_of(example)]
    first = example.images_first if isinstance(example, Pair) else example.image_first
    return [*images, example.question] if first else [example.question, *images]


def model_pixels(pictures: list[Picture]) -> torch.Tensor:
    return pixels([np.asarray(to_model_input(p.image)) for p in pictures])


class Prompts:
    """Token layouts as libmtmd gives them (per question and part order) and answers' tokens."""

    def __init__(self, runner: MtmdRunner) -> None:
        self.runner = runner
        self._layouts: dict[tuple[object, ...], PromptLayout] = {}
        self._answers: dict[str, list[int]] = {}

    def layout(self, example: Picture | Pair) -> PromptLayout:
        parts = parts_of(example)
        key = tuple(p if isinstance(p, str) else "<image>" for p in parts)
        if key not in self._layouts:
            self._layouts[key] = self.runner.layout(parts)
        return self._layouts[key]

    def example(self, example: Picture | Pair) -> Example:
        answer = example.answer
        if answer not in self._answers:
            self._answers[answer] = self.runner.tokenize(answer + _END_OF_TURN)
        return Example(self.layout(example), self._answers[answer])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True)
    defaults = TrainConfig(out=Path("."))
    integers = (
        "steps",
        "pretrain_steps",
        "batch_size",
        "eval_every",
        "eval_pictures",
        "eval_pairs",
        "threads",
        "decay_steps",
    )
    for name in integers:
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name)
        )
    for name in (
        "lr",
        "pretrain_lr",
        "pretrain_target",
        "norm_cap",
        "checkpoint_seconds",
        "pair_share",
    ):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name)
        )
    config = TrainConfig(**vars(parser.parse_args(argv)))
    torch.set_num_threads(config.threads)
    trainer = Trainer(config)
    trainer.log(
        {
            "event": "start",
            "phase": trainer.phase,
            "step": trainer.step,
            "parameters": sum(p.numel() for p in trainer.tower.parameters()),
        }
    )
    trainer.pretrain()
    trainer.train_through_lm()


if __name__ == "__main__":
    main()
