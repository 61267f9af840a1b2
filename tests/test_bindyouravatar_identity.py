"""Bind-Your-Avatar's identity inputs against the original's code (reference fixtures made outside the project
by running Bind-Your-Avatar's models/utils.py, its vendored EVA-CLIP, facexlib 0.3.0 and insightface 0.7.3 at
tiny sizes): the EVA02-CLIP image tower, the five-point alignment, ArcFace's preprocessing, the face on
white and the first-frame condition image."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

import bindyouravatar_identity_layout as layout  # noqa: E402

from talkstudio.generators.bindyouravatar import eva_clip, identity  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "bindyouravatar"


def fixture(name):
    return torch.load(FIXTURES / name, weights_only=True)


def tiny_tower(eva):
    state, ignored = eva_clip.visual_state_dict(eva["checkpoint"])
    tower = eva_clip.EvaVisionTower(eva_clip.EvaVisionConfig(**eva["config"])).eval()
    tower.load_state_dict(state, strict=True)
    return tower, ignored


# ------------------------------------------------------------------------------------------- (a) EVA-CLIP

def test_eva_tower_matches_the_original():
    eva = fixture("eva_tiny.pt")
    tower, ignored = tiny_tower(eva)
    assert ignored == ["logit_scale", "text"]
    with torch.no_grad():
        embedding, hidden = tower(eva["images"])
        normalised, _ = tower.embed(eva["images"])
    assert len(hidden) == 5
    assert (embedding - eva["embedding"]).abs().max() < 1e-4
    assert (torch.stack(hidden) - eva["hidden"]).abs().max() < 1e-4
    expected = eva["embedding"] / eva["embedding"].norm(dim=1, keepdim=True)
    assert (normalised - expected).abs().max() < 1e-5


def test_eva_checkpoint_loads_strictly(tmp_path):
    eva = fixture("eva_tiny.pt")
    config = eva_clip.EvaVisionConfig(**eva["config"])
    path = tmp_path / "eva.pt"
    torch.save(eva["checkpoint"], path)
    tower, ignored = eva_clip.load_visual(path, config=config)
    assert ignored == ["logit_scale", "text"]
    with torch.no_grad():
        embedding, _ = tower(eva["images"])
    assert (embedding - eva["embedding"]).abs().max() < 1e-4
    # a 'module.'-wrapped file loads the same; a missing or misshapen tensor is named
    wrapped = {"module." + k: v for k, v in eva["checkpoint"]["state_dict"].items()}
    torch.save(wrapped, path)
    assert eva_clip.load_visual(path, config=config)[1] == ["logit_scale", "text"]
    broken = dict(eva["checkpoint"]["state_dict"])
    del broken["visual.blocks.3.attn.q_bias"]
    torch.save(broken, path)
    with pytest.raises(ValueError, match="blocks.3.attn.q_bias"):
        eva_clip.load_visual(path, config=config)
    broken = dict(eva["checkpoint"]["state_dict"])
    broken["visual.head.weight"] = broken["visual.head.weight"][:-1]
    torch.save(broken, path)
    with pytest.raises(ValueError, match="head.weight"):
        eva_clip.load_visual(path, config=config)


def test_eva_full_size_shapes():
    with torch.device("meta"):
        tower = eva_clip.EvaVisionTower()
    # the RoPE tables are real numbers even on the meta device (load_visual builds there, then loads)
    assert tower.rope_cos.shape == (576, 64) and tower.rope_cos.device.type == "cpu"
    assert tower.rope_cos.abs().max() <= 1 and tower.rope_cos[0].eq(1).all()  # first patch: angle 0
    tower.to("meta")
    embedding, hidden = tower(torch.zeros(1, 3, 336, 336, device="meta"))
    state = tower.state_dict()
    assert state["pos_embed"].shape == (1, 577, 1024)
    assert state["blocks.23.mlp.w1.weight"].shape == (2730, 1024)
    assert state["blocks.0.attn.q_bias"].shape == (1024,) and "blocks.0.attn.k_bias" not in state
    assert state["head.weight"].shape == (768, 1024)
    assert not any("freqs" in k or "rope" in k for k in state)
    assert embedding.shape == (1, 768)
    assert [tuple(h.shape) for h in hidden] == [(1, 577, 1024)] * 5


# ------------------------------------------------------------------------------------------ (b) alignment

def similarity(scale, degrees, shift):
    a = np.radians(degrees)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), shift[0]], [scale * np.sin(a), scale * np.cos(a), shift[1]]])


def test_alignment_maps_the_landmarks_onto_the_ffhq_template():
    # the template carried into a picture by a known similarity: aligning must undo it
    forward = similarity(0.45, 17.0, (-20.0, -30.0))  # aligned -> picture
    template = identity.FFHQ_TEMPLATE_512
    landmarks = template @ forward[:, :2].T + forward[:, 2]
    height, width = 400, 360
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    spots = sum(np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.5 ** 2)) for x, y in landmarks)
    picture = np.repeat(np.clip(spots * 255, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    aligned, matrix = identity.align(picture, landmarks)
    assert aligned.shape == (512, 512, 3) and aligned.dtype == np.uint8
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - template).max() < 0.05
    gray = aligned[..., 0].astype(np.float64)
    for x, y in template:
        x0, y0 = int(x) - 10, int(y) - 10
        window = gray[y0:y0 + 21, x0:x0 + 21]
        wy, wx = np.mgrid[y0:y0 + 21, x0:x0 + 21]
        centroid = np.array([(window * wx).sum(), (window * wy).sum()]) / window.sum()
        assert np.abs(centroid - (x, y)).max() < 1.0, (centroid, (x, y))
    # outside the picture: facexlib's gray, (135, 133, 132) in its BGR image
    assert tuple(aligned[0, 0]) == (132, 133, 135) == tuple(aligned[-1, 0])


def test_long_pictures_are_shrunk_to_1024_with_their_landmarks():
    picture = np.zeros((900, 1300, 3), np.uint8)
    landmarks = np.array([[0.0, 0.0], [1299, 899], [650, 450], [10, 20], [30, 40]], np.float32)
    small, moved = identity.shrink_long_edge(picture, landmarks)
    assert small.shape == (708, 1024, 3)
    assert np.allclose(moved[1], [(1299.5 * 1024 / 1300) - 0.5, (899.5 * 708 / 900) - 0.5])
    same, kept = identity.shrink_long_edge(picture[:700, :1000], landmarks)
    assert same.shape == (700, 1000, 3) and kept is landmarks


def test_five_points_from_the_mediapipe_geometry():
    from talkstudio.faces import from_box, from_landmarks

    rng = np.random.default_rng(0)
    points = rng.uniform(100, 300, (478, 2))
    points[33], points[133], points[362], points[263] = (150, 150), (170, 152), (230, 150), (250, 148)
    points[1], points[61], points[291] = (200, 200), (175, 240), (226, 238)
    expected = [[160, 151], [240, 149], [200, 200], [175, 240], [226, 238]]
    assert np.allclose(identity.five_points_from_mesh(points), expected)
    assert np.allclose(identity.five_points(from_landmarks(points)), expected)
    # mirrored (the mesh's left eye on the image's left): still image-left first
    mirrored = points.copy()
    mirrored[:, 0] = 400 - mirrored[:, 0]
    assert np.allclose(identity.five_points(from_landmarks(mirrored))[:, 0], [160, 240, 200, 174, 225])
    # a box-only geometry: mouth corners mouth_width apart, along the eye line
    box = from_box((100, 100, 100, 100))
    five = identity.five_points(box)
    assert np.allclose(five[3], (box.mouth[0] - box.mouth_width / 2, box.mouth[1]))
    assert np.allclose(five[4], (box.mouth[0] + box.mouth_width / 2, box.mouth[1]))


# ------------------------------------------------------------------------------------------ (c) ArcFace

@pytest.mark.parametrize("style", ["torch", "mxnet"])
def test_arcface_preprocessing_matches_insightface(tmp_path, style):
    arc = fixture("identity_arcface.pt")
    case = arc[style]
    path = tmp_path / f"{style}.onnx"
    path.write_bytes(bytes(case["onnx"].numpy()))
    model = identity.ArcFace(path)
    assert (model.input_mean, model.input_std) == (case["mean"], case["std"])
    assert model.input_size == (112, 112)
    image = arc["image_bgr"].numpy()
    assert np.abs(model.get_feat(image) - case["feat"].numpy()).max() < 1e-5
    tiled = np.ascontiguousarray(np.tile(image, (4, 4, 1))[:512, :512])
    assert np.abs(model.get_feat(tiled) - case["feat_tiled512"].numpy()).max() < 1e-5
    # a folder is read as the antelopev2 folder
    (tmp_path / "pack").mkdir()
    (tmp_path / "pack" / "glintr100.onnx").write_bytes(path.read_bytes())
    assert identity.ArcFace(tmp_path / "pack").path.name == "glintr100.onnx"


def test_onnx_node_names_without_the_onnx_package(tmp_path):
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    path.write_bytes(layout.tiny_recogniser(mxnet_names=True))
    assert identity.onnx_node_names(path) == [n.name for n in onnx.load(str(path)).graph.node][:8]
    assert identity.onnx_node_names(path)[:2] == ["_minusscalar0", "_mulscalar0"]


# --------------------------------------------------------------------------------- (d) condition image

def test_condition_image_layout():
    left = np.zeros((512, 512, 3), np.uint8)
    left[..., 0] = 200
    right = np.zeros((300, 200, 3), np.uint8)
    right[..., 2] = 90
    canvas = identity.condition_image(left, right)
    assert canvas.shape == (480, 720, 3) and canvas.dtype == np.uint8
    assert (canvas[:60] == 255).all() and (canvas[420:] == 255).all()
    assert (canvas[60:420, :360] == (200, 0, 0)).all()
    assert (canvas[60:420, 360:] == (0, 0, 90)).all()


def test_condition_image_matches_the_original():
    reference = fixture("identity_pipeline.pt")
    crops = [layout.unpng(c.numpy()) for c in reference["crops"]]
    assert np.array_equal(identity.condition_image(*crops), layout.unpng(reference["condition"].numpy()))


# ------------------------------------------------------------------------ the whole step vs the original

@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    reference = fixture("identity_pipeline.pt")
    tower, _ = tiny_tower(fixture("eva_tiny.pt"))
    path = tmp_path_factory.mktemp("arcface") / "glintr100.onnx"
    path.write_bytes(bytes(reference["onnx"].numpy()))
    parser = identity.BiSeNet().eval()
    parser.load_state_dict(layout.seeded_state(parser.state_dict(), seed=reference["bisenet_seed"]), strict=True)
    return identity.IdentityEncoders(tower, identity.ArcFace(path), parser, torch.device("cpu"), torch.float32), reference


@pytest.mark.parametrize("which", [0, 1])
def test_identity_inputs_match_the_original(encoders, which):
    encoders, reference = encoders
    picture = layout.unpng(reference["pictures"][which].numpy())
    landmarks = reference["landmarks"][which].numpy()
    aligned, _ = identity.align(*identity.shrink_long_edge(picture, landmarks))
    assert np.array_equal(aligned, layout.unpng(reference["aligned"][which].numpy()))
    background = identity.parsed_background(aligned, encoders.parser)
    _, gray = identity.faces_on_white(aligned, background)
    assert (identity.eva_input(gray, 42) - reference["eva_input"][which]).abs().max() < 1e-5

    id_cond, levels, crop = encoders.encode(picture, landmarks)
    assert np.array_equal(crop, layout.unpng(reference["crops"][which].numpy()))
    assert 0.2 < (crop == 255).all(-1).mean() < 0.8  # the stand-in parser whitens a good part, not all
    assert id_cond.shape == (16 + 24,)
    assert (id_cond[:16] - reference["arcface"][which]).abs().max() < 1e-5
    assert (id_cond - reference["id_cond"][which]).abs().max() < 1e-4
    assert len(levels) == 5 and levels[0].shape == (10, 24)
    assert (torch.stack(levels) - reference["hidden"][:, which]).abs().max() < 1e-4


def test_parser_checkpoint_loads_strictly(tmp_path):
    parser = identity.BiSeNet()
    state = layout.seeded_state(parser.state_dict(), seed=1)
    path = tmp_path / "parsing_bisenet.pth"
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    loaded = identity.load_parser(path)
    assert torch.equal(loaded.state_dict()["cp.arm16.bn_atten.running_var"], state["cp.arm16.bn_atten.running_var"])
    del state["conv_out32.conv_out.weight"]
    torch.save(state, path)
    with pytest.raises(RuntimeError, match="conv_out32.conv_out.weight"):
        identity.load_parser(path)


def test_missing_encoder_files_are_named(tmp_path):
    from talkstudio.errors import InputError

    with pytest.raises(InputError, match="glintr100.onnx"):
        identity.load_identity_encoders(tmp_path / "eva.pt", tmp_path / "glintr100.onnx", None)


def test_fallback_background_cuts_below_the_jaw():
    oval = np.array([[100, 100], [200, 40], [300, 100], [280, 220], [200, 260], [120, 220]], np.float64)
    below = identity.below_jaw(oval, 300, 400)
    assert below[270, 200] and not below[250, 200]  # under the chin / on the chin
    assert below[240, 150] and not below[230, 150]  # the jaw line runs from (120, 220) to (200, 260)
    assert below[230, 20] and not below[210, 20]  # beside the face: below the jaw's end (y = 220)


def test_mediapipe_points_land_on_the_drawn_landmarks():
    """The mesh points chosen for RetinaFace's five (eye-corner midpoints, mesh 1, mesh 61 and 291) found by
    the project's face finder on the reference picture (a drawing around known landmarks)."""
    pytest.importorskip("mediapipe")
    from talkstudio.faces import detect_faces

    reference = fixture("identity_pipeline.pt")
    picture = layout.unpng(reference["pictures"][1].numpy())
    drawn = reference["landmarks"][1].numpy()
    faces = detect_faces(picture)
    assert len(faces) == 1 and faces[0].source == "mesh"
    found = identity.five_points(faces[0])
    eye_distance = np.linalg.norm(drawn[1] - drawn[0])
    assert np.linalg.norm(found - drawn, axis=1).max() < 0.08 * eye_distance
    # and the fallback background runs on the aligned face (the drawing has no "person": nothing whitened
    # above the jaw)
    aligned, _ = identity.align(picture, found)
    background = identity.mediapipe_background(aligned)
    assert background.shape == (512, 512) and not background[200:300, 200:300].any()


def test_fallback_keeps_the_whole_face_of_a_drawn_portrait():
    """Selfie segmentation loses the pale skin of a drawn face (seen on casts/maya.png: cheeks, forehead and eyes
    went white); nothing inside the face's outline may become background."""
    from PIL import Image

    from talkstudio.faces import detect_faces

    picture = np.array(Image.open(Path(__file__).parents[1] / "casts" / "maya.png").convert("RGB"))
    small, points = identity.shrink_long_edge(picture, identity.five_points(detect_faces(picture)[0]))
    aligned, _ = identity.align(small, points)
    background = identity.mediapipe_background(aligned)
    assert not background[230:380, 185:330].any()  # eyes to mouth on facexlib's 512 template
    assert background[:, :20].mean() > 0.5  # the picture beside the head is still cut away
