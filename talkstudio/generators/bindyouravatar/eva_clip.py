"""EVA02-CLIP-L-14-336's image tower, the face encoder of ConsisID and Bind-Your-Avatar.

A ViT-L/14 at 336 px (24 blocks, width 1024, 16 heads of 64) in the EVA-02 form: 2-D rotary position
embedding on every query and key except the class token's (interpolated from a 16 x 16 to the 24 x 24
patch grid), separate q/k/v projections with a bias on q and v only, a LayerNorm on the attention output
before its projection ("subln"), a SwiGLU feed-forward (hidden int(1024 * 2.6667) = 2730) with a
LayerNorm before its output projection, pre-norm residuals, the final LayerNorm on the class token and a
linear head to the 768-d CLIP space. LayerNorms use eps 1e-6.

Parameter names are those of the EVA-CLIP checkpoint (`EVA02_CLIP_L_336_psz14_s6B.pt`) under `visual.`:

    patch_embed.proj.{weight,bias}  cls_token  pos_embed [1, 577, 1024]
    blocks.{i}.norm1 / norm2                              LayerNorm
    blocks.{i}.attn.{q_proj,k_proj,v_proj}.weight         no bias of their own
    blocks.{i}.attn.{q_bias,v_bias}                       (k has none)
    blocks.{i}.attn.inner_attn_ln / attn.proj
    blocks.{i}.mlp.{w1,w2,ffn_ln,w3}                      w3(ffn_ln(silu(w1 x) * w2 x))
    norm  head

The RoPE tables (`rope.freqs_cos`, `blocks.{i}.attn.rope.freqs_*`) are recomputed, never read: the
original drops them from the checkpoint too (eva_clip/factory.py load_state_dict, with RoPE=1 set by
create_model for a rope config). Attention is plain softmax attention (the original's xformers path
computes the same), in the tower's dtype.

`forward` returns what the original's `visual(x, return_all_features=False, return_hidden=True)` does:
the un-normalised head output and the inputs of blocks 4, 8, 12, 16 and 20.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

HIDDEN_BLOCKS = (4, 8, 12, 16, 20)  # whose inputs are handed out (eva_vit_model.py: 0 < idx <= 20, idx % 4 == 0)
# the mean and std the original normalises with: create_model sets OPENAI_DATASET_MEAN/STD on the tower
# because a checkpoint given by path has no pretrained config of its own
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
CHECKPOINT_WRAPPERS = ("model", "module", "state_dict")


@dataclass(frozen=True)
class EvaVisionConfig:
    """EVA02-CLIP-L-14-336 (model_configs/EVA02-CLIP-L-14-336.json, vision_cfg) by default."""

    image_size: int = 336
    patch_size: int = 14
    width: int = 1024
    layers: int = 24
    head_width: int = 64
    mlp_ratio: float = 2.6667
    embed_dim: int = 768
    pt_hw_seq_len: int = 16  # the grid the rotary frequencies were trained on (224 / 14)
    intp_freq: bool = True  # stretch those positions over the actual grid
    eps: float = 1e-6

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def rope_tables(config: EvaVisionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [grid * grid, head_width] for the patch tokens (row-major), as VisionRotaryEmbeddingFast:
    the first half of each head turns with the row, the second with the column, frequencies repeated in pairs."""
    half = config.head_width // 2
    freqs = 1.0 / (10000 ** (torch.arange(0, half, 2, device="cpu")[: half // 2].float() / half))
    grid = config.grid
    seq = config.pt_hw_seq_len
    positions = torch.arange(grid if config.intp_freq else seq, device="cpu") / (grid if config.intp_freq else seq) * seq
    angles = (positions[:, None] * freqs[None, :]).repeat_interleave(2, dim=-1)  # [n, half]
    n = angles.shape[0]
    table = torch.cat((angles[:, None, :].expand(n, n, half), angles[None, :, :].expand(n, n, half)), dim=-1)
    table = table.reshape(n * n, 2 * half)
    return table.cos(), table.sin()


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, config: EvaVisionConfig):
        super().__init__()
        width, self.heads = config.width, config.heads
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.inner_attn_ln = nn.LayerNorm(width, eps=config.eps)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q = F.linear(x, self.q_proj.weight, self.q_bias)
        k = F.linear(x, self.k_proj.weight)
        v = F.linear(x, self.v_proj.weight, self.v_bias)
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        # rotary position on the patch tokens only; the class token (first) passes unturned
        q = torch.cat((q[:, :, :1], q[:, :, 1:] * cos + rotate_pairs(q[:, :, 1:]) * sin), dim=2).type_as(v)
        k = torch.cat((k[:, :, :1], k[:, :, 1:] * cos + rotate_pairs(k[:, :, 1:]) * sin), dim=2).type_as(v)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(self.inner_attn_ln(out.transpose(1, 2).reshape(batch, length, -1)))


class SwiGLU(nn.Module):
    def __init__(self, config: EvaVisionConfig):
        super().__init__()
        hidden = int(config.width * config.mlp_ratio)
        self.w1 = nn.Linear(config.width, hidden)
        self.w2 = nn.Linear(config.width, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=config.eps)
        self.w3 = nn.Linear(hidden, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class Block(nn.Module):
    def __init__(self, config: EvaVisionConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width, eps=config.eps)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.width, eps=config.eps)
        self.mlp = SwiGLU(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, config: EvaVisionConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, config.width, kernel_size=config.patch_size, stride=config.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class EvaVisionTower(nn.Module):
    def __init__(self, config: EvaVisionConfig = EvaVisionConfig()):
        super().__init__()
        self.config = config
        self.image_size = config.image_size
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.grid ** 2 + 1, config.width))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width, eps=config.eps)
        self.head = nn.Linear(config.width, config.embed_dim)
        cos, sin = rope_tables(config)  # computed on the CPU even when the tower is built on the meta device
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """images [batch, 3, size, size], already normalised -> (head output [batch, embed_dim], not
        normalised; the inputs of blocks 4, 8, 12, 16, 20, each [batch, 1 + grid^2, width])."""
        size = self.config.image_size
        if tuple(images.shape[-2:]) != (size, size):
            raise ValueError(f"the EVA-CLIP tower takes {size}x{size} images, got {tuple(images.shape[-2:])}")
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        cos, sin = self.rope_cos.to(x.dtype), self.rope_sin.to(x.dtype)
        hidden = []
        for index, block in enumerate(self.blocks):
            if index in HIDDEN_BLOCKS:
                hidden.append(x)
            x = block(x, cos, sin)
        return self.head(self.norm(x)[:, 0]), hidden

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """As forward, with the embedding divided by its L2 norm (what the face modules read)."""
        embedding, hidden = self(images)
        return embedding / torch.norm(embedding, 2, 1, True), hidden


def _is_rope_table(key: str) -> bool:
    return key.endswith(("freqs_cos", "freqs_sin"))


def visual_state_dict(checkpoint: dict) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The image tower's tensors from an EVA-CLIP checkpoint, keyed as EvaVisionTower's: unwrapped from
    'model' / 'module' / 'state_dict' and a 'module.' prefix as the original's loader does, `visual.`
    stripped, the RoPE tables left out. Also returns the top-level names of what was ignored (everything
    not under `visual.`: the text tower `text.*` and `logit_scale` in the released file)."""
    state = checkpoint
    for wrapper in CHECKPOINT_WRAPPERS:
        if isinstance(checkpoint, dict) and wrapper in checkpoint:
            state = checkpoint[wrapper]
            break
    if state and next(iter(state)).startswith("module"):
        state = {k[7:]: v for k, v in state.items()}
    visual, ignored = {}, set()
    for key, value in state.items():
        if not key.startswith("visual."):
            ignored.add(key.split(".")[0])
        elif not _is_rope_table(key):
            visual[key[len("visual."):]] = value
    return visual, sorted(ignored)


EVA02_CLIP_L_336 = EvaVisionConfig()  # the released face encoder's


def load_visual(path, device="cpu", dtype=torch.float32, config: EvaVisionConfig | None = None):
    """EVA02-CLIP-L-14-336's image tower from the released checkpoint, every tensor matched strictly.
    Returns (tower in eval mode, the ignored top-level checkpoint names)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # an old (non-zip) file cannot be mapped
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state, ignored = visual_state_dict(checkpoint)
    config = config or EVA02_CLIP_L_336
    with torch.device("meta"):
        tower = EvaVisionTower(config)
    try:
        tower.load_state_dict(state, strict=True, assign=True)  # names every missing, unexpected or misshapen tensor
    except RuntimeError as e:
        raise ValueError(f"{path}: the EVA-CLIP image tower does not fit: {e}") from None
    return tower.to(device=device, dtype=dtype).eval(), ignored

