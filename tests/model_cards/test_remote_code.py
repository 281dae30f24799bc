"""
A published AudioFormer folder works for a user who has only torch and transformers.

How "a clean environment without the project" is simulated: a fresh virtualenv with torch would take minutes and
network access, so the user's Python is a subprocess of this interpreter whose first statement installs a
`sys.meta_path` finder that refuses to import the project (`audioformer`, and its folders' own names; the script
checks that the refusal works), run from a temporary working directory with no PYTHONPATH. Everything it needs must
then come from the Hub cache: `HF_HOME` points to a temporary cache holding the published folder under
`org/audioformer-tiny` and a tiny seeded EnCodec under the id `facebook/encodec_24khz` (written in the cache layout
`models--org--name/snapshots/<commit>/...` + `refs/main`), with `HF_HUB_OFFLINE=1`. Remote code is imported by
transformers as `transformers_modules.*`, which the blocker lets through.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.dynamic_module_utils import get_imports, get_relative_imports

from audioformer.training.tiny_codec import TINY_MODEL


REPO_ID = "org/audioformer-tiny"
MLM_REPO_ID = "org/audioformer-mlm-tiny"
CODEC_ID = "facebook/encodec_24khz"
LABELS = ["dog", "rain", "siren"]
RATES = [8000, 16000, 44100, 48000]
LONG_SECONDS = 5.0  # the published feature extractor's max_duration is 2 s: windows of 2 s every 1 s


def populate_hub_cache(hub_cache: Path, repo_id: str, folder: Path) -> Path:
    """Copies `folder` into the Hub cache as the `main` revision of model `repo_id`; returns the snapshot dir."""
    repo_dir = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def build_published_folder(
    path: Path, codec_dir: str, problem_type: str = "single_label_classification", max_duration: float = 2.0
) -> Path:
    """A tiny classifier + a feature extractor naming the codec by its Hub id, saved and carded like a run's output."""
    import audioformer.modeling_audioformer  # noqa: F401
    from audioformer.model_cards.card import write_model_card
    from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification
    from audioformer.tokenization import AudioFormerFeatureExtractor

    config = AudioFormerConfig(
        **TINY_MODEL,
        num_labels=len(LABELS),
        problem_type=problem_type,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    AudioFormerForAudioClassification(config).save_pretrained(path)
    AudioFormerFeatureExtractor(codec_name_or_path=CODEC_ID, max_duration=max_duration).save_pretrained(path)
    # the card's widget example needs the codec: point it at the local copy only while writing the card
    fe_cfg = path / "preprocessor_config.json"
    saved = fe_cfg.read_text()
    fe_cfg.write_text(saved.replace(CODEC_ID, codec_dir))
    write_model_card(str(path), task="audio-classification", metrics={"eval_accuracy": 0.5})
    fe_cfg.write_text(saved)
    return path


def build_pretraining_folder(path: Path) -> Path:
    """A tiny MLM checkpoint with its feature extractor and card, as `run_mlm.py` writes it."""
    import audioformer.modeling_audioformer  # noqa: F401
    from audioformer.model_cards.card import write_model_card
    from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForMaskedLM
    from audioformer.tokenization import AudioFormerFeatureExtractor

    config = AudioFormerConfig(**TINY_MODEL)
    torch.manual_seed(1)
    AudioFormerForMaskedLM(config).save_pretrained(path)
    AudioFormerFeatureExtractor(codec_name_or_path=CODEC_ID, max_duration=2.0).save_pretrained(path)
    write_model_card(str(path), task="fill-mask", metrics={"eval_loss": 6.9})
    return path


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory, tiny_codec_dir):
    """HF_HOME with the published folders and the tiny codec in its Hub cache; returns (hf_home, folder)."""
    root = tmp_path_factory.mktemp("remote")
    folder = build_published_folder(root / "published", tiny_codec_dir)
    hf_home = root / "hf_home"
    populate_hub_cache(hf_home / "hub", REPO_ID, folder)
    populate_hub_cache(hf_home / "hub", MLM_REPO_ID, build_pretraining_folder(root / "published_mlm"))
    codec_only = root / "codec_only"
    codec_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(tiny_codec_dir) / name, codec_only / name)
    populate_hub_cache(hf_home / "hub", CODEC_ID, codec_only)
    return hf_home, folder


USER_SCRIPT = textwrap.dedent("""
    import importlib.abc, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("audioformer", "modeling_audioformer", "tokenization"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: the user has no AudioFormer project)")
            return None

    sys.meta_path.insert(0, Blocker())
    for name in ("audioformer", "modeling_audioformer", "tokenization"):
        try:
            __import__(name)
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit(f"blocker failed: {name} importable")

    import json
    import numpy as np
    import torch
    from transformers import (AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification,
                              pipeline)

    repo, mlm_repo = sys.argv[1], sys.argv[3]
    wav = np.load(sys.argv[2])
    rates = json.loads(sys.argv[4])
    config = AutoConfig.from_pretrained(repo, trust_remote_code=True)
    encoder = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
    model = AutoModelForAudioClassification.from_pretrained(repo, trust_remote_code=True).eval()
    fe = AutoFeatureExtractor.from_pretrained(repo, trust_remote_code=True)
    inputs = fe(wav, sampling_rate=24000)
    with torch.no_grad():
        logits = model(**inputs).logits
        hidden = encoder(**inputs).last_hidden_state
    classifier = pipeline("audio-classification", model=repo, trust_remote_code=True)
    result = classifier(wav, top_k=2)
    # the folder's own pipeline (custom_pipelines): any sampling rate without torchaudio, files, long audio
    at_rates = {sr: classifier({"raw": np.load(f"wav_{sr}.npy"), "sampling_rate": sr}, top_k=3) for sr in rates}
    from_file = classifier("clip.wav", top_k=3)
    long_mean = classifier({"raw": np.load("long.npy"), "sampling_rate": 16000}, long_audio="mean", top_k=3)
    fill_mask = pipeline("fill-mask", model=mlm_repo, trust_remote_code=True)
    features = pipeline("feature-extraction", model=mlm_repo, trust_remote_code=True)
    print("RESULT=" + json.dumps({
        "classes": [
            type(o).__module__ + "." + type(o).__name__
            for o in (config, encoder, model, fe, classifier.model, classifier, fill_mask.tokenizer, features.model)
        ],
        "codec_hidden": fe.codec.config.hidden_size,
        "input_ids": inputs["input_ids"].tolist(),
        "logits": logits.tolist(), "hidden_shape": list(hidden.shape), "pipeline": result,
        "at_rates": at_rates, "from_file": from_file, "long_mean": long_mean,
        "fill_mask": fill_mask("<c5> <MASK> <c7> <c9>", top_k=3),
        "features": features("<c5> <c6> <c7>"),
    }))
""")


def synthetic(seconds: float, sr: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * sr)) * 0.3).astype(np.float32)


@pytest.mark.slow
def test_published_folder_loads_without_the_project(hub_home, tmp_path, tiny_codec_dir):
    import soundfile as sf

    hf_home, folder = hub_home
    wav = synthetic(1.0, 24000, 0)
    np.save(tmp_path / "wav.npy", wav)
    for sr in RATES:
        np.save(tmp_path / f"wav_{sr}.npy", synthetic(1.5, sr, sr))
    sf.write(tmp_path / "clip.wav", synthetic(1.0, 16000, 1), 16000, subtype="FLOAT")
    np.save(tmp_path / "long.npy", synthetic(LONG_SECONDS, 16000, 2))
    (tmp_path / "user.py").write_text(USER_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONNOUSERSITE="1")
    # the reference below runs on the suite's one thread; float32 codes can differ at near-ties between thread counts
    env.update(OMP_NUM_THREADS="1")
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "user.py"),
            REPO_ID,
            str(tmp_path / "wav.npy"),
            MLM_REPO_ID,
            json.dumps(RATES),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT="))
    out = json.loads(line[len("RESULT=") :])

    # every class came from the Hub cache's remote code, none from the project
    assert all(c.startswith("transformers_modules.") for c in out["classes"]), out["classes"]
    assert out["classes"][1].endswith("AudioFormerModel")
    assert out["classes"][2].endswith("AudioFormerForAudioClassification")
    assert out["classes"][3].endswith("AudioFormerFeatureExtractor")
    # the codec was fetched by its Hub id: it is the tiny one from the cache
    assert out["codec_hidden"] == json.loads((Path(tiny_codec_dir) / "config.json").read_text())["hidden_size"]

    # independent reference: the project's own classes on the local folder give the same codes and logits
    from audioformer.modeling_audioformer import AudioFormerForAudioClassification
    from audioformer.tokenization import AudioFormerFeatureExtractor

    fe = AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=2.0)
    inputs = fe(wav, sampling_rate=24000)
    model = AudioFormerForAudioClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(**inputs).logits
    assert torch.equal(torch.tensor(out["input_ids"]), inputs["input_ids"])
    torch.testing.assert_close(torch.tensor(out["logits"]), logits, atol=1e-5, rtol=1e-5)
    assert out["hidden_shape"] == [1, inputs["input_ids"].shape[-1], 32]

    probs = logits[0].softmax(-1)
    top = probs.topk(2)
    assert [r["label"] for r in out["pipeline"]] == [LABELS[i] for i in top.indices]
    np.testing.assert_allclose([r["score"] for r in out["pipeline"]], top.values.numpy(), atol=1e-5)

    # the stock call at any rate, on a file and on long audio ran the folder's pipeline class, and scored like the
    # project's feature extractor (its own resampler) and model
    assert out["classes"][5].startswith("transformers_modules.") and out["classes"][5].endswith(
        "long_audio.AudioFormerAudioClassificationPipeline"
    )

    def expect(result, probabilities):
        top = probabilities.topk(3)
        assert [r["label"] for r in result] == [LABELS[i] for i in top.indices]
        np.testing.assert_allclose([r["score"] for r in result], top.values.numpy(), atol=1e-5)

    with torch.no_grad():
        for sr in RATES:
            wav_sr = np.load(tmp_path / f"wav_{sr}.npy")
            expect(out["at_rates"][str(sr)], model(**fe(wav_sr, sampling_rate=sr)).logits[0].softmax(-1))
        from transformers.pipelines.audio_utils import ffmpeg_read

        decoded = ffmpeg_read((tmp_path / "clip.wav").read_bytes(), fe.sampling_rate)
        expect(out["from_file"], model(**fe(decoded, sampling_rate=fe.sampling_rate)).logits[0].softmax(-1))
    from audioformer.modeling_audioformer.long_audio import classify_long_audio

    long_audio = np.load(tmp_path / "long.npy")
    expect(out["long_mean"], classify_long_audio(model, fe, long_audio, 16000, long_audio="mean"))

    # fill-mask and feature-extraction: the tokenizer came from the folder's remote code too
    assert out["classes"][6].startswith("transformers_modules.") and out["classes"][6].endswith("AudioFormerTokenizer")
    assert out["classes"][7].endswith("AudioFormerModel")
    from audioformer.modeling_audioformer import AudioFormerForMaskedLM
    from audioformer.tokenization import AudioFormerTokenizer

    (mlm_folder,) = (hf_home / "hub" / "models--org--audioformer-mlm-tiny" / "snapshots").iterdir()
    mlm = AudioFormerForMaskedLM.from_pretrained(mlm_folder).eval()
    tokenizer = AudioFormerTokenizer()
    ids = torch.tensor([tokenizer("<c5> <MASK> <c7> <c9>")["input_ids"]])  # <BOA> ... <EOA>
    with torch.no_grad():
        mask_probs = mlm(ids).logits[0, 2].softmax(-1)
        hidden = mlm.roformer(torch.tensor([tokenizer("<c5> <c6> <c7>")["input_ids"]])).last_hidden_state
    top = mask_probs.topk(3)
    assert [r["token"] for r in out["fill_mask"]] == top.indices.tolist()
    assert [r["token_str"] for r in out["fill_mask"]] == tokenizer.convert_ids_to_tokens(top.indices.tolist())
    np.testing.assert_allclose([r["score"] for r in out["fill_mask"]], top.values.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.array(out["features"]), hidden.numpy(), atol=1e-5)


def test_installed_project_needs_no_trust_remote_code(hub_home, monkeypatch, tiny_codec_dir):
    """With the project imported, the Auto classes and the pipeline resolve to the project's classes. The folder
    declares its pipeline (`custom_pipelines`), which transformers would only run with trust_remote_code=True: the
    installed configuration class does not report it, so the stock call still works without that flag."""
    hf_home, folder = hub_home
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import (
        AudioClassificationPipeline,
        AutoConfig,
        AutoFeatureExtractor,
        AutoModel,
        AutoModelForAudioClassification,
        AutoTokenizer,
        pipeline,
    )

    from audioformer import modeling_audioformer, tokenization
    from audioformer.modeling_audioformer.long_audio import CUSTOM_PIPELINES, AudioFormerAudioClassificationPipeline

    assert json.loads((folder / "config.json").read_text())["custom_pipelines"] == CUSTOM_PIPELINES
    config = AutoConfig.from_pretrained(folder)
    assert type(config) is modeling_audioformer.AudioFormerConfig and config.custom_pipelines == {}
    assert type(AutoModel.from_pretrained(folder)) is modeling_audioformer.AudioFormerModel
    model = AutoModelForAudioClassification.from_pretrained(folder)
    assert type(model) is modeling_audioformer.AudioFormerForAudioClassification
    assert type(AutoFeatureExtractor.from_pretrained(folder)) is tokenization.AudioFormerFeatureExtractor
    assert type(AutoTokenizer.from_pretrained(folder)) is tokenization.AudioFormerTokenizer
    classifier = pipeline("audio-classification", model=str(folder))
    assert type(classifier) is AudioClassificationPipeline
    assert type(classifier.model) is modeling_audioformer.AudioFormerForAudioClassification

    # the project's pipeline by name: any sampling rate
    fe = tokenization.AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=2.0)
    ours = pipeline(
        "audio-classification",
        model=str(folder),
        feature_extractor=fe,
        pipeline_class=AudioFormerAudioClassificationPipeline,
    )
    audio = np.random.default_rng(3).standard_normal(16000).astype(np.float32)
    scores = ours({"raw": audio, "sampling_rate": 16000}, top_k=3)
    with torch.no_grad():
        expected = model.eval()(**fe(audio, sampling_rate=16000)).logits[0].softmax(-1).topk(3)
    np.testing.assert_allclose([r["score"] for r in scores], expected.values.numpy(), atol=1e-5)
    # transformers prefers explicitly registered local classes to remote code, even with trust_remote_code=True
    trusting = pipeline("audio-classification", model=str(folder), feature_extractor=fe, trust_remote_code=True)
    assert type(trusting) is AudioClassificationPipeline and type(trusting.model) is type(model)


def test_published_folder_is_self_contained(hub_home):
    """The remote-code files import only torch / numpy / transformers / each other, and the weights are safetensors."""
    _, folder = hub_home
    config = json.loads((folder / "config.json").read_text())
    for auto_class in (
        "AutoConfig",
        "AutoModel",
        "AutoModelForMaskedLM",
        "AutoModelForAudioClassification",
        "AutoFeatureExtractor",
    ):
        module = config["auto_map"][auto_class].split(".")[0]
        assert (folder / f"{module}.py").is_file(), auto_class
    # What transformers checks before running remote code (imports guarded by try/except are optional), beyond the
    # standard library: torch, numpy, transformers and what transformers itself depends on.
    allowed = {"torch", "numpy", "transformers", "huggingface_hub"}
    for code in folder.glob("*.py"):
        third_party = set(get_imports(code)) - set(sys.stdlib_module_names)
        assert third_party <= allowed, f"{code.name} imports {sorted(third_party - allowed)}"
        for module in get_relative_imports(code):
            assert (folder / f"{module}.py").is_file(), f"{code.name} imports .{module}, which is not published"
    assert (folder / "model.safetensors").is_file()
    assert not [p for p in folder.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
