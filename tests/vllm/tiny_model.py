"""A tiny random Llama that vLLM (CPU build) can serve, built offline into a directory.

Runs inside the vLLM venv (``transformers`` and ``tokenizers`` come with vLLM), not Fovea's:

    .venv-vllm/bin/python tests/vllm/tiny_model.py OUT_DIR

The model is 2 layers of width 128 with random weights (bfloat16), so its answers are noise;
what it offers is a real tokenizer (byte-level BPE trained here on a few paragraphs), a chat
template, a 1024-token context and vLLM's whole serving stack around it. The heads are 64
wide: vLLM's CPU attention supports only some head sizes, and with 16 the engine dies on the
first request.
A directory already built by this same recipe is left as it is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONTEXT_LENGTH = 1024
HIDDEN_SIZE = 128
NUM_LAYERS = 2
NUM_HEADS = 2
HEAD_DIM = HIDDEN_SIZE // NUM_HEADS  # 64
VOCAB_SIZE = 512
SEED = 20240601
EOS = "<|endoftext|>"
ROLES = ("<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
CORPUS = """\
The lighthouse keeper climbed the stairs each evening and lit the lamp before the sun went down.
Ships passing in the night saw the light sweep across the water and knew where the rocks were.
A red fox crossed the frozen field at dawn, looking for mice under the snow.
The colours of the rainbow are red, orange, yellow, green, blue, indigo and violet.
Count slowly from one to ten: one, two, three, four, five, six, seven, eight, nine, ten.
What is two plus two? Two plus two is four. What is three plus three? It is six.
Describe the picture: a small house with a blue door stands beside a river under a grey sky.
Tell me a story about a whale that sang to the moon and the moon that listened every night.
Hello! How can I help you today? Please answer in one short sentence.
The quick brown fox jumps over the lazy dog while the cat sleeps by the warm fire.
"""


def recipe() -> str:
    """A fingerprint of this file: a model built by another version of it is rebuilt."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def build(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=[EOS, *ROLES],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=EOS,
        additional_special_tokens=list(ROLES),
        model_max_length=CONTEXT_LENGTH,
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=2 * HIDDEN_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=CONTEXT_LENGTH,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        # Untied: with the output layer tied to the embeddings, a random model mostly repeats
        # the prompt's last token, the special <|assistant|>, which decodes to no text at all.
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.bfloat16)  # what vLLM CPU runs
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def main(out: Path) -> None:
    stamp = out / ".recipe"
    if stamp.exists() and stamp.read_text() == recipe():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place: a half-written model is never served.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        build(staging)
        (staging / ".recipe").write_text(recipe())
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    main(Path(sys.argv[1]).resolve())
