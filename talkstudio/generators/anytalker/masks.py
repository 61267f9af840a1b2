"""Where each identity is: face masks for AnyTalker, from talkstudio's face binding.

As the original: a face box becomes a square (side = the longer side, shifted to
stay inside the picture), its mask is widened x1.2 and heightened x1.1, and
  - each identity's mask, resized to the patch grid, says which video tokens
    its audio may drive (one row per identity over latent frames x patches);
  - the union of the masks forms the 4-channel InP mask: latent frame 0 known
    (all ones), later frames the union (where the picture should move).
"""

from __future__ import annotations

WIDEN, HEIGHTEN = 1.2, 1.1
VAE_STRIDE_T = 4


def square_box(box, width: int, height: int) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of the square around an (x, y, w, h) face box, kept inside the picture."""
    x, y, w, h = box
    cx, cy, side = x + w / 2, y + h / 2, max(w, h)
    x1, y1, x2, y2 = cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2
    if x1 < 0:
        x1, x2 = 0, side
    if y1 < 0:
        y1, y2 = 0, side
    if x2 > width:
        x1, x2 = width - side, width
    if y2 > height:
        y1, y2 = height - side, height
    return max(0, x1), max(0, y1), min(width, x2), min(height, y2)


def box_mask(box, width: int, height: int):
    """[height, width] float mask, 1 inside the face's square."""
    import torch

    x1, y1, x2, y2 = (int(v) for v in square_box(box, width, height))
    mask = torch.zeros(height, width)
    mask[y1:y2, x1:x2] = 1.0
    return mask


def expand(mask, widen: float = WIDEN, heighten: float = HEIGHTEN):
    """The mask's region scaled about its centre, each axis by its own factor."""
    import torch
    import torch.nn.functional as F

    inside = torch.nonzero(mask > 0.5)
    if inside.numel() == 0 or (widen == 1.0 and heighten == 1.0):
        return mask
    (top, left), (bottom, right) = inside.min(dim=0)[0].tolist(), inside.max(dim=0)[0].tolist()
    centre_y, centre_x = (top + bottom) / 2.0, (left + right) / 2.0
    new_h, new_w = int((bottom - top + 1) * heighten), int((right - left + 1) * widen)
    height, width = mask.shape
    y0, y1 = max(0, int(centre_y - new_h / 2.0)), min(height - 1, int(centre_y + new_h / 2.0))
    x0, x1 = max(0, int(centre_x - new_w / 2.0)), min(width - 1, int(centre_x + new_w / 2.0))
    expanded = torch.zeros_like(mask)
    if y1 > y0 and x1 > x0:
        content = mask[top:bottom + 1, left:right + 1][None, None]
        expanded[y0:y1 + 1, x0:x1 + 1] = F.interpolate(content, size=(y1 - y0 + 1, x1 - x0 + 1), mode="bilinear",
                                                       align_corners=False)[0, 0]
    return expanded


def identity_masks(masks: list, latent_h: int, latent_w: int, latent_frames: int):
    """[identities, latent_frames * latent_h/2 * latent_w/2]: each mask on the patch grid, every latent frame."""
    import torch
    import torch.nn.functional as F

    rows = []
    for mask in masks:
        grid = F.interpolate(mask[None, None], size=(latent_h // 2, latent_w // 2), mode="bilinear",
                             align_corners=False)[0, 0]
        rows.append(grid.flatten().repeat(latent_frames))
    return torch.stack(rows)


def inpaint_mask(masks: list, latent_h: int, latent_w: int, frames: int):
    """[4, latent_frames, latent_h, latent_w]: frame 0 known, later frames the union of the masks."""
    import torch
    import torch.nn.functional as F

    union = torch.stack(masks).sum(dim=0)
    resized = F.interpolate(union[None, None], size=(latent_h, latent_w), mode="bilinear", align_corners=False)[0, 0]
    per_frame = resized[None].repeat(frames, 1, 1)
    per_frame[0] = 1.0
    # the first frame fills a whole latent frame (4 channels); the rest pack 4 frames per latent frame
    packed = torch.cat([per_frame[:1].repeat(VAE_STRIDE_T, 1, 1), per_frame[1:]])
    return packed.view(-1, VAE_STRIDE_T, latent_h, latent_w).transpose(0, 1)
