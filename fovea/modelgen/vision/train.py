"""Train the demo's vision tower: classifier pre-training, then through the frozen Gemma 3 270M.

``python -m fovea.modelgen.vision.train --out DIR --steps N``. Resumes from ``DIR/checkpoint.pt``;
logs JSON lines to ``DIR/log.jsonl``; writes ``DIR/mmproj-gemma-3-demo.gguf`` at every checkpoint
and evaluates held-out pictures both in torch and through llama.cpp's libmtmd (what ships).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fovea.modelgen.demo import prepare_demo_model
from fovea.modelgen.mmproj import VisionTowerShape
from fovea.modelgen.vision.evaluation import held_out, score
from fovea.modelgen.vision.export import write_mmproj
from fovea.modelgen.vision.language_model import Example, FrozenLanguageModel, load_frozen
from fovea.modelgen.vision.mtmd_runner import MtmdRunner, PromptLayout
from fovea.modelgen.vision.pictures import COLOURS, QUESTIONS, SHAPES, Picture, draw_picture
from fovea.modelgen.vision.tower import TOKENS_PER_SIDE, VisionTower, pixels

TOWER_SHAPE = VisionTowerShape(hidden_size=256, feed_forward_size=1024, block_count=4, head_count=4)
_PRETRAIN_SEEDS = 5_000_000
_END_OF_TURN = "<end_of_turn>"
_MMPROJ = "mmproj-gemma-3-demo.gguf"


@dataclass(frozen=True)
class TrainConfig:
    out: Path
    steps: int = 3000  # through the language model
    pretrain_steps: int = 2000  # tower as a colour + shape classifier
    batch_size: int = 8
    pretrain_batch_size: int = 16
    lr: float = 3e-3
    pretrain_lr: float = 1e-3
    norm_cap: float = 3.0  # soft-token norm cap, in mean text-embedding norms
    checkpoint_seconds: float = 300.0
    eval_every: int = 200
    eval_pictures: int = 48
    threads: int = 2
    seed: int = 0


class Trainer:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.out = config.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.files = prepare_demo_model(self.out / "models")
        torch.manual_seed(config.seed)
        self.tower = VisionTower(TOWER_SHAPE)
        hidden = TOWER_SHAPE.hidden_size
        # The heads read the projector's 4x4 pooled grid (what the language model will see), not a
        # mean over patches: with a mean, shape stayed at chance for 400 steps of 16 pictures.
        grid = hidden * TOKENS_PER_SIDE**2
        self.heads = nn.ModuleDict(
            {"colour": nn.Linear(grid, len(COLOURS)), "shape": nn.Linear(grid, len(SHAPES))}
        )
        self.phase, self.step = "pretrain", 0
        self.optimizer = self._optimizer()
        self._resume()
        self._last_save = time.monotonic()

    def _optimizer(self) -> torch.optim.Optimizer:
        if self.phase == "pretrain":
            parameters = list(self.tower.parameters()) + list(self.heads.parameters())
            return torch.optim.AdamW(parameters, lr=self.config.pretrain_lr, weight_decay=0.01)
        projector = [self.tower.soft_emb_norm, self.tower.input_projection]
        body = [p for p in self.tower.parameters() if all(p is not q for q in projector)]
        groups = [
            {"params": projector, "lr": self.config.lr},
            {"params": body, "lr": self.config.lr / 3},
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
            if self.step % config.eval_every == 0 or self.step == config.pretrain_steps:
                self.log({"phase": "pretrain", "step": self.step, **self._classifier_accuracy()})
            self.maybe_save()
        if self.phase == "pretrain":
            self.phase, self.step = "lm", 0
            self.optimizer = self._optimizer()
            self.save()

    def _head_logits(self, pictures: list[Picture]) -> dict[str, torch.Tensor]:
        features = self.tower.pooled(pixels([np.asarray(p.image) for p in pictures])).flatten(1)
        return {name: head(features) for name, head in self.heads.items()}

    def _classifier_loss(self, pictures: list[Picture]) -> torch.Tensor:
        logits = self._head_logits(pictures)
        colours = torch.tensor([list(COLOURS).index(p.colour) for p in pictures])
        shapes = torch.tensor([SHAPES.index(p.shape) for p in pictures])
        cross_entropy = nn.functional.cross_entropy
        return cross_entropy(logits["colour"], colours) + cross_entropy(logits["shape"], shapes)

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
        layouts, answers, runner_decode = self._prompt_tokens()
        lm = FrozenLanguageModel(load_frozen(self.files.model))
        self.log({"event": "lm_loaded", "text_norm": round(lm.text_norm, 3)})
        while self.step < config.steps:
            started = time.monotonic()
            seeds = range(self.step * config.batch_size, (self.step + 1) * config.batch_size)
            pictures = [draw_picture(seed) for seed in seeds]
            examples = [Example(layouts[p.question], answers[p.answer]) for p in pictures]
            soft = self.tower(pixels([np.asarray(p.image) for p in pictures]))
            ratio = soft.norm(dim=-1) / lm.text_norm
            penalty = torch.relu(ratio - config.norm_cap).pow(2).mean()
            loss = lm.loss(soft, examples)
            self.optimizer.zero_grad()
            (loss + penalty).backward()
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
                self.log(
                    {
                        "phase": "lm",
                        "step": self.step,
                        **self._lm_accuracy(lm, layouts, runner_decode),
                    }
                )
            self.maybe_save()
        self.save()

    def _prompt_tokens(self) -> tuple[dict[str, PromptLayout], dict[str, list[int]], MtmdRunner]:
        """Token layouts as libmtmd gives them, per question, and answer tokens, per answer."""
        self.save()  # an mmproj to load (the layout does not depend on its weights)
        runner = MtmdRunner(self.files.model, self.out / _MMPROJ)
        image = draw_picture(0).image
        layouts = {q: runner.layout(q, image) for q in QUESTIONS}
        answers = {
            f"A {c} {s}.": runner.tokenize(f"A {c} {s}.{_END_OF_TURN}")
            for c in COLOURS
            for s in SHAPES
        }
        return layouts, answers, runner

    @torch.no_grad()
    def _lm_accuracy(
        self, lm: FrozenLanguageModel, layouts: dict[str, PromptLayout], tokens: MtmdRunner
    ) -> dict[str, object]:
        pictures = held_out(self.config.eval_pictures)
        end = tokens.tokenize(_END_OF_TURN)[0]
        torch_answers = []
        for start in range(0, len(pictures), 16):
            batch = pictures[start : start + 16]
            soft = self.tower(pixels([np.asarray(p.image) for p in batch]))
            generated = lm.greedy(soft, [layouts[p.question] for p in batch], steps=6)
            for ids in generated:
                ids = ids[: ids.index(end)] if end in ids else ids
                torch_answers.append(tokens.detokenize(ids).strip())
        runner = MtmdRunner(self.files.model, self.out / _MMPROJ)
        try:
            llama_answers = [runner.answer(p.question, p.image) for p in pictures]
        finally:
            runner.close()
        same = np.mean([a == b for a, b in zip(torch_answers, llama_answers, strict=True)])
        return {
            **score(pictures, torch_answers).as_dict("torch"),
            **score(pictures, llama_answers).as_dict("llamacpp"),
            "llamacpp_equals_torch": round(float(same), 4),
            "samples": [
                f"{p.answer} -> {a}" for p, a in zip(pictures[:4], llama_answers, strict=False)
            ],
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True)
    defaults = TrainConfig(out=Path("."))
    for name in ("steps", "pretrain_steps", "batch_size", "eval_every", "eval_pictures", "threads"):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name)
        )
    for name in ("lr", "pretrain_lr", "norm_cap", "checkpoint_seconds"):
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
