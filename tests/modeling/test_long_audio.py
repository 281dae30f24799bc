"""The audio-classification pipeline as users call it and the Inference Endpoints handler."""

import importlib.util
import shutil

import numpy as np
import pytest
import torch
from transformers import pipeline

import audioformer.modeling_audioformer  # noqa: F401  registers the Auto classes
import audioformer.tokenization  # noqa: F401
from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification
from audioformer.modeling_audioformer.long_audio import (
    AudioFormerAudioClassificationPipeline,
    classify_long_audio,
    score_description,
    scores_from_logits,
    sliding_windows,
)
from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.training.tiny_codec import TINY_MODEL


LABELS = ["dog", "rain", "siren", "speech"]


THRESHOLDS = [2.0, -1.5, 0.25, 4.0]  # logit units, one per label


def make_folder(path, codec_dir, problem_type, decision_thresholds=None):
    config = AudioFormerConfig(
        **TINY_MODEL,
        num_labels=len(LABELS),
        problem_type=problem_type,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    torch.manual_seed(1)
    model = AudioFormerForAudioClassification(config)
    with torch.no_grad():  # larger logits, so softmax and sigmoid scores clearly differ
        model.classifier.weight.mul_(20)
    if decision_thresholds is not None:  # calibrated as run_classification.py does it
        model.fold_decision_thresholds(decision_thresholds)
    model.save_pretrained(path)
    AudioFormerFeatureExtractor(codec_name_or_path=codec_dir, max_duration=1.0).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_codec_dir):
    root = tmp_path_factory.mktemp("pipe")
    return {
        "single": make_folder(root / "single", tiny_codec_dir, "single_label_classification"),
        "multi": make_folder(root / "multi", tiny_codec_dir, "multi_label_classification"),
        "calibrated": make_folder(root / "calibrated", tiny_codec_dir, "multi_label_classification", THRESHOLDS),
    }


@pytest.fixture(scope="module")
def reference(folders):
    """Project model + feature extractor: the independent path the pipeline must agree with."""

    def logits_of(kind, clips, sampling_rate):
        fe = AudioFormerFeatureExtractor.from_pretrained(folders[kind])
        model = AudioFormerForAudioClassification.from_pretrained(folders[kind]).eval()
        with torch.no_grad():
            return model(**fe(clips, sampling_rate=sampling_rate)).logits

    return logits_of


def wav_at(sampling_rate, seconds, seed=0):
    t = np.arange(int(sampling_rate * seconds)) / sampling_rate
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 330 * t * (1 + t)) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


def as_dict(result):
    return {r["label"]: r["score"] for r in result}


def test_single_label_scores_with_softmax_and_top_k(folders, reference):
    wav = wav_at(24000, 0.8)
    classifier = pipeline("audio-classification", model=folders["single"])
    probs = reference("single", wav, 24000)[0].softmax(-1)
    full = classifier(wav, top_k=None)
    assert len(full) == len(LABELS)
    np.testing.assert_allclose([as_dict(full)[label] for label in LABELS], probs.numpy(), atol=1e-5)
    assert sum(r["score"] for r in full) == pytest.approx(1.0, abs=1e-5)
    top2 = classifier(wav, top_k=2)
    assert [r["label"] for r in top2] == [LABELS[i] for i in probs.topk(2).indices]


def test_multi_label_scores_with_sigmoid_by_default(folders, reference):
    wav = wav_at(24000, 0.8)
    classifier = pipeline("audio-classification", model=folders["multi"])
    sig = reference("multi", wav, 24000)[0].sigmoid()
    result = as_dict(classifier(wav, top_k=None))
    np.testing.assert_allclose([result[label] for label in LABELS], sig.numpy(), atol=1e-5)
    assert abs(sum(result.values()) - 1.0) > 1e-3  # independent scores, not a distribution
    forced = as_dict(classifier(wav, top_k=None, function_to_apply="softmax"))
    assert sum(forced.values()) == pytest.approx(1.0, abs=1e-5)


def test_raw_dict_at_any_sampling_rate(folders, reference):
    """The stock pipeline needs torchaudio to resample a dict input; AudioFormer's pipeline resamples itself."""
    wav = wav_at(16000, 0.8)
    expected = reference("single", wav, 16000)[0].softmax(-1)
    classifier = pipeline(
        "audio-classification", model=folders["single"], pipeline_class=AudioFormerAudioClassificationPipeline
    )
    result = as_dict(classifier({"raw": wav, "sampling_rate": 16000}, top_k=None))
    np.testing.assert_allclose([result[label] for label in LABELS], expected.numpy(), atol=1e-5)
    result = as_dict(classifier({"array": wav, "sampling_rate": 16000}, top_k=None))  # the `datasets` key
    np.testing.assert_allclose([result[label] for label in LABELS], expected.numpy(), atol=1e-5)
    if importlib.util.find_spec("torchaudio") is None:
        with pytest.raises(ImportError, match="torchaudio"):
            pipeline("audio-classification", model=folders["single"])({"raw": wav, "sampling_rate": 16000})


def test_sliding_windows_cover_everything():
    assert sliding_windows(100, 200, 50) == [(0, 100)]
    assert sliding_windows(200, 200, 50) == [(0, 200)]
    windows = sliding_windows(450, 200, 100)
    assert windows == [(0, 200), (100, 300), (200, 400), (250, 450)]
    covered = np.zeros(450, bool)
    for s, e in windows:
        covered[s:e] = True
    assert covered.all()
    with pytest.raises(ValueError, match="positive"):
        sliding_windows(10, 0, 1)


@pytest.mark.parametrize("how", ["mean", "max"])
def test_long_audio_windows_are_aggregated(folders, reference, how):
    """2.5 s of audio, max_duration 1 s, hop 0.5 s: windows start at 0, 0.5, 1, 1.5 s; sigmoid scores per window."""
    sr = 16000
    wav = wav_at(sr, 2.5, seed=3)
    clips = [wav[s * sr // 2 : s * sr // 2 + sr] for s in range(4)]
    per_window = reference("multi", clips, sr).sigmoid()
    expected = per_window.mean(0) if how == "mean" else per_window.max(0).values
    classifier = pipeline(
        "audio-classification", model=folders["multi"], pipeline_class=AudioFormerAudioClassificationPipeline
    )
    result = as_dict(classifier({"raw": wav, "sampling_rate": sr}, long_audio=how, hop_duration=0.5, top_k=None))
    np.testing.assert_allclose([result[label] for label in LABELS], expected.numpy(), atol=1e-5)

    # default: the paper's truncation to the first max_duration seconds
    truncated = as_dict(classifier({"raw": wav, "sampling_rate": sr}, top_k=None))
    np.testing.assert_allclose([truncated[label] for label in LABELS], per_window[0].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="long_audio"):
        classifier({"raw": wav, "sampling_rate": sr}, long_audio="median")


def test_classify_long_audio_function(folders, reference):
    sr = 24000
    wav = wav_at(sr, 1.5, seed=4)
    fe = AudioFormerFeatureExtractor.from_pretrained(folders["single"])
    model = AudioFormerForAudioClassification.from_pretrained(folders["single"]).eval()
    scores = classify_long_audio(model, fe, wav, sr, long_audio="max", hop_duration=1.0)  # windows 0-1 s, 0.5-1.5 s
    per_window = reference("single", [wav[:sr], wav[sr // 2 :]], sr).softmax(-1)
    torch.testing.assert_close(scores, per_window.max(0).values, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="file paths are decoded by the ffmpeg binary (not installed)"
)
def test_file_path(folders, reference, tmp_path):
    import soundfile as sf

    wav = wav_at(24000, 0.8)
    sf.write(tmp_path / "clip.wav", wav, 24000, subtype="FLOAT")
    result = as_dict(pipeline("audio-classification", model=folders["single"])(str(tmp_path / "clip.wav"), top_k=None))
    expected = reference("single", wav, 24000)[0].softmax(-1)
    np.testing.assert_allclose([result[label] for label in LABELS], expected.numpy(), atol=1e-4)


def test_endpoint_handler(folders, reference, tmp_path):
    """model_cards/handler.py, as Inference Endpoints call it, on a folder carded by write_model_card."""
    from audioformer.model_cards.card import write_model_card

    folder = tmp_path / "served"
    shutil.copytree(folders["multi"], folder)
    write_model_card(str(folder), task="audio-classification")
    spec = importlib.util.spec_from_file_location("endpoint_handler", folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = module.EndpointHandler(str(folder))
    wav = wav_at(16000, 1.0)
    out = handler({"inputs": wav.tolist(), "parameters": {"sampling_rate": 16000, "top_k": 3}})
    expected = reference("multi", wav, 16000)[0].sigmoid()
    assert len(out) == 3
    top = expected.topk(3)
    assert [r["label"] for r in out] == [LABELS[i] for i in top.indices]
    np.testing.assert_allclose([r["score"] for r in out], top.values.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="sampling_rate"):
        handler({"inputs": wav.tolist()})
    assert handler.score_description == score_description(AudioFormerConfig.from_pretrained(folder))


def test_calibrated_scores_are_sigmoid_of_logit_minus_threshold(folders, reference, tmp_path):
    """A calibrated checkpoint (thresholds folded into the classifier) scores sigmoid(logit - threshold) on every
    path, transformers' stock pipeline included: 0.5 = at the threshold. The expected scores come from the same
    model before calibration (the "multi" folder) and the thresholds, not from the library's scoring."""
    from audioformer.model_cards.card import write_model_card

    sr = 24000  # the codec's rate: transformers' stock pipeline takes a plain array at that rate
    wav = wav_at(sr, 1.0, seed=6)
    raw = reference("multi", wav, sr)[0].double()
    expected = (1.0 / (1.0 + torch.exp(-(raw - torch.tensor(THRESHOLDS, dtype=torch.float64))))).float()
    assert not torch.allclose(expected, raw.sigmoid().float(), atol=1e-3)  # the thresholds really change them
    config = AudioFormerConfig.from_pretrained(folders["calibrated"])
    assert config.decision_thresholds == THRESHOLDS  # recorded

    project = pipeline(
        "audio-classification", model=folders["calibrated"], pipeline_class=AudioFormerAudioClassificationPipeline
    )
    result = as_dict(project({"raw": wav, "sampling_rate": sr}, top_k=None))
    np.testing.assert_allclose([result[label] for label in LABELS], expected.numpy(), atol=1e-5)
    stock = pipeline("audio-classification", model=folders["calibrated"])  # transformers' own class
    assert type(stock).__name__ == "AudioClassificationPipeline"
    result = as_dict(stock(wav, top_k=len(LABELS)))
    np.testing.assert_allclose([result[label] for label in LABELS], expected.numpy(), atol=1e-5)

    fe = AudioFormerFeatureExtractor.from_pretrained(folders["calibrated"])
    model = AudioFormerForAudioClassification.from_pretrained(folders["calibrated"]).eval()
    torch.testing.assert_close(
        classify_long_audio(model, fe, wav, sr, long_audio="truncate"), expected, atol=1e-5, rtol=0
    )

    folder = tmp_path / "served"
    shutil.copytree(folders["calibrated"], folder)
    write_model_card(str(folder), task="audio-classification")
    spec = importlib.util.spec_from_file_location("calibrated_handler", folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.EndpointHandler(str(folder))(
        {"inputs": wav.tolist(), "parameters": {"sampling_rate": sr, "top_k": 4}}
    )
    np.testing.assert_allclose([r["score"] for r in out], [expected[LABELS.index(r["label"])] for r in out], atol=1e-5)
    with pytest.raises(ValueError, match="3 decision thresholds for a classifier of 4 labels"):
        model.fold_decision_thresholds([0.0, 1.0, 2.0])


def test_scores_from_logits():
    logits = torch.tensor([[0.0, 1.0, -1.0]])
    torch.testing.assert_close(scores_from_logits(logits, "sigmoid"), torch.tensor([[0.5, 0.7310586, 0.2689414]]))
    torch.testing.assert_close(scores_from_logits(logits, "softmax").sum(-1), torch.ones(1))
    with pytest.raises(ValueError, match="function_to_apply"):
        scores_from_logits(logits, "relu")


def test_score_description_says_what_the_scores_mean():
    single = AudioFormerConfig(num_labels=3, problem_type="single_label_classification")
    assert "softmax" in score_description(single) and "sum to 1" in score_description(single)
    calibrated = AudioFormerConfig(
        num_labels=2, problem_type="multi_label_classification", decision_thresholds=[0.1, 0.2]
    )
    assert "folded into the classifier" in score_description(calibrated) and "0.5" in score_description(calibrated)
    lsep = AudioFormerConfig(num_labels=2, problem_type="multi_label_classification", multi_label_loss="lsep")
    assert "LSEP" in score_description(lsep) and "no calibrated decision thresholds" in score_description(lsep)
    bce = AudioFormerConfig(num_labels=2, problem_type="multi_label_classification", multi_label_loss="bce")
    assert "probability" in score_description(bce)
    # the model card reads config.json as a dict
    assert score_description(calibrated.to_dict()) == score_description(calibrated)


def test_many_windows_run_a_few_at_a_time(folders):
    """A long recording has hundreds of windows: codec and model must not see them all in one batch."""
    from audioformer.modeling_audioformer.long_audio import WINDOW_BATCH_SIZE

    sr = 16000
    wav = wav_at(sr, 2.5, seed=5)
    classifier = pipeline(
        "audio-classification", model=folders["multi"], pipeline_class=AudioFormerAudioClassificationPipeline
    )
    batches = []
    hook = classifier.model.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        result = as_dict(classifier({"raw": wav, "sampling_rate": sr}, long_audio="max", hop_duration=0.1, top_k=None))
    finally:
        hook.remove()
    assert sum(batches) == len(sliding_windows(wav.size, sr, sr // 10)) > WINDOW_BATCH_SIZE
    assert max(batches) <= WINDOW_BATCH_SIZE
    fe = AudioFormerFeatureExtractor.from_pretrained(folders["multi"])
    expected = classify_long_audio(classifier.model, fe, wav, sr, long_audio="max", hop_duration=0.1)
    np.testing.assert_allclose([result[label] for label in LABELS], expected.numpy(), atol=1e-5)
    # The pipeline's own batching would mix the windows of several recordings: refused, not garbled.
    with pytest.raises(ValueError, match="batch_size=1"):
        classifier([{"raw": wav, "sampling_rate": sr}] * 2, long_audio="max", batch_size=2)
