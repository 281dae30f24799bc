"""The installed project cannot be shadowed by a user's own modules, nor shadow them: everything installs under
`audioformer` (the repository's `training/`, `tokenization/`, `model_cards/` folders included), so a working
directory holding its own `training.py` and `tokenization.py` (common names in ML projects) changes nothing."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification
from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.training.tiny_codec import TINY_MODEL


USER_MODULE = "raise ImportError(\"this is the user's own {name}.py, not AudioFormer's\")\n"

USER_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import audioformer  # registers the Auto classes
    from transformers import pipeline

    classifier = pipeline("audio-classification", model=sys.argv[1])
    result = classifier(np.load(sys.argv[2]), top_k=2)
    try:  # the user's own modules are theirs
        import training
    except ImportError as err:
        mine = str(err)
    print("RESULT=" + json.dumps({"labels": [r["label"] for r in result], "mine": mine}))
""")


@pytest.fixture
def user_dir(tmp_path):
    """A working directory with the user's own training.py, tokenization.py and model_cards.py."""
    folder = tmp_path / "user_project"
    folder.mkdir()
    for name in ("training", "tokenization", "model_cards"):
        (folder / f"{name}.py").write_text(USER_MODULE.format(name=name))
    return folder


def run_in(folder, *command):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_pipeline_runs_beside_a_users_training_and_tokenization_modules(user_dir, tmp_path, tiny_codec_dir):
    labels = ["chirp", "clicks", "noise"]
    config = AudioFormerConfig(**TINY_MODEL, num_labels=3, id2label=dict(enumerate(labels)))
    torch.manual_seed(0)
    model = AudioFormerForAudioClassification(config).eval()
    model.save_pretrained(tmp_path / "classifier")
    fe = AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=1.0)
    fe.save_pretrained(tmp_path / "classifier")
    wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    np.save(tmp_path / "wav.npy", wav)
    (user_dir / "score.py").write_text(USER_SCRIPT)

    proc = run_in(user_dir, sys.executable, "score.py", str(tmp_path / "classifier"), str(tmp_path / "wav.npy"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT="))
    out = json.loads(out[len("RESULT=") :])
    with torch.no_grad():
        probs = model(**fe(wav, sampling_rate=16000)).logits[0].softmax(-1)
    assert out["labels"] == [labels[i] for i in probs.topk(2).indices]
    assert "the user's own training.py" in out["mine"]


@pytest.mark.slow
@pytest.mark.parametrize("module", ["run_classification", "run_mlm", "audioformer.tokenization.tokenize_dataset"])
def test_script_help_beside_a_users_training_and_tokenization_modules(user_dir, module):
    proc = run_in(user_dir, sys.executable, "-m", module, "--help")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--output_dir" in proc.stdout
