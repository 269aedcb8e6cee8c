"""A SigLIP-style vision tower plus Gemma 3's projector in torch, laid out 1:1 like the mmproj
GGUF that ``fovea.modelgen.mmproj`` writes and libmtmd runs (same tensors, shapes and maths).

libmtmd's graph for ``clip.projector_type=gemma3``: conv patch embedding (+bias), position
embedding, pre-norm blocks (LayerNorm eps 1e-6, biased q/k/v/out, tanh GELU MLP), post LayerNorm,
average pooling of the patch grid, RMSNorm times ``mm.soft_emb_norm.weight`` (used as is, no
``1 +``), then ``x @ mm.input_projection.weight`` ([hidden, n_embd_text]).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fovea.modelgen.mmproj import VisionTowerShape

LAYER_NORM_EPS = 1e-6
# Soft tokens are pooled to a 4x4 grid (16 tokens), as libmtmd does for a 224 px Gemma 3 tower.
TOKENS_PER_SIDE = 4


class Block(nn.Module):
    def __init__(self, shape: VisionTowerShape) -> None:
        super().__init__()
        hidden = shape.hidden_size
        self.head_count = shape.head_count
        self.ln1 = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
        self.ln2 = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
        self.attn_q = nn.Linear(hidden, hidden)
        self.attn_k = nn.Linear(hidden, hidden)
        self.attn_v = nn.Linear(hidden, hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.ffn_up = nn.Linear(hidden, shape.feed_forward_size)
        self.ffn_down = nn.Linear(shape.feed_forward_size, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        heads = self.head_count
        h = self.ln1(x)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, heads, hidden // heads).transpose(1, 2)

        q, k, v = split(self.attn_q(h)), split(self.attn_k(h)), split(self.attn_v(h))
        attended = F.scaled_dot_product_attention(q, k, v)
        x = x + self.attn_out(attended.transpose(1, 2).reshape(batch, length, hidden))
        return x + self.ffn_down(F.gelu(self.ffn_up(self.ln2(x)), approximate="tanh"))


class VisionTower(nn.Module):
    """Pixels in [0, 1] ([B, 3, S, S]) to soft tokens ([B, 16, n_embd_text])."""

    def __init__(self, shape: VisionTowerShape) -> None:
        super().__init__()
        self.shape = shape
        hidden = shape.hidden_size
        self.patch_embd = nn.Conv2d(3, hidden, shape.patch_size, stride=shape.patch_size)
        self.position_embd = nn.Parameter(sincos_positions(shape))
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.block_count))
        self.post_ln = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
        self.soft_emb_norm = nn.Parameter(torch.ones(hidden))
        self.input_projection = nn.Parameter(
            torch.randn(hidden, shape.text_embedding_size) / hidden**0.5
        )

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The tower's patch features after ``post_ln``: [B, num_patches, hidden]."""
        x = self.patch_embd((pixels - 0.5) / 0.5)  # image mean and std 0.5
        x = x.flatten(2).transpose(1, 2) + self.position_embd
        for block in self.blocks:
            x = block(x)
        return self.post_ln(x)

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        """Patch features average-pooled to the soft-token grid: [B, 16, hidden]."""
        return self.pool(self.features(pixels))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """[B, num_patches, hidden] features to the 4x4 soft-token grid: [B, 16, hidden]."""
        batch, _, hidden = x.shape
        side = self.shape.image_size // self.shape.patch_size
        grid = x.transpose(1, 2).reshape(batch, hidden, side, side)
        return F.avg_pool2d(grid, side // TOKENS_PER_SIDE).flatten(2).transpose(1, 2)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pooled = self.pooled(pixels)
        normed = pooled * torch.rsqrt(pooled.pow(2).mean(-1, keepdim=True) + LAYER_NORM_EPS)
        return (normed * self.soft_emb_norm) @ self.input_projection

    def gguf_tensors(self) -> list[tuple[str, np.ndarray]]:
        """The weights under their mmproj GGUF names, as float32 numpy arrays."""

        def array(t: torch.Tensor) -> np.ndarray:
            return t.detach().to(torch.float32).cpu().numpy().copy()

        tensors = [
            ("v.patch_embd.weight", array(self.patch_embd.weight)),
            ("v.patch_embd.bias", array(self.patch_embd.bias)),
            ("v.position_embd.weight", array(self.position_embd)),
        ]
        for index, block in enumerate(self.blocks):
            for name, parameter in block.named_parameters():
                tensors.append((f"v.blk.{index}.{name}", array(parameter)))
        tensors += [
            ("v.post_ln.weight", array(self.post_ln.weight)),
            ("v.post_ln.bias", array(self.post_ln.bias)),
            ("mm.soft_emb_norm.weight", array(self.soft_emb_norm)),
            ("mm.input_projection.weight", array(self.input_projection)),
        ]
        return tensors


def sincos_positions(shape: VisionTowerShape, scale: float = 0.5) -> torch.Tensor:
    """2D sine-cosine position embeddings (as MAE initialises them): half the channels encode
    the row, half the column. Trainable afterwards; from scratch, random ones learn slowly."""
    side = shape.image_size // shape.patch_size
    quarter = shape.hidden_size // 4
    frequencies = 1.0 / 10000 ** (torch.arange(quarter) / quarter)
    rows, columns = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.flatten()[:, None].float() * frequencies[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(columns)], dim=1) * scale


def pixels(images: list[np.ndarray]) -> torch.Tensor:
    """RGB uint8 arrays ([S, S, 3]) to a [B, 3, S, S] float batch in [0, 1]."""
    stacked = np.stack(images).astype(np.float32) / 255.0
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()
