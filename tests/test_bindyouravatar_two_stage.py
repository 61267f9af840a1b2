"""Bind-Your-Avatar's two-stage mode (talkstudio/generators/bindyouravatar/two_stage.py).

- `routing_from_masks` against the original's `process_masks_to_routing_logits` (util/utils.py), run outside
  the project on mask folders written as its sam2_tools.py writes them (fixture: two_stage_masks.pt, made by
  /tmp/bya/two_stage_harness/make_two_stage_fixture.py): the real 49 x 480 x 720 masks on the released
  13 x 30 x 45 grid, small masks on that grid, and small masks on a small grid (the original's three grid
  constants substituted; nothing else changed).
- the two passes through the real pipeline on the tiny model folder, with a stand-in tracker (SAM2's network
  cannot run here without its weights): pass 2 gets exactly routing_from_masks of the tracked masks,
  continues pass 1's generator, and its frames are the render's.
- the option: auto is off without SAM2; two_stage=true without it is refused with how to get it.
- Sam2Tracker on a tiny randomly initialised SAM2.1 (when the sam2 package is installed): the prompts it
  builds and the masks it returns.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

FIXTURE = Path(__file__).parent / "fixtures" / "bindyouravatar" / "two_stage_masks.pt"


def unpack(packed, shape) -> "torch.Tensor":
    count = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(np.asarray(packed), count=count).astype(bool).reshape(shape))


def recipe_masks(recipe: dict) -> "torch.Tensor":
    """[2, frames, H, W] bool: per face and frame, an ellipse (integer centre and radii, exact integer test) or a
    coarse random field blown up to `block`-pixel squares. The fixture's harness imports this too."""
    frames, height, width = recipe["size"]
    block = recipe["block"]
    coarse = unpack(recipe["coarse"], recipe["coarse_shape"])
    y = torch.arange(height, dtype=torch.int64)[:, None]
    x = torch.arange(width, dtype=torch.int64)[None]
    masks = torch.empty(2, frames, height, width, dtype=torch.bool)
    for k in range(2):
        for f in range(frames):
            cx, cy, rx, ry = (int(v) for v in recipe["ellipses"][k][f])
            inside = ((x - cx) * ry) ** 2 + ((y - cy) * rx) ** 2 <= (rx * ry) ** 2
            blocks = coarse[k, f].repeat_interleave(block, 0).repeat_interleave(block, 1)[:height, :width]
            masks[k, f] = inside | blocks
    return masks


# ---- routing_from_masks vs the original -----------------------------------------------------------------

@pytest.fixture(scope="module")
def cases():
    return torch.load(FIXTURE, weights_only=True)["cases"]


@pytest.mark.parametrize("name", ["real", "small_input", "small_grid"])
def test_routing_from_masks_is_the_originals(cases, name):
    from talkstudio.generators.bindyouravatar.two_stage import routing_from_masks

    case = cases[name]
    masks = recipe_masks(case["recipe"])
    routing = routing_from_masks(masks, case["grid"])
    expected = case["routing"].float()[None]
    assert routing.shape == expected.shape == (1, int(np.prod(case["grid"])), 2)
    assert routing.dtype == torch.float32
    assert torch.equal(routing, expected)  # exact: one-hot or zero per token
    assert set(routing.sum(-1).unique().tolist()) <= {0.0, 1.0}
    # the masks take the same result as numbers (0/1 floats) and as numpy
    assert torch.equal(routing_from_masks(masks.float().numpy(), case["grid"]), expected)
    # and as the PNGs hold them (the object id inside the mask), which the original reads as > 0
    assert torch.equal(routing_from_masks(masks.to(torch.uint8) * 2, case["grid"]), expected)


def test_the_fixture_exercises_overlap_threshold_and_background(cases):
    for name, case in cases.items():
        stats = case["stats"]
        assert stats["both"] > 0 and stats["face1"] > 0 and stats["face2"] > 0 and stats["neither"] > 0, name
    assert cases["real"]["stats"]["exactly_half"] > 0  # the strict > 0.5 matters there


def test_mask_two_overrides_mask_one_and_tokens_run_frame_row_column():
    from talkstudio.generators.bindyouravatar.two_stage import routing_from_masks

    masks = torch.zeros(2, 9, 32, 48, dtype=torch.bool)
    masks[0, :, :16, :16] = True  # face 1: top-left patch of every frame
    masks[1, :, :16, 0:32] = True  # face 2 covers it and the next one
    routing = routing_from_masks(masks, (3, 2, 3)).view(3, 2, 3, 2)
    assert torch.equal(routing[:, 0, 0], torch.tensor([[0.0, 1.0]] * 3))  # both: face 2
    assert torch.equal(routing[:, 0, 1], torch.tensor([[0.0, 1.0]] * 3))
    assert torch.equal(routing[:, 1], torch.zeros(3, 3, 2))  # neither
    masks[1] = False
    assert torch.equal(routing_from_masks(masks, (3, 2, 3)).view(3, 2, 3, 2)[:, 0, 0], torch.tensor([[1.0, 0.0]] * 3))
    with pytest.raises(ValueError):
        routing_from_masks(masks[:1], (3, 2, 3))


# ---- the two passes through the real pipeline, the option ----------------------------------------------

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from bindyouravatar_layout import build_tiny_bindyouravatar, tiny_configs  # noqa: E402

SCRIPT = """\
video: {{size: 96x64, backend: bindyouravatar, options: {{steps: 1{options}}}}}
timing: {{lead_in: 0.05, gap: 0.05, tail: 0.05}}
cast:
  ana: {{voice: ava}}
  ben: {{voice: ben}}
scenes:
  - prompt: two people talk in a warm room
    lines: [{{ana: Hello there.}}, {{ben: Hi.}}]
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_tiny_bindyouravatar(tmp_path_factory.mktemp("models"))


@pytest.fixture
def tiny(monkeypatch):
    from talkstudio import generators
    from talkstudio.generators import bindyouravatar

    tiny_configs(monkeypatch)
    monkeypatch.setattr(bindyouravatar, "MODEL_SIZE", (96, 64))  # the tiny VAE and grid; released: 720x480
    monkeypatch.setattr(generators, "_instances", {})


class FixedMasks:
    """Stand-in for SAM2: fixed masks, recording what it was handed."""

    def __init__(self):
        self.calls = []

    def track(self, frames, faces):
        self.calls.append((np.array(frames), list(faces)))
        n, height, width = frames.shape[:3]
        masks = np.zeros((2, n, height, width), dtype=bool)
        masks[0, :, 8:40, 4:44] = True
        masks[1, :, 16:56, 40:90] = True  # overlaps face 1
        masks[1, n // 2:, 16:56, 60:90] = False  # and moves
        return masks


def test_two_passes_route_the_second_by_the_tracked_masks(tiny, models, write_script, tmp_path, monkeypatch):
    from cli import main
    from talkstudio.generators import get_generator
    from talkstudio.generators.bindyouravatar import BindYourAvatarGenerator, pipeline, two_stage

    tracker = FixedMasks()
    monkeypatch.setattr(two_stage, "load_tracker", lambda files, device: tracker)
    denoised, drawn, pixels, returned = [], [], [], []
    real_denoise, real_draw, real_pixels = pipeline.denoise, pipeline.draw_latents, pipeline.to_pixels
    real_generate = BindYourAvatarGenerator.generate

    def denoise(components, window, *args, **kwargs):
        denoised.append((window, kwargs.get("generator")))
        return real_denoise(components, window, *args, **kwargs)

    def draw_latents(*args, **kwargs):
        noise, condition = real_draw(*args, **kwargs)
        drawn.append(noise.clone())
        return noise, condition

    def to_pixels(frames):
        pixels.append(real_pixels(frames))
        return pixels[-1]

    def generate(self, request):
        returned.append(real_generate(self, request))
        return returned[-1]

    monkeypatch.setattr(pipeline, "denoise", denoise)
    monkeypatch.setattr(pipeline, "draw_latents", draw_latents)
    monkeypatch.setattr(pipeline, "to_pixels", to_pixels)
    monkeypatch.setattr(BindYourAvatarGenerator, "generate", generate)
    out = tmp_path / "out.mp4"
    assert main(["render", str(write_script(SCRIPT.format(options=", two_stage: true"))), "--models", str(models),
                 "--frame-num", "9", "-o", str(out), "--cache", str(tmp_path / "cache"), "--quiet"]) == 0
    assert len(returned) >= 1 and len(denoised) == 2 * len(returned) == len(drawn) == len(pixels)

    (first, g1), (second, g2) = denoised[:2]
    assert first.routing is None and g1 is g2 is not None  # pass 2 draws on from pass 1's generator
    frames, faces = tracker.calls[0]
    assert np.array_equal(frames, pixels[0])  # SAM2 sees pass 1's frames
    masks = tracker.track(frames, faces)
    expected = two_stage.routing_from_masks(masks, (3, 4, 6))
    assert torch.equal(torch.as_tensor(second.routing), expected)  # exactly the masks' routing
    assert expected[..., 0].sum() > 0 and expected[..., 1].sum() > 0
    for field in ("image", "background", "audio", "speakers"):  # nothing else changes
        assert np.array_equal(np.asarray(getattr(first, field)), np.asarray(getattr(second, field)))
    assert not torch.equal(drawn[0], drawn[1])  # pass 2's initial noise is a later draw
    assert np.array_equal(returned[0], pixels[1]) and not np.array_equal(pixels[0], pixels[1])
    # the faces are prompted left to right from the stage geometry at the model size
    assert len(faces) == 2 and faces[0].box[0] < faces[1].box[0]
    for face in faces:
        x0, y0, x1, y1 = face.box
        assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 64 and face.points.shape == (5, 2)
        assert ((face.points >= [x0 - 1, y0 - 1]) & (face.points <= [x1 + 1, y1 + 1])).all()
    generator = get_generator("bindyouravatar", models=models, steps=1, two_stage=True)
    assert ":two_stage:" in generator.version() and generator.tracker is tracker


def test_pass_two_draws_on_from_pass_one_and_its_frames_are_returned(tiny, models, monkeypatch):
    """At the function: pass 1 is the one-pass window (same draws, same frames); pass 2 is the routed window
    drawn from the generator as pass 1 left it (replayed by hand), and its frames are what is returned."""
    from talkstudio.generators.bindyouravatar import load_components, pipeline, two_stage
    from talkstudio.generators.bindyouravatar.models import locate

    components = load_components(locate(models), "cpu")
    rng = np.random.default_rng(3)
    window = pipeline.Window(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), _faces(components),
                             torch.from_numpy(rng.standard_normal((2, 9 + 4, 12, 768)).astype(np.float32)),
                             np.eye(2, dtype=np.float32), rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), 9, "hi")
    drawn = []
    real_draw = pipeline.draw_latents

    def draw_latents(*args, **kwargs):
        noise, condition = real_draw(*args, **kwargs)
        drawn.append(noise.clone())
        return noise, condition

    monkeypatch.setattr(pipeline, "draw_latents", draw_latents)
    tracker = FixedMasks()
    frames = two_stage.generate_two_pass(components, window, tracker, [], steps=2, guide=3.0, seed=7)
    one_pass = pipeline.generate(components, window, 2, 3.0, 7)
    assert len(drawn) == 3 and len(tracker.calls) == 1
    assert torch.equal(drawn[0], drawn[2])  # pass 1's noise is the one-pass render's
    assert not torch.equal(drawn[0], drawn[1])  # pass 2's is not the seed's again
    assert np.array_equal(tracker.calls[0][0], one_pass)  # SAM2 sees the one-pass frames

    replay = torch.Generator().manual_seed(7)
    pipeline.denoise(components, window, 2, 3.0, 7, generator=replay)
    routed = replace(window, routing=two_stage.routing_from_masks(tracker.track(one_pass, []), (3, 4, 6)))
    second = pipeline.to_pixels(pipeline.decode(components, pipeline.denoise(components, routed, 2, 3.0, 7,
                                                                              generator=replay)))
    assert torch.equal(drawn[4], drawn[1])  # the replayed generator draws pass 2's noise
    assert np.array_equal(frames, second) and not np.array_equal(frames, one_pass)


def _faces(components):
    """Ready identity tokens [2, queries, dim] for the tiny DiT."""
    config = components.transformer.additions.face
    return torch.randn(2, config["num_queries"], config["output_dim"], generator=torch.Generator().manual_seed(5))


def test_auto_is_off_without_sam2s_checkpoint(tiny, models):
    from talkstudio.generators import get_generator

    generator = get_generator("bindyouravatar", models=models, steps=1)
    assert generator.tracker is None and "two_stage" not in generator.version()


def test_two_stage_without_sam2_is_refused_with_how_to_get_it(tiny, models, write_script, tmp_path, monkeypatch,
                                                             capsys):
    import sys

    from cli import main

    for name in ("sam2", "sam2.build_sam"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    script = write_script(SCRIPT.format(options=""))
    assert main(["render", str(script), "--models", str(models), "--frame-num", "9", "--opt", "two_stage=true",
                 "-o", str(tmp_path / "out.mp4"), "--cache", str(tmp_path / "cache"), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "two_stage mode needs SAM2" in err and "the sam2 package" in err and "sam2.1_hiera_large.pt" in err
    assert "pip install hydra-core iopath && pip install --no-deps --no-build-isolation sam2==1.1.0" in err
    assert (f"hf download facebook/sam2.1-hiera-large sam2.1_hiera_large.pt --local-dir {models}/Bindyouravatar/sam2"
            in err)


def test_auto_is_on_with_sam2_and_its_checkpoint(tiny, models):
    pytest.importorskip("sam2.build_sam")
    from talkstudio.generators import get_generator
    from talkstudio.generators.bindyouravatar.two_stage import Sam2Tracker

    checkpoint = models / "Bindyouravatar" / "sam2" / "sam2.1_hiera_large.pt"
    checkpoint.parent.mkdir(exist_ok=True)
    checkpoint.write_bytes(b"")  # the tracker loads it on first use only
    try:
        generator = get_generator("bindyouravatar", models=models, steps=1)
    finally:
        checkpoint.unlink()
    assert isinstance(generator.tracker, Sam2Tracker) and generator.tracker.checkpoint == checkpoint
    assert ":two_stage:" in generator.version()


# ---- Sam2Tracker on a tiny random SAM2.1 -----------------------------------------------------------------

# SAM2.1-T's config made tiny (64-pixel input, 5 Hiera blocks, one memory-attention layer): seconds on a CPU
TINY_SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
TINY_SAM2 = ["++model.image_size=64", "++model.memory_attention.num_layers=1",
             "++model.image_encoder.trunk.stages=[1,1,2,1]", "++model.image_encoder.trunk.global_att_blocks=[3]"]


def test_the_released_config_is_the_packages_hiera_large():
    pytest.importorskip("sam2.build_sam")
    from hydra import compose

    from talkstudio.generators.bindyouravatar.two_stage import SAM2_CONFIG

    config = compose(config_name=SAM2_CONFIG)
    assert config.model.image_encoder.trunk.embed_dim == 144 and config.model.image_size == 1024


def test_sam2_tracker_prompts_each_face_on_frame_zero_and_returns_its_masks(tmp_path, monkeypatch):
    pytest.importorskip("sam2.build_sam")
    import cv2
    from sam2.build_sam import build_sam2_video_predictor

    from talkstudio.generators.bindyouravatar.two_stage import FacePrompt, Sam2Tracker

    torch.manual_seed(0)
    random = build_sam2_video_predictor(TINY_SAM2_CONFIG, None, device="cpu", hydra_overrides_extra=TINY_SAM2)
    checkpoint = tmp_path / "tiny_sam2.pt"
    torch.save({"model": random.state_dict()}, checkpoint)
    tracker = Sam2Tracker(checkpoint, "cpu", config=TINY_SAM2_CONFIG, overrides=TINY_SAM2)
    predictor = tracker.predictor  # built from the local file
    loaded = predictor.state_dict()
    assert all(torch.equal(value, loaded[key]) for key, value in random.state_dict().items())

    calls, seen = [], {}
    real = {name: getattr(predictor, name) for name in ("init_state", "reset_state", "add_new_points_or_box",
                                                         "propagate_in_video")}

    def init_state(video_path, **kwargs):
        names = sorted(p.name for p in Path(video_path).iterdir())
        seen["frames"] = [cv2.imread(str(Path(video_path) / n))[..., ::-1] for n in names]
        calls.append(("init_state", names, kwargs))
        return real["init_state"](video_path, **kwargs)

    def reset_state(state):
        calls.append(("reset_state",))
        return real["reset_state"](state)

    def add_new_points_or_box(**kwargs):
        calls.append(("add", {k: v for k, v in kwargs.items() if k != "inference_state"}))
        return real["add_new_points_or_box"](**kwargs)

    def propagate_in_video(state, **kwargs):
        calls.append(("propagate", kwargs))
        for index, ids, logits in real["propagate_in_video"](state, **kwargs):
            seen.setdefault("logits", []).append((index, list(ids), logits.clone()))
            yield index, ids, logits

    for function in (init_state, reset_state, add_new_points_or_box, propagate_in_video):
        monkeypatch.setattr(predictor, function.__name__, function)

    y, x = np.mgrid[0:64, 0:96]
    frames = np.stack([np.stack([(x * 2 + f * 9) % 256, (y * 3) % 256, 128 + 0 * x], -1) for f in range(4)])
    frames = frames.astype(np.uint8)
    points = np.array([[20, 24], [32, 24], [26, 32], [21, 40], [31, 40]], np.float32)
    faces = [FacePrompt((10.0, 12.0, 42.5, 50.0), points), FacePrompt((52.0, 10.0, 90.0, 52.0), points + [38, -1])]
    masks = tracker.track(frames, faces)

    assert [c[0] for c in calls] == ["init_state", "reset_state", "add", "propagate", "reset_state", "add", "propagate"]
    assert calls[0][1] == [f"{i:05d}.jpg" for i in range(4)]
    assert np.abs(np.stack(seen["frames"]).astype(int) - frames).mean() < 3  # the frames, JPEG-encoded
    for k, call in enumerate((calls[2][1], calls[5][1])):
        assert call["frame_idx"] == 0 and call["obj_id"] == k + 1
        assert call["box"].dtype == np.float32 and np.array_equal(call["box"], np.float32(faces[k].box))
        assert call["points"].dtype == np.float32 and np.array_equal(call["points"], faces[k].points)
        assert call["labels"].dtype == np.int32 and np.array_equal(call["labels"], np.ones(5, np.int32))
    assert calls[3][1] == {"start_frame_idx": 0}
    assert masks.shape == (2, 4, 64, 96) and masks.dtype == bool
    for n, (index, ids, logits) in enumerate(seen["logits"]):
        k = n // 4
        assert ids == [k + 1] and logits.shape == (1, 1, 64, 96)
        assert np.array_equal(masks[k, index], (logits[0, 0] > 0).numpy())
    assert sorted(i for i, _, _ in seen["logits"][:4]) == [0, 1, 2, 3]


def test_the_faces_are_found_again_on_the_first_pass():
    """As the original re-detects the faces on pass 1's first frame: a prompt from the stage geometry that is off
    (the people moved in a chained window) takes the face found there; one with no face near keeps its own."""
    from PIL import Image

    from talkstudio.faces import detect_faces
    from talkstudio.generators.bindyouravatar.two_stage import FacePrompt, face_prompt, found_again

    frame = np.array(Image.open(Path(__file__).parents[1] / "casts" / "theo.png").convert("RGB"))
    truth = face_prompt(detect_faces(frame)[0])
    x0, y0, x1, y1 = truth.box
    moved = FacePrompt((x0 + 25, y0 + 10, x1 + 25, y1 + 10), truth.points + 20)
    far = FacePrompt((0.0, 0.0, 20.0, 20.0), np.zeros((5, 2), np.float32))
    again = found_again(frame, [moved, far])
    assert again[0].box == truth.box and np.array_equal(again[0].points, truth.points)
    assert again[1] is far
