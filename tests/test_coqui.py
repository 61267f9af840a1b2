"""The Coqui TTS engine (local XTTS-v2 / VITS folders).

The first part checks the adapter's own logic from config.json files written here and
runs everywhere. The second part runs the real coqui-tts on a tiny random-weight VITS
built on the spot (no weights can be downloaded); it is skipped where `TTS` cannot be
imported, which includes a CPU-only torch next to PyPI's CUDA torchaudio.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from talkstudio.checks import load_screenplay
from talkstudio.errors import InputError
from talkstudio.screenplay import Voice
from talkstudio.voices import coqui, engine_names, get_engine
from talkstudio.voices.coqui import (
    ModelFolderError,
    assemble,
    condensed,
    coqui_import_problem,
    estimate_words,
    match_language,
    read_model,
)

engine = get_engine("coqui")
XTTS_LANGUAGES = ["en", "es", "fr", "de", "zh-cn", "ja"]


def write_folder(folder, config: dict, files=("model.pth",)):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    for name in files:
        (folder / name).write_bytes(b"weights")
    return folder


@pytest.fixture
def xtts(tmp_path):
    config = {"model": "xtts", "languages": XTTS_LANGUAGES, "audio": {"sample_rate": 22050, "output_sample_rate": 24000}}
    return write_folder(tmp_path / "xtts", config, ("model.pth", "vocab.json"))


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.wav"
    path.write_bytes(b"RIFF")
    return path


def vits_config(**model_args) -> dict:
    return {"model": "vits", "audio": {"sample_rate": 16000}, "model_args": model_args}


def problems(**voice) -> list[str]:
    """check()'s problems other than coqui-tts being unimportable here."""
    found = engine.check(Voice(engine="coqui", **voice))
    return [p for p in found if p != coqui_import_problem()]


def test_registered():
    assert "coqui" in engine_names()


# --- model folders ---------------------------------------------------------------------------------


def test_model_kind_rate_and_checkpoint_come_from_the_folder(xtts, tmp_path):
    model = read_model(xtts)
    assert (model.kind, model.rate, model.checkpoint, model.languages) == ("xtts", 24000, xtts, tuple(XTTS_LANGUAGES))
    vits = read_model(write_folder(tmp_path / "vits", vits_config(), ["model_file.pth"]))
    assert (vits.kind, vits.rate, vits.checkpoint.name, vits.languages, vits.multi_speaker) == \
        ("vits", 16000, "model_file.pth", (), False)
    odd_name = read_model(write_folder(tmp_path / "odd", vits_config(), ["best_model_1000.pth"]))
    assert odd_name.checkpoint.name == "best_model_1000.pth"


@pytest.mark.parametrize("setup, needle", [
    (lambda d: d.write_text("x"), "is not a folder"),
    (lambda d: d.mkdir(), "has no config.json"),
    (lambda d: write_folder(d, {"model": "xtts", "languages": ["en"]}, ["vocab.json"]), "lacks model.pth"),
    (lambda d: write_folder(d, {"model": "xtts", "languages": ["en"]}), "lacks vocab.json"),
    (lambda d: write_folder(d, vits_config(), []), "needs one checkpoint named model.pth"),
    (lambda d: write_folder(d, vits_config(), ["a.pth", "b.pth"]), "(found a.pth, b.pth)"),
    (lambda d: write_folder(d, {"model": "tacotron2"}), "describes a 'tacotron2' model"),
    (lambda d: write_folder(d, vits_config(use_speaker_embedding=True, speakers_file="/gone/speaker_ids.json")),
     "names speakers_file '/gone/speaker_ids.json', which is neither there nor in the model folder"),
])
def test_bad_folders_say_what_is_wrong(tmp_path, setup, needle):
    folder = tmp_path / "model"
    setup(folder)
    with pytest.raises(ModelFolderError) as caught:
        read_model(folder)
    assert needle in str(caught.value)
    assert any(needle in p for p in problems(model=folder))


def test_a_stale_absolute_path_in_config_finds_the_file_in_the_folder(tmp_path):
    folder = write_folder(tmp_path / "vctk", vits_config(use_speaker_embedding=True,
                                                         speakers_file="/home/someone/.local/tts/speaker_ids.json"))
    (folder / "speaker_ids.json").write_text(json.dumps({"p225": 0, "p226": 1}))
    model = read_model(folder)
    assert model.auxiliary == {"speakers_file": str(folder.resolve() / "speaker_ids.json")}
    assert model.external_files == [] and model.speaker_names() == ["p225", "p226"]
    with coqui._config_for_coqui(model) as config:
        patched = json.loads(config.read_text())
        assert patched["model_args"]["speakers_file"] == model.auxiliary["speakers_file"]
    assert not config.exists()  # a temporary copy; the model folder is never written


# --- voice checks --------------------------------------------------------------------------------


def test_xtts_needs_language_and_reference_or_builtin_speaker(xtts, sample):
    agreed = {"agree_cpml": True}
    assert problems(model=xtts, reference=sample, language="en", settings=agreed) == []
    assert problems(model=xtts, reference=sample, language="en-GB", settings=agreed) == []
    assert problems(model=xtts, reference=sample, language="zh", settings=agreed) == []
    assert "XTTS needs `language:`" in problems(model=xtts, reference=sample, settings=agreed)[0]
    assert problems(model=xtts, reference=sample, language="sv", settings=agreed) == [
        "this XTTS model does not speak 'sv'; it speaks en, es, fr, de, zh-cn, ja"]
    assert "clones a voice: give `reference:`" in problems(model=xtts, language="en", settings=agreed)[0]
    assert "has no built-in speakers" in problems(model=xtts, id="Ana Florence", language="en", settings=agreed)[0]
    assert "not both" in problems(model=xtts, id="x", reference=sample, language="en", settings=agreed)[0]


def test_xtts_builtin_speakers_are_listed(xtts):
    torch = pytest.importorskip("torch")
    torch.save({"Ana Florence": {}, "Claribel Dervla": {}}, xtts / "speakers_xtts.pth")
    assert problems(model=xtts, id="Ana Florence", language="en", settings={"agree_cpml": True}) == []
    assert problems(model=xtts, id="Ana", language="en", settings={"agree_cpml": True}) == [
        "this XTTS model has no speaker 'Ana'; speakers: Ana Florence, Claribel Dervla"]


def test_xtts_licence_is_agreed_in_configuration_never_on_stdin(xtts, sample, monkeypatch):
    monkeypatch.delenv("COQUI_TOS_AGREED", raising=False)
    voice = {"model": xtts, "reference": sample, "language": "en"}
    assert problems(**voice) == [coqui.CPML_HINT]
    assert problems(**voice, settings={"agree_cpml": True}) == []
    monkeypatch.setenv("COQUI_TOS_AGREED", "1")
    assert problems(**voice) == []
    monkeypatch.delenv("COQUI_TOS_AGREED")
    (xtts / "tos_agreed.txt").write_text("I have read, understood and agreed to the Terms and Conditions.")
    assert problems(**voice) == []
    with pytest.raises(RuntimeError, match="never gives.*agree_cpml"), coqui._no_prompts():
        input(" > Do you agree to the terms of the license? [y/n]")


def test_vits_speakers(tmp_path, sample):
    single = write_folder(tmp_path / "single", vits_config())
    assert problems(model=single) == []
    assert problems(model=single, id="p225") == ["this VITS model has a single speaker; remove `id: p225`"]
    assert "clones no `reference`" in problems(model=single, reference=sample)[0]
    multi = write_folder(tmp_path / "multi", vits_config(use_speaker_embedding=True, speakers_file="speaker_ids.json"))
    (multi / "speaker_ids.json").write_text(json.dumps({f"p{n}": n for n in range(225, 245)}))
    assert problems(model=multi, id="p230") == []
    assert problems(model=multi) == [(
        "this VITS model has several speakers: choose one with `id` "
        "(p225, p226, p227, p228, p229, p230, p231, p232, p233, p234, p235, p236, ... (20 in all))")]
    assert "has no speaker 'p999'" in problems(model=multi, id="p999")[0]


def test_multilingual_vits_checks_language(tmp_path):
    folder = write_folder(tmp_path / "yourtts", vits_config(use_language_embedding=True, language_ids_file="language_ids.json"))
    (folder / "language_ids.json").write_text(json.dumps({"en": 0, "fr-fr": 1, "pt-br": 2}))
    assert problems(model=folder, language="fr") == []
    assert "multilingual: set `language` (en, fr-fr, pt-br)" in problems(model=folder)[0]
    assert "does not speak 'de'" in problems(model=folder, language="de")[0]


def test_settings_pitch_and_missing_model(tmp_path):
    folder = write_folder(tmp_path / "vits", vits_config())
    assert problems(model=folder, settings={"noise_scale": 0.5, "seed": 3}) == []
    assert problems(model=folder, settings={"temperature": 0.5}) == [
        "coqui VITS has no setting 'temperature'; settings: agree_cpml, seed, noise_scale, noise_scale_dp"]
    assert problems(model=folder, settings={"seed": 1.5}) == ["coqui setting 'seed' must be int, not 1.5"]
    assert "cannot shift pitch" in problems(model=folder, pitch=2.0)[0]
    assert "needs `model:`" in problems()[0]


def test_language_matching():
    assert match_language("EN-us", ("en", "fr")) == "en"
    assert match_language("zh", ("en", "zh-cn")) == "zh-cn"
    assert match_language("pt_BR", ("pt-br", "en")) == "pt-br"
    assert match_language("sv", ("en",)) is None


def test_screenplay_reports_coqui_problems_at_the_voice(tmp_path, xtts, write_script):
    path = write_script(f"""
        cast:
          ana: {{voice: {{engine: coqui, model: {xtts}, language: xx}}}}
        scenes:
          - lines:
              - ana: Hello.
        """)
    with pytest.raises(InputError) as caught:
        load_screenplay(path)
    assert "this XTTS model does not speak 'xx'" in str(caught.value)


# --- when coqui-tts cannot load ----------------------------------------------------------------


def test_import_failure_is_condensed_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "TTS.api", None)  # makes `import TTS.api` fail here too
    problem = coqui_import_problem.__wrapped__()
    assert problem.startswith("coqui-tts cannot be imported (ModuleNotFoundError: ")
    assert "pip install 'talkstudio[coqui]'" in problem and "torchaudio" in problem


def test_condensed_keeps_the_native_cause_on_one_line():
    try:
        try:
            raise OSError("libc10_cuda.so: cannot open shared object file:\n No such file or directory")
        except OSError as cause:
            raise OSError("Could not load this library: /x/_torchaudio.abi3.so") from cause
    except OSError as error:
        text = condensed(error)
    assert text == ("OSError: Could not load this library: /x/_torchaudio.abi3.so "
                    "(cause: OSError: libc10_cuda.so: cannot open shared object file: No such file or directory)")


def test_unloadable_engine_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(coqui, "coqui_import_problem", lambda: "coqui-tts cannot be imported (X)")
    with pytest.raises(ImportError, match="cannot be imported"):
        engine.version()
    folder = write_folder(tmp_path / "vits", vits_config())
    assert engine.check(Voice(engine="coqui", model=folder)) == ["coqui-tts cannot be imported (X)"]


# --- timings and assembly ------------------------------------------------------------------------


def test_word_timings_are_spread_by_character_count():
    words = estimate_words("“Hi,” said Barbara — twice!", 1.0, 3.0)
    assert [w.text for w in words] == ["Hi", "said", "Barbara", "twice"]
    assert words[0].start == 1.0 and words[-1].end == pytest.approx(3.0)
    assert [round(w.end - w.start, 3) for w in words] == [0.222, 0.444, 0.778, 0.556]
    assert estimate_words("...", 0.0, 1.0) == []


def test_assembly_trims_silence_joins_sentences_and_times_their_words():
    rate = 1000
    tone = lambda n: np.where(np.arange(n) % 2, 0.5, -0.5)
    first = np.concatenate([np.zeros(200), tone(400), np.zeros(300)]).astype(np.float32)
    second = np.concatenate([np.zeros(50), tone(300), np.zeros(500)]).astype(np.float32)
    speech = assemble([("Hello there.", first), ("", np.zeros(100, np.float32)), ("Bye now!", second)], rate)
    margin, gap = int(coqui.EDGE_MARGIN_S * rate), int(coqui.SENTENCE_GAP_S * rate)
    assert speech.rate == rate and speech.samples.dtype == np.float32
    assert len(speech.samples) == (400 + 2 * margin) + gap + (300 + 2 * margin)
    assert [w.text for w in speech.words] == ["Hello", "there", "Bye", "now"]
    assert speech.words[0].start == pytest.approx(margin / rate)
    assert speech.words[1].end == pytest.approx((margin + 400) / rate)
    assert speech.words[2].start == pytest.approx((400 + 3 * margin + gap) / rate)
    assert speech.words[-1].end <= speech.duration and speech.phonemes == []


def test_cache_identity_follows_what_changes_the_audio(xtts, sample):
    base = {"engine": "coqui", "model": xtts, "reference": sample, "language": "en", "settings": {"agree_cpml": True}}
    identity = engine.cache_identity(Voice(**base))
    assert identity["kind"] == "xtts" and identity["language"] == "en" and identity["settings"] == {}
    assert engine.cache_identity(Voice(**base | {"language": "en-us"})) == identity  # the same model language
    for change in ({"language": "fr"}, {"rate": 1.2}, {"id": "Ana Florence", "reference": None},
                   {"settings": {"agree_cpml": True, "seed": 1}}, {"settings": {"temperature": 0.5}}):
        assert engine.cache_identity(Voice(**base | change)) != identity, change
    assert engine.sample_rate(Voice(**base)) == 24000


# --- the real coqui-tts --------------------------------------------------------------------------

needs_coqui = pytest.mark.skipif(coqui_import_problem() is not None, reason=str(coqui_import_problem()))

TINY_VITS = textwrap.dedent("""
    import json, sys, torch
    from pathlib import Path
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    out, speakers = Path(sys.argv[1]), sys.argv[2:]
    out.mkdir(parents=True)
    args = VitsArgs(hidden_channels=16, hidden_channels_ffn_text_encoder=32, num_heads_text_encoder=2,
                    num_layers_text_encoder=1, upsample_initial_channel_decoder=32, num_layers_flow=1,
                    num_layers_posterior_encoder=1, resblock_kernel_sizes_decoder=[3],
                    resblock_dilation_sizes_decoder=[[1, 3, 5]], use_speaker_embedding=bool(speakers),
                    speaker_embedding_channels=8, init_discriminator=False)
    config = VitsConfig(use_phonemes=False, model_args=args, text_cleaner="basic_cleaners")
    if speakers:
        (out / "speaker_ids.json").write_text(json.dumps({s: i for i, s in enumerate(speakers)}))
        config.speakers_file = config.model_args.speakers_file = str(out / "speaker_ids.json")
    torch.manual_seed(0)
    torch.save({"model": Vits.init_from_config(config).state_dict()}, out / "model.pth")
    if speakers:  # as if downloaded on another machine and copied here
        config.speakers_file = config.model_args.speakers_file = "/elsewhere/tts/speaker_ids.json"
    config.save_json(str(out / "config.json"))
""")


@pytest.fixture(scope="module")
def tiny_vits(tmp_path_factory):
    """Random-weight VITS folders, single- and multi-speaker, made by coqui itself."""
    root = tmp_path_factory.mktemp("vits")
    for name, speakers in (("single", []), ("multi", ["ann", "bob"])):
        subprocess.run([sys.executable, "-c", TINY_VITS, str(root / name), *speakers], check=True,
                       capture_output=True, timeout=300)
    return root


@needs_coqui
def test_real_vits_speaks_through_the_engine(tiny_vits):
    voice = Voice(engine="coqui", model=tiny_vits / "single")
    assert engine.check(voice) == [] and engine.version().startswith("coqui-tts 0.2")
    speech = engine.synthesize("Hello there. How are you today?", voice)
    assert speech.rate == 22050 and speech.samples.dtype == np.float32 and speech.samples.ndim == 1
    assert 0.2 < speech.duration < 10 and np.abs(speech.samples).max() <= 1.0
    assert [w.text for w in speech.words] == ["Hello", "there", "How", "are", "you", "today"]
    for a, b in zip(speech.words, speech.words[1:]):
        assert a.start <= a.end <= b.start + 1e-9
    assert speech.words[-1].end <= speech.duration + 1e-9
    again = engine.synthesize("Hello there. How are you today?", voice)
    assert np.array_equal(speech.samples, again.samples)  # seeded: VITS draws noise


@needs_coqui
def test_real_vits_rate_sets_the_model_speed(tiny_vits):
    text = "The quick brown fox jumps over the lazy dog."
    normal = engine.synthesize(text, Voice(engine="coqui", model=tiny_vits / "single"))
    fast = engine.synthesize(text, Voice(engine="coqui", model=tiny_vits / "single", rate=2.0))
    assert fast.duration < 0.75 * normal.duration


@needs_coqui
def test_real_multispeaker_vits_with_a_copied_config(tiny_vits):
    folder = tiny_vits / "multi"
    assert "choose one with `id` (ann, bob)" in engine.check(Voice(engine="coqui", model=folder))[0]
    ann = engine.synthesize("Good morning.", Voice(engine="coqui", model=folder, id="ann"))
    bob = engine.synthesize("Good morning.", Voice(engine="coqui", model=folder, id="bob"))
    assert ann.duration > 0.1 and bob.duration > 0.1
    assert len(ann.samples) != len(bob.samples) or not np.array_equal(ann.samples, bob.samples)


def test_voices_lists_a_model_folders_speakers_through_the_cli(tmp_path):
    from conftest import run_cli

    multi = write_folder(tmp_path / "multi", vits_config(use_speaker_embedding=True, speakers_file="speaker_ids.json"))
    (multi / "speaker_ids.json").write_text(json.dumps({"p225": 0, "p226": 1}))
    result = run_cli("voices", "--engine", "coqui", "--model", multi, "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)["coqui"]["voices"]
    assert [v["id"] for v in listed if v["kind"] == "speaker"] == ["p225", "p226"]
    assert run_cli("voices", "--engine", "coqui", "--model", tmp_path).returncode == 2  # no config.json there
