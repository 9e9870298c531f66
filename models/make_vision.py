"""Write a synthetic vision pair: a text GGUF plus its ``mmproj`` projector GGUF, random weights, in the
layout llama.cpp's multimodal library (``libmtmd``, its CLIP loader) reads for SmolVLM.

Usage::

    python models/make_vision.py OUT_DIR [--preset tiny|smolvlm] [--seed N]

writes ``OUT_DIR/synthetic-vision-<preset>.gguf`` and ``OUT_DIR/mmproj-synthetic-vision-<preset>.gguf``.

The projector is SmolVLM's (``clip.projector_type = idefics3``): a SigLIP vision transformer (patch
embedding by convolution, learned position embeddings, pre-norm blocks with GELU FFNs, a post norm),
then a pixel shuffle by ``scale_factor`` and one linear layer into the text model's hidden size. The
text model is ``make_synthetic``'s llama with two more user-defined tokens, ``<fake_token_around_image>``
and ``<global-img>``, which libmtmd places around an image's embeddings. Generated text is meaningless;
every step of the path (image decode, preprocessing, the vision encoder, the image's embeddings decoded
into a sequence, its KV state) is real.

Presets:

* ``tiny``: 64 x 64 images, 16-pixel patches, 2 blocks of 32 dims, scale factor 2: 4 image tokens a tile;
  the text model is ``make_synthetic``'s ``tiny``. Encodes in milliseconds; used by the tests.
* ``smolvlm``: SmolVLM2-256M-Video-Instruct's shapes. Vision: SigLIP-B/16 at 512 px (12 blocks, hidden 768,
  12 heads, FFN 3072), scale factor 4, so 64 image tokens per 512-pixel tile; text: SmolLM2-135M's llama
  shapes (30 layers, hidden 576, 9 query / 3 KV heads of 64, FFN 1536), vocabulary cut to 8,192. Source:
  the ``config.json`` of ``HuggingFaceTB/SmolVLM2-256M-Video-Instruct``. Used by ``benchmarks/images.py``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from make_synthetic import PRESETS, Preset, finish, write_model

IMAGE_TOKENS = ["<fake_token_around_image>", "<global-img>", "\n\n"]  # libmtmd looks these up for idefics3


@dataclass(frozen=True)
class VisionPreset:
    """Shapes of one synthetic projector, named as in the ``clip.vision.*`` GGUF keys."""

    image_size: int
    patch_size: int
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    scale_factor: int
    text: Preset
    out_embd: int = 0  # width of the projected embeddings; 0 = the text model's (another width: a broken pair, for tests)


SMOLLM2_135M = Preset(arch="llama", n_embd=576, n_layer=30, n_head=9, n_head_kv=3, head_dim=64, n_ff=1536,
                      n_vocab=8192, n_merges_vocab=8192, n_ctx_train=8192, rope_theta=100000.0,
                      weight_type=gguf.GGMLQuantizationType.Q8_0, tied_embeddings=True)
VISION_PRESETS = {
    "tiny": VisionPreset(image_size=64, patch_size=16, n_embd=32, n_ff=64, n_layer=2, n_head=2, scale_factor=2,
                         text=PRESETS["tiny"]),
    "smolvlm": VisionPreset(image_size=512, patch_size=16, n_embd=768, n_ff=3072, n_layer=12, n_head=12,
                            scale_factor=4, text=SMOLLM2_135M),
}


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Random float32 weights, numpy shape ``shape`` (ggml's ``ne`` reversed)."""
    return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)


def write_mmproj(out: Path, preset: VisionPreset, seed: int = 0) -> Path:
    """Write one synthetic projector GGUF.

    Args:
        out: destination path.
        preset: the shapes; ``preset.text.n_embd`` is the size the projector maps into.
        seed: seed for the random weights.

    Returns:
        ``out``.
    """
    p, rng = preset, np.random.default_rng(seed)
    n_patches = (p.image_size // p.patch_size) ** 2
    tmp = out.with_suffix(out.suffix + ".tmp")
    w = gguf.GGUFWriter(str(tmp), arch="clip")
    w.add_name(f"synthetic-vision-projector-{p.image_size}")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_string("clip.projector_type", "idefics3")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_text_encoder", False)
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", p.image_size)
    w.add_uint32("clip.vision.patch_size", p.patch_size)
    w.add_uint32("clip.vision.embedding_length", p.n_embd)
    w.add_uint32("clip.vision.feed_forward_length", p.n_ff)
    w.add_uint32("clip.vision.block_count", p.n_layer)
    w.add_uint32("clip.vision.projection_dim", p.text.n_embd)
    w.add_uint32("clip.vision.attention.head_count", p.n_head)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    w.add_uint32("clip.vision.projector.scale_factor", p.scale_factor)
    w.add_uint32("clip.vision.preproc_image_size", p.image_size * 4)  # images up to 4 x 4 tiles
    w.add_tensor("v.patch_embd.weight", _w(rng, p.n_embd, 3, p.patch_size, p.patch_size).astype(np.float16))
    w.add_tensor("v.patch_embd.bias", np.zeros(p.n_embd, dtype=np.float32))
    w.add_tensor("v.position_embd.weight", _w(rng, n_patches, p.n_embd))  # added to f32 activations: f32
    for i in range(p.n_layer):
        b = f"v.blk.{i}"
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"{b}.{name}.weight", _w(rng, p.n_embd, p.n_embd).astype(np.float16))
            w.add_tensor(f"{b}.{name}.bias", np.zeros(p.n_embd, dtype=np.float32))
        for name in ("ln1", "ln2"):
            w.add_tensor(f"{b}.{name}.weight", np.ones(p.n_embd, dtype=np.float32))
            w.add_tensor(f"{b}.{name}.bias", np.zeros(p.n_embd, dtype=np.float32))
        w.add_tensor(f"{b}.ffn_up.weight", _w(rng, p.n_ff, p.n_embd).astype(np.float16))
        w.add_tensor(f"{b}.ffn_up.bias", np.zeros(p.n_ff, dtype=np.float32))
        w.add_tensor(f"{b}.ffn_down.weight", _w(rng, p.n_embd, p.n_ff).astype(np.float16))
        w.add_tensor(f"{b}.ffn_down.bias", np.zeros(p.n_embd, dtype=np.float32))
    w.add_tensor("v.post_ln.weight", np.ones(p.n_embd, dtype=np.float32))
    w.add_tensor("v.post_ln.bias", np.zeros(p.n_embd, dtype=np.float32))
    w.add_tensor("mm.model.fc.weight",
                 _w(rng, p.out_embd or p.text.n_embd, p.n_embd * p.scale_factor ** 2).astype(np.float16))
    return finish(w, tmp, out)


def write_pair(folder: Path, preset_name: str = "tiny", seed: int = 0) -> tuple[Path, Path]:
    """Write the text model and its projector into ``folder``.

    Args:
        folder: destination folder (created).
        preset_name: a key of ``VISION_PRESETS``.
        seed: seed for the random weights.

    Returns:
        ``(model path, mmproj path)``, named ``synthetic-vision-<preset>.gguf`` and
        ``mmproj-synthetic-vision-<preset>.gguf`` (the pairing the model registry reads).

    Raises:
        KeyError: unknown preset.
    """
    preset = VISION_PRESETS[preset_name]
    folder.mkdir(parents=True, exist_ok=True)
    model = write_model(folder / f"synthetic-vision-{preset_name}.gguf", preset.text, seed,
                        extra_tokens=IMAGE_TOKENS)
    return model, write_mmproj(folder / f"mmproj-synthetic-vision-{preset_name}.gguf", preset, seed)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--preset", choices=sorted(VISION_PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in write_pair(args.out, args.preset, args.seed):
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
