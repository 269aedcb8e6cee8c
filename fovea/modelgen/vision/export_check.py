"""The export's correctness gate: libmtmd's image embeddings of an exported mmproj against torch's.

``python -m fovea.modelgen.vision.export_check [--checkpoint DIR/checkpoint.pt]`` prints the
cosine similarity per picture (1.0000 expected; f32 export).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fovea.modelgen.demo import prepare_text_model
from fovea.modelgen.vision.export import write_mmproj
from fovea.modelgen.vision.mtmd_runner import MtmdRunner
from fovea.modelgen.vision.pictures import draw_picture, to_model_input
from fovea.modelgen.vision.tower import VisionTower, pixels
from fovea.modelgen.vision.train import TOWER_SHAPE


def cosines(tower: VisionTower, model_path: Path, count: int = 4) -> list[float]:
    """Per picture, the cosine of libmtmd's and torch's soft tokens (flattened)."""
    pictures = [replace(draw_picture(20_000_000 + i), aspect=(1, 1)).image for i in range(count)]
    # A non-square source as well: libmtmd resizes it; torch sees our mirror of that resize.
    pictures.append(replace(draw_picture(20_000_100), aspect=(8, 5)).render(200))
    with tempfile.TemporaryDirectory() as tmp:
        mmproj = Path(tmp) / "check-mmproj.gguf"
        write_mmproj(mmproj, TOWER_SHAPE, tower.gguf_tensors())
        runner = MtmdRunner(model_path, mmproj)
        try:
            results = []
            for image in pictures:
                theirs = runner.image_embeddings(image).ravel()
                with torch.no_grad():
                    ours = tower(pixels([np.asarray(to_model_input(image))])).numpy().ravel()
                cosine = float(theirs @ ours / (np.linalg.norm(theirs) * np.linalg.norm(ours)))
                results.append(cosine)
            return results
        finally:
            runner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="libmtmd vs torch embeddings of an export")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--models-dir", type=Path, default=Path("bench/.work/vision-train/models"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    tower = VisionTower(TOWER_SHAPE)
    if args.checkpoint is not None:
        tower.load_state_dict(torch.load(args.checkpoint, weights_only=False)["tower"])
    values = cosines(tower, prepare_text_model(args.models_dir))
    print("cosine per picture (last one non-square):", " ".join(f"{v:.6f}" for v in values))


if __name__ == "__main__":
    main()
