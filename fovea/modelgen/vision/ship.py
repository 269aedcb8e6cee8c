"""Export a trained checkpoint as the demo's shipped projector, and measure what ships.

``python -m fovea.modelgen.vision.ship --checkpoint DIR/checkpoint.pt`` writes
``fovea/modelgen/assets/mmproj-gemma-3-demo.gguf`` (f16 matrices, f32 norms and biases), prints
its SHA-256 (for ``demo.py``) and the held-out accuracy in torch and through llama.cpp (libmtmd,
the engine Fovea serves with) as one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch

from fovea.modelgen.demo import TRAINED_MMPROJ, prepare_text_model
from fovea.modelgen.vision.evaluation import compare, held_out, held_out_pairs
from fovea.modelgen.vision.export import write_mmproj
from fovea.modelgen.vision.language_model import FrozenLanguageModel, load_frozen
from fovea.modelgen.vision.mtmd_runner import MtmdRunner
from fovea.modelgen.vision.pictures import Pair, Picture
from fovea.modelgen.vision.tower import VisionTower
from fovea.modelgen.vision.train import TOWER_SHAPE, Prompts, greedy_answers, parts_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=TRAINED_MMPROJ)
    parser.add_argument("--pictures", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--models-dir", type=Path, default=Path("bench/.work/vision-train/models"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    state = torch.load(args.checkpoint, weights_only=False)
    tower = VisionTower(TOWER_SHAPE)
    tower.load_state_dict(state["tower"])
    tower.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_mmproj(args.out, TOWER_SHAPE, tower.gguf_tensors(), f16=True)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    pictures, pairs = held_out(args.pictures), held_out_pairs(args.pairs)
    examples: list[Picture | Pair] = [*pictures, *pairs]
    if not examples:  # --pictures 0 --pairs 0: export only
        print(json.dumps({"mmproj": str(args.out), "sha256": digest}))
        return
    model = prepare_text_model(args.models_dir)
    started = time.monotonic()
    runner = MtmdRunner(model, args.out)
    try:
        llama = [runner.answer(parts_of(e)) for e in examples]
        lm = FrozenLanguageModel(load_frozen(model))
        torch_answers = greedy_answers(tower, lm, Prompts(runner), examples)
    finally:
        runner.close()
    record = {
        "checkpoint": str(args.checkpoint),
        "step": state.get("step"),
        "phase": state.get("phase"),
        "mmproj": str(args.out),
        "bytes": args.out.stat().st_size,
        "sha256": digest,
        **compare(pictures, pairs, torch_answers, llama),
        "pictures": len(pictures),
        "pairs": len(pairs),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
