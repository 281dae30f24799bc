"""The paper's recipes in configs/: they parse as the scripts parse them, state every convention explicitly
(schedule, warm-up, masking), and never select on their test split."""

import glob
import json
import os

import pytest
import yaml

import run_classification
import run_cross_validation
from audioformer.training.arguments import parse_args
from audioformer.training.cross_validation import CrossValidationArguments


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FT_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "ft_*.yaml")))
MLM_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "mlm_*")))


def read(path):
    with open(path) as f:
        return yaml.safe_load(f) if path.endswith((".yaml", ".yml")) else json.load(f)


def parse_recipe(path):
    """As run_classification.py (or run_cross_validation.py for the fold recipes) parses it, on this CPU machine."""
    argv = run_cross_validation.read_argv([path]) + ["--use_cpu", "true"]
    from transformers import HfArgumentParser

    cv_args, rest = HfArgumentParser(CrossValidationArguments).parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )
    return (cv_args, *parse_args(run_classification.argument_parser(), rest))


@pytest.mark.parametrize("path", FT_CONFIGS + MLM_CONFIGS, ids=os.path.basename)
def test_schedule_and_warmup_are_stated(path):
    recipe = read(path)
    assert "lr_scheduler_type" in recipe and "warmup_steps" in recipe, "state the schedule and the warm-up"
    if os.path.basename(path).startswith("mlm_"):
        for key in ("mlm_probability", "mask_replace_prob", "random_replace_prob", "whole_run_masking"):
            assert key in recipe, f"state the masking: {key}"
        assert recipe["mlm_probability"] == 0.25  # paper 4.2


@pytest.mark.parametrize("path", FT_CONFIGS, ids=os.path.basename)
def test_fine_tuning_recipes_select_on_validation_and_test_once(path):
    name = os.path.basename(path)
    cv_args, model_args, data_args, cls_args, eval_args, training_args = parse_recipe(path)
    assert model_args.model_name_or_path and training_args.do_train and training_args.do_eval
    assert training_args.lr_scheduler_type == "constant" and training_args.warmup_steps == 0  # the paper's fixed rate
    assert cls_args.loss in ("ce", "lsep")
    assert training_args.load_best_model_at_end
    if "esc50" in name:  # 5-fold cross-validation: each fold is the test split once
        assert cv_args.folds == ["1", "2", "3", "4", "5"] and cv_args.fold_column == "fold"
        assert not eval_args.has_test and data_args.validation_file is None
        assert data_args.validation_split_percentage > 0
        return
    assert eval_args.test_split_name == "eval" and eval_args.test_split_name != data_args.eval_split_name
    assert eval_args.calibrate_thresholds
    if "as20k" in name or "as2m" in name:  # AudioSet has no validation split: a seeded hold-out of the training data
        assert data_args.eval_split_name == "validation" and data_args.validation_split_percentage > 0
    if "fsd50k" in name:
        assert data_args.eval_split_name == "validation"
    if name.endswith("_ft2.yaml") and "stage2" not in name:  # AS-2M's stage 2 is FT1 in the paper
        assert len(cls_args.mpc_positive_models) == 3 and cls_args.mpc_alpha == 0.95
        assert cls_args.mpc_temperature == 0.05


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*"))), ids=os.path.basename)
def test_recipes_say_what_they_are_for(path):
    """A YAML header names the script, the paper's number it targets (or that there is none) and the command."""
    assert path.endswith(".yaml"), "recipes are YAML, so that they can carry their header comment"
    with open(path) as f:
        header = [line[1:].strip() for line in f.read().splitlines() if line.startswith("#")]
    assert len(header) >= 2 and header[0], "a first comment line says what the recipe reproduces"
    run = next((line for line in header if line.startswith("Script: ")), None)
    assert run is not None, "a 'Script: <script>. Run: <command>' line"
    script, command = run[len("Script: ") :].split(". Run: ")
    assert os.path.isfile(os.path.join(REPO, script)), script
    assert script in command and command.endswith(f"configs/{os.path.basename(path)}")
    assert "Table" in header[0] or "no paper number" in header[0] or "paper" in header[0]


def test_every_fine_tuning_recipe_is_covered():
    names = {os.path.basename(p) for p in FT_CONFIGS}
    assert {"ft_as20k_ft1.yaml", "ft_esc50_ft1.yaml", "ft_fsd50k_ft1.yaml", "ft_as2m_stage1_ft1.yaml"} <= names
