"""Bind-Your-Avatar's identity inputs for one face: what its face modules read, and the face picture its
first-frame condition shows. The original's steps (models/utils.py process_face_embeddings_split, run by
infer.py on each identity photo), here for a face in a stage picture with its five landmarks:

    1. the picture, if its long edge passes 1024, shrunk to 1024 (Lanczos), as resize_numpy_image_long;
    2. the face aligned to 512 x 512: a similarity transform from the five landmarks (image-left eye,
       image-right eye, nose tip, image-left and image-right mouth corner) onto facexlib's FFHQ template
       (cv2.estimateAffinePartial2D, LMEDS), warped bilinearly with facexlib's gray border;
    3. InsightFace's ArcFace (antelopev2 glintr100.onnx) on that 512 x 512 aligned face, exactly as
       ArcFaceONNX.get_feat: cv2.dnn.blobFromImages resizes it to the model's 112 x 112 (bilinear),
       swaps BGR to RGB, (x - mean) / std with mean = std = 127.5 (0 and 1 for an MXNet-converted model,
       recognised by its first node names as insightface does) -> 512 floats, not normalised;
    4. facexlib's BiSeNet face parser on the aligned face (ImageNet mean/std): the labels background,
       ears, earring, neck, necklace, cloth, hat (0, 7, 8, 9, 14, 15, 16, 18) become white. The colour
       face on white is the crop the condition image shows; its gray (0.299 R + 0.587 G + 0.114 B, on
       the same white) is what EVA-CLIP sees;
    5. EVA02-CLIP-L-14-336's image tower (eva_clip.py) on the gray face resized to 336 (bicubic, with
       antialiasing as torchvision's tensor resize) and normalised with the OpenAI CLIP mean/std ->
       the L2-normalised 768-d embedding and the inputs of blocks 4, 8, 12, 16, 20 ([577, 1024] each);
    6. id_cond = cat(ArcFace 512, EVA 768) = 1280.

Differences from the original, on purpose:
  * The five landmarks are not RetinaFace's (facexlib's detector) but the project's mediapipe face mesh
    points (`five_points`): eye centres = midpoints of the eye corners (mesh 33/133 and 362/263), nose
    tip = mesh 1, mouth corners = mesh 61 and 291 (FaceGeometry keeps these, not the iris centres 468/473).
    RetinaFace marks the eye centres (pupils): the corner midpoints can sit a few pixels off them, mostly
    vertically, and do not follow the gaze; the fit is a least-median similarity over all five points.
  * Without a parsing model (`parsing_path=None`) the background is found with mediapipe instead of
    BiSeNet: the selfie-segmentation person mask, minus everything below the face mesh's jaw line (neck,
    clothes); ears are kept. Only a fallback: the released parsing_bisenet.pth is used when given.
  * The picture is a stage picture (or any RGB array), not an identity photo file: no EXIF handling here.

Landmark arrays are float32 [5, 2] in pixels of the picture given.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from talkstudio.generators.bindyouravatar.eva_clip import IMAGE_MEAN, IMAGE_STD, EvaVisionTower, load_visual

# facexlib FaceRestoreHelper: the five FFHQ landmarks at face_size 512 (crop_ratio (1, 1) shifts nothing)
FFHQ_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]])
ALIGNED_SIZE = 512
# facexlib's warpAffine border, (135, 133, 132) in the BGR image it warps: here in RGB
BORDER_RGB = (132, 133, 135)
LONG_EDGE = 1024  # infer.py resizes every identity photo to at most this (resize_numpy_image_long)
PARSING_BACKGROUND = (0, 16, 18, 7, 8, 9, 14, 15)  # background, cloth, hat, ears, earring, neck, necklace
PARSING_CLASSES = 19
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY = (0.299, 0.587, 0.114)
# the first-frame condition of the original's pipeline (no background picture): a white 720 x 480 canvas
# with each identity's face on white resized to 360 x 360 (PIL bicubic), the first at (0, 60), the second
# at (360, 60)
CANVAS_SIZE = (720, 480)
CANVAS_CROP = 360
CANVAS_TOP = 60
MIN_PERSON = 0.05  # the mediapipe fallback ignores a person mask covering less of the aligned face than this


# ---------------------------------------------------------------------------------------------- landmarks

def five_points(face) -> np.ndarray:
    """RetinaFace-order landmarks [5, 2] from a talkstudio FaceGeometry: its eyes (mesh corner midpoints,
    image-left first), its nose (mesh 1) and the ends of its outer upper lip line (mesh 61 and 291). A
    geometry without lip contours (detector or box) puts the corners mouth_width apart along the eye line."""
    (lx, ly), (rx, ry) = face.eyes
    if face.lips:
        left, right = face.lips[2][0], face.lips[2][-1]
    else:
        direction = np.array([rx - lx, ry - ly], np.float64)
        direction /= max(np.linalg.norm(direction), 1e-6)
        half = direction * face.mouth_width / 2
        left, right = np.asarray(face.mouth) - half, np.asarray(face.mouth) + half
    return np.array([(lx, ly), (rx, ry), face.nose, left, right], np.float32)


def five_points_from_mesh(points: np.ndarray) -> np.ndarray:
    """The same five from raw mediapipe face-mesh landmarks [468 or 478, 2] in pixels."""
    from talkstudio.faces import EYES, MOUTH_LEFT, MOUTH_RIGHT, NOSE_TIP

    eyes = sorted(tuple((points[a] + points[b]) / 2) for a, b, _, _ in EYES)
    mouth = sorted((tuple(points[MOUTH_LEFT]), tuple(points[MOUTH_RIGHT])))
    return np.array([eyes[0], eyes[1], points[NOSE_TIP], mouth[0], mouth[1]], np.float32)


def shrink_long_edge(picture: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """resize_numpy_image_long(picture, 1024) (cv2 Lanczos, sizes truncated), the landmarks following."""
    import cv2

    height, width = picture.shape[:2]
    if max(height, width) <= LONG_EDGE:
        return picture, landmarks
    k = LONG_EDGE / max(height, width)
    new_h, new_w = int(height * k), int(width * k)
    picture = cv2.resize(picture, (new_w, new_h), interpolation=cv2.INTER_LANCZOS4)
    scale = np.array([new_w / width, new_h / height], np.float64)
    return picture, ((landmarks.astype(np.float64) + 0.5) * scale - 0.5).astype(np.float32)


def align(picture_rgb: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the face warped to 512 x 512 RGB uint8, the 2 x 3 matrix from picture to aligned pixels), as facexlib's
    align_warp_face: landmarks (float32, as RetinaFace hands them) fitted to the template by a partial affine
    (rotation, uniform scale, shift) with LMEDS, bilinear warp, constant gray border."""
    import cv2

    landmarks = np.asarray(landmarks, np.float32).reshape(5, 2)
    matrix = cv2.estimateAffinePartial2D(landmarks, FFHQ_TEMPLATE_512, method=cv2.LMEDS)[0]
    if matrix is None:
        raise ValueError(f"no similarity transform fits the landmarks {landmarks.tolist()}")
    aligned = cv2.warpAffine(np.ascontiguousarray(picture_rgb), matrix, (ALIGNED_SIZE, ALIGNED_SIZE),
                             borderMode=cv2.BORDER_CONSTANT, borderValue=BORDER_RGB)
    return aligned, matrix


# ------------------------------------------------------------------------------------------------ ArcFace

def onnx_node_names(path, count: int = 8) -> list[str]:
    """Names of the first `count` graph nodes of an ONNX file, read straight from its protobuf
    (ModelProto.graph = field 7, GraphProto.node = 1, NodeProto.name = 3) without the onnx package."""

    def varint(data, pos):
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7

    def fields(data, start, end):
        pos = start
        while pos < end:
            key, pos = varint(data, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = varint(data, pos)
                yield number, None
            elif wire == 1 or wire == 5:
                pos += 8 if wire == 1 else 4
            elif wire == 2:
                length, pos = varint(data, pos)
                yield number, (pos, pos + length)
                pos += length
            else:
                raise ValueError(f"{path}: not an ONNX model (protobuf wire type {wire})")

    names = []
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for number, span in fields(data, 0, len(data)):
            if number != 7 or span is None:
                continue
            for node_number, node in fields(data, *span):
                if node_number != 1 or node is None:
                    continue
                name = ""
                for field_number, value in fields(data, *node):
                    if field_number == 3 and value is not None:
                        name = bytes(data[value[0]:value[1]]).decode("utf-8")
                names.append(name)
                if len(names) == count:
                    return names
    return names


class ArcFace:
    """glintr100.onnx through onnxruntime, preprocessed as insightface 0.7.3's ArcFaceONNX
    (model_zoo/arcface_onnx.py: __init__ picks mean/std from the first 8 node names, get_feat)."""

    def __init__(self, path, device="cpu"):
        import onnxruntime as ort

        path = Path(path)
        if path.is_dir():
            path = path / "glintr100.onnx"
        self.path = path
        names = onnx_node_names(path)
        mxnet = (any(n.startswith(("Sub", "_minus")) for n in names)
                 and any(n.startswith(("Mul", "_mul")) for n in names))
        self.input_mean, self.input_std = (0.0, 1.0) if mxnet else (127.5, 127.5)
        wanted = ["CUDAExecutionProvider"] if torch.device(device).type == "cuda" else []
        providers = [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), providers=providers)
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_size = tuple(first.shape[2:4][::-1])  # (width, height)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def blob(self, images_bgr) -> np.ndarray:
        import cv2

        images = images_bgr if isinstance(images_bgr, list) else [images_bgr]
        return cv2.dnn.blobFromImages(images, 1.0 / self.input_std, self.input_size, (self.input_mean,) * 3,
                                      swapRB=True)

    def get_feat(self, images_bgr) -> np.ndarray:
        """[n, 512] float32 for BGR uint8 image(s) of any size (resized to the model's input)."""
        return self.session.run(self.output_names, {self.input_name: self.blob(images_bgr)})[0]


# ------------------------------------------------------------------------------- BiSeNet (facexlib's names)

class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu((x if self.downsample is None else self.downsample(x)) + residual)


class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (cin, cout, stride) in enumerate(((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)), 1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))

    def forward(self, x):
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


def _global_pool(x):
    return F.avg_pool2d(x, x.size()[2:])


class AttentionRefinementModule(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x):
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(_global_pool(feat))))


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x):
        feat8, feat16, feat32 = self.resnet(x)
        avg = F.interpolate(self.conv_avg(_global_pool(feat32)), feat32.shape[2:], mode="nearest")
        up32 = self.conv_head32(F.interpolate(self.arm32(feat32) + avg, feat16.shape[2:], mode="nearest"))
        up16 = self.conv_head16(F.interpolate(self.arm16(feat16) + up32, feat8.shape[2:], mode="nearest"))
        return feat8, up16


class FeatureFusionModule(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial, context):
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(_global_pool(feat)))))
        return feat * attention + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, cin: int, mid: int, classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, classes, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """facexlib's face parser (parsing/bisenet.py, ResNet-18 context path, 19 CelebAMask-HQ labels). Only the
    main output is computed; the two auxiliary heads (conv_out16, conv_out32) exist so that
    parsing_bisenet.pth loads strictly."""

    def __init__(self, classes: int = PARSING_CLASSES):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, classes)
        self.conv_out16 = BiSeNetOutput(128, 64, classes)
        self.conv_out32 = BiSeNetOutput(128, 64, classes)

    def forward(self, x):
        """[batch, 3, h, w] ImageNet-normalised RGB -> label logits [batch, classes, h, w]."""
        feat8, context8 = self.cp(x)
        out = self.conv_out(self.ffm(feat8, context8))
        return F.interpolate(out, x.shape[2:], mode="bilinear", align_corners=True)


def load_parser(path, device="cpu") -> BiSeNet:
    state = torch.load(path, map_location="cpu", weights_only=True)
    parser = BiSeNet()
    # a BatchNorm counter has no effect in eval; an older file may lack it
    for key, value in parser.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    parser.load_state_dict(state, strict=True)
    return parser.to(device).eval()


# --------------------------------------------------------------------------------------- face on white

def _image_tensor(image_rgb: np.ndarray, device) -> torch.Tensor:
    """[1, 3, h, w] float32 in [0, 1], as facexlib's img2tensor(...) / 255."""
    return torch.from_numpy(np.ascontiguousarray(image_rgb).transpose(2, 0, 1)).float().unsqueeze(0).to(device) / 255.0


def _normalised(x: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - mean) / std


def to_gray(x: torch.Tensor) -> torch.Tensor:
    return (GRAY[0] * x[:, 0:1] + GRAY[1] * x[:, 1:2] + GRAY[2] * x[:, 2:3]).repeat(1, 3, 1, 1)


@torch.no_grad()
def parsed_background(aligned_rgb: np.ndarray, parser: BiSeNet) -> torch.Tensor:
    """[1, 1, h, w] bool, True where BiSeNet's label is one of PARSING_BACKGROUND."""
    device = next(parser.parameters()).device
    logits = parser(_normalised(_image_tensor(aligned_rgb, device), IMAGENET_MEAN, IMAGENET_STD))
    return torch.isin(logits.argmax(dim=1, keepdim=True), torch.tensor(PARSING_BACKGROUND, device=device))


def below_jaw(oval: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool [height, width]: True below the lower half of a face outline (points [n, 2]); beside the face,
    below the outline's ends."""
    centre = oval[:, 1].mean()
    jaw = oval[oval[:, 1] >= centre]
    jaw = jaw[np.argsort(jaw[:, 0])]
    xs = np.arange(width, dtype=np.float64)
    limit = np.interp(xs, jaw[:, 0], jaw[:, 1])  # constant beyond the ends: their heights
    return np.arange(height, dtype=np.float64)[:, None] > limit[None, :]


def mediapipe_background(aligned_rgb: np.ndarray) -> np.ndarray:
    """The fallback without BiSeNet: bool [h, w], True off the person (selfie segmentation; ignored when it
    finds almost no one) or below the face mesh's jaw line, and never inside the face's outline (selfie
    segmentation can lose pale skin on drawn faces)."""
    import cv2

    from talkstudio.faces import _get_models, people_mask, quiet_native_logs

    height, width = aligned_rgb.shape[:2]
    background = people_mask(aligned_rgb) < 128
    if background.mean() > 1 - MIN_PERSON:  # no person found (a drawing, say): keep all but what the jaw cuts
        background[:] = False
    models = _get_models()
    with models.lock, quiet_native_logs():
        mesh = models.mesh.process(np.ascontiguousarray(aligned_rgb))
    if mesh.multi_face_landmarks:
        import mediapipe as mp

        indices = sorted({i for edge in mp.solutions.face_mesh.FACEMESH_FACE_OVAL for i in edge})
        landmarks = mesh.multi_face_landmarks[0].landmark
        oval = np.array([(landmarks[i].x * width, landmarks[i].y * height) for i in indices])
        background |= below_jaw(oval, height, width)
        inside = np.zeros((height, width), np.uint8)
        cv2.fillConvexPoly(inside, cv2.convexHull(oval.round().astype(np.int32)), 1)
        background &= inside == 0
    return background


def faces_on_white(aligned_rgb: np.ndarray, background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(colour, gray) [1, 3, h, w] float32 in [0, 1]: the aligned face with its background white."""
    x = _image_tensor(aligned_rgb, background.device)
    white = torch.ones_like(x)
    return torch.where(background, white, x), torch.where(background, white, to_gray(x))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[1, 3, h, w] in [0, 1] -> [h, w, 3] uint8 truncated, as the original's tensor_to_pil(x * 255)."""
    return (image[0] * 255.0).permute(1, 2, 0).cpu().numpy().astype(np.uint8)


def eva_input(gray_on_white: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision resize(..., size, BICUBIC) of a float tensor (antialiased), then the CLIP mean/std."""
    resized = F.interpolate(gray_on_white, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return _normalised(resized, IMAGE_MEAN, IMAGE_STD)


def condition_image(crop_left: np.ndarray, crop_right: np.ndarray) -> np.ndarray:
    """[480, 720, 3] uint8: the white canvas with the two faces on white (each [h, w, 3] uint8) resized to
    360 x 360 (PIL's default filter for resize, bicubic), the first identity at (0, 60), the second at (360, 60)."""
    from PIL import Image

    canvas = Image.new("RGB", CANVAS_SIZE, (255, 255, 255))
    for i, crop in enumerate((crop_left, crop_right)):
        face = Image.fromarray(np.ascontiguousarray(crop, dtype=np.uint8)).resize((CANVAS_CROP, CANVAS_CROP),
                                                                                  Image.BICUBIC)
        canvas.paste(face, (CANVAS_CROP * i, CANVAS_TOP))
    return np.asarray(canvas).copy()


# ---------------------------------------------------------------------------------------------- encoders

@dataclass
class IdentityEncoders:
    eva: EvaVisionTower
    arcface: ArcFace
    parser: BiSeNet | None  # None: the mediapipe fallback
    device: torch.device
    dtype: torch.dtype

    @torch.no_grad()
    def encode(self, picture_rgb: np.ndarray, landmarks5: np.ndarray):
        """(id_cond [1280], vit_levels five [577, 1024], crop_on_white [512, 512, 3] uint8) for the face with
        these five landmarks (RetinaFace order, pixels of `picture_rgb`)."""
        picture, landmarks = shrink_long_edge(np.asarray(picture_rgb), np.asarray(landmarks5, np.float32))
        aligned, _ = align(picture, landmarks)
        arcface = self.arcface.get_feat(np.ascontiguousarray(aligned[..., ::-1]))  # the original feeds BGR
        if self.parser is not None:
            background = parsed_background(aligned, self.parser)
        else:
            background = torch.from_numpy(mediapipe_background(aligned))[None, None].to(self.device)
        colour, gray = faces_on_white(aligned, background.to(self.device))
        embedding, hidden = self.eva.embed(eva_input(gray, self.eva.config.image_size).to(self.dtype))
        ante = torch.from_numpy(arcface).to(self.device, self.dtype).reshape(1, -1)
        id_cond = torch.cat([ante, embedding], dim=-1)[0]
        return id_cond, [level[0] for level in hidden], to_uint8(colour)


def load_identity_encoders(eva_path, antelope_path, parsing_path_or_none, device="cpu",
                           dtype=torch.float32) -> IdentityEncoders:
    """The released identity encoders: EVA02_CLIP_L_336_psz14_s6B.pt (its `visual.` tensors, strictly; the
    text tower `text.*` and `logit_scale` ignored), glintr100.onnx (the file or its antelopev2 folder) and
    facexlib's parsing_bisenet.pth (None: the mediapipe fallback). BiSeNet runs in float32 as in the
    original; the EVA tower in `dtype`."""
    from talkstudio.errors import InputError, Problem

    device = torch.device(device)
    missing = [str(p) for p in (eva_path, antelope_path, parsing_path_or_none) if p is not None and not Path(p).exists()]
    if missing:
        raise InputError(Problem("missing identity encoder files: " + ", ".join(missing),
                                 hint="download the Bind-Your-Avatar folder (its face_encoder/)"))
    try:
        eva, _ = load_visual(eva_path, device, dtype)
    except ValueError as e:
        raise InputError(Problem(str(e), file=Path(eva_path))) from None
    parser = None
    if parsing_path_or_none is not None:
        try:
            parser = load_parser(parsing_path_or_none, device)
        except RuntimeError as e:
            raise InputError(Problem(f"facexlib BiSeNet does not fit: {e}", file=Path(parsing_path_or_none))) from None
    return IdentityEncoders(eva, ArcFace(antelope_path, device), parser, device, dtype)
