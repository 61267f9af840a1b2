"""CogVideoX's 3D rotary positions for a latent grid, placed as the original places them: the grid
fitted (aspect kept) and centred inside the 480x720 grid the model was trained on."""

from __future__ import annotations

VAE_SCALE = 8
TRAINED_SIZE = (480, 720)  # height, width


def crop_region(grid: tuple[int, int], base_width: int, base_height: int):
    """((top, left), (bottom, right)) of `grid` (rows, columns) resized into base_height x base_width."""
    rows, columns = grid
    if rows / columns > base_height / base_width:
        height, width = base_height, int(round(base_height / rows * columns))
    else:
        height, width = int(round(base_width / columns * rows)), base_width
    top, left = int(round((base_height - height) / 2.0)), int(round((base_width - width) / 2.0))
    return (top, left), (top + height, left + width)


def rotary_embeddings(height: int, width: int, latent_frames: int, patch_size: int, head_dim: int, device="cpu"):
    """(cos, sin), each [frames * rows * columns, head_dim], for a video of height x width pixels."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    rows, columns = height // (VAE_SCALE * patch_size), width // (VAE_SCALE * patch_size)
    base_height, base_width = (side // (VAE_SCALE * patch_size) for side in TRAINED_SIZE)
    cos, sin = get_3d_rotary_pos_embed(embed_dim=head_dim, crops_coords=crop_region((rows, columns), base_width,
                                                                                    base_height),
                                       grid_size=(rows, columns), temporal_size=latent_frames)
    return cos.to(device), sin.to(device)
