"""Every command in README.md and docs/*.md is one that works, checked cheaply (nothing is trained or downloaded).

The commands are the ```bash blocks and the inline `python ...` / `accelerate launch ...` spans. For each command of
this project (`python run_mlm.py`, `python -m audioformer....`, `accelerate launch ... run_*.py`, `python
benchmarks/...py`) the check finds the script or module, reads its argument parser by running it as `__main__` up
to the point where it parses (argparse and HfArgumentParser both parse through
`ArgumentParser.parse_known_args`, which is stopped there), and requires every `--flag` it names to be one of that
parser's options, every `configs/...` recipe it names to exist and every key of that recipe to be one of the
parser's fields. Flags before the script of `accelerate launch` are checked against accelerate's own parser.
Python snippets (```python blocks and `python -c` code) must parse, and their imports of this project must resolve.
Relative links must point at files that exist.
"""

import argparse
import ast
import contextlib
import importlib
import importlib.util
import json
import re
import runpy
import shlex
import sys
import warnings
from functools import cache
from pathlib import Path
from unittest import mock

import pytest
import yaml


ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROJECT_MODULES = ("audioformer", "audioformer_hear", "run_mlm", "run_classification", "run_cross_validation")
# The repository's folders, which install under `audioformer.` only (a bare `import training` is someone else's).
FOLDER_NAMES = ("modeling_audioformer", "tokenization", "training", "model_cards")
# run_cross_validation.py parses its own flags, then passes the rest to run_classification.py's parser.
FORWARDS_TO = {"run_cross_validation": "run_classification"}
# Flags of other projects' commands that the docs quote on their own.
EXTERNAL_FLAGS = {
    "--freeze_feature_encoder": "transformers' examples/pytorch/audio-classification",
    "--model-options": "hear-eval-kit's heareval.embeddings.runner",
}

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


# Extracting the snippets


def fenced_blocks(text: str, languages: tuple[str, ...]) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang in languages]


def inline_commands(text: str) -> list[str]:
    """Inline code spans (outside fenced blocks, possibly wrapped over lines) that are a python / accelerate
    command."""
    prose = FENCE.sub("", text)
    spans = [" ".join(span.split()) for span in INLINE.findall(prose)]
    return [s for s in spans if re.match(r"^(\w+=\S*\s+)*(python3? |accelerate launch )", s)]


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell snippet, as token lists: continuation lines joined, comments dropped, split at
    `&&`, `||`, `;` and `|`, the variable of a `for VAR in ...; do ...; done` loop expanded."""
    script = re.sub(r"<([\w-]+)>", r"\1", script.replace("\\\n", " "))  # <org> placeholders are not redirections
    commands, loop = [], None
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        current = []
        for token in [*lexer, ";"]:
            if token not in (";", "&&", "||", "|", "&"):
                current.append(token)
                continue
            if current and current[0] == "for" and "in" in current:
                loop = (current[1], current[current.index("in") + 1 :])
            elif current and current[0] == "done":
                loop = None
            elif current:
                if current[0] == "do":
                    current = current[1:]
                if loop and any(f"${loop[0]}" in t for t in current):
                    commands += [[t.replace(f"${loop[0]}", v) for t in current] for v in loop[1]]
                else:
                    commands.append(current)
            current = []
    return commands


def doc_commands() -> list[tuple[str, list[str]]]:
    """(page, tokens) of every shell command of the docs."""
    found = []
    for path in DOC_FILES:
        text = path.read_text()
        for block in fenced_blocks(text, ("bash", "sh", "shell", "console")):
            found += [(path.name, c) for c in shell_commands(block)]
        for span in inline_commands(text):
            found += [(path.name, c) for c in shell_commands(span)]
    return found


# Reading a command's parser


class ParserReached(Exception):
    def __init__(self, parser):
        self.parser = parser


def _stop_at_parse(self, args=None, namespace=None):
    raise ParserReached(self)


@cache
def parser_of(target: tuple[str, str]) -> argparse.ArgumentParser:
    """The argument parser that the script (kind "script", a path) or module (kind "module") builds, read by running
    it as __main__ with no arguments until it parses them."""
    kind, name = target
    argv0 = str(ROOT / name) if kind == "script" else name
    path = [str((ROOT / name).parent)] if kind == "script" else []  # as `python SCRIPT` puts its folder first
    with (
        mock.patch.object(argparse.ArgumentParser, "parse_known_args", _stop_at_parse),
        mock.patch.object(sys, "argv", [argv0]),
        mock.patch.object(sys, "path", path + sys.path),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(None),
    ):
        warnings.simplefilter("ignore")
        try:
            if kind == "script":
                runpy.run_path(argv0, run_name="__main__")
            else:
                runpy.run_module(name, run_name="__main__", alter_sys=True)
        except ParserReached as reached:
            return reached.parser
    raise AssertionError(f"{name} returned without parsing any arguments: no flags to check against")


def options_and_fields(target: tuple[str, str]) -> tuple[set[str], set[str]]:
    """The option strings (`--output_dir`, ...) and destinations (`output_dir`, ...) of a command."""
    parsers = [parser_of(target)]
    forwarded = FORWARDS_TO.get(Path(target[1]).stem)
    if forwarded:
        parsers.append(parser_of(("script", f"{forwarded}.py")))
    options = {o for p in parsers for o in p._option_string_actions}
    fields = {a.dest for p in parsers for a in p._actions}
    return options, fields


# Checking one command


def project_target(tokens: list[str]) -> tuple[tuple[str, str] | None, list[str], list[str], list[str]]:
    """Splits a command into (target, its arguments, accelerate's arguments, problems). target is None for a
    command that is not this project's (pip, pytest, hear-validator, ...)."""
    while tokens and re.match(r"^\w+=", tokens[0]):  # VAR=value prefixes
        tokens = tokens[1:]
    if not tokens:
        return None, [], [], []
    launcher = []
    if tokens[:2] == ["accelerate", "launch"]:
        rest = tokens[2:]
        for i, token in enumerate(rest):
            if token in ("-m", "--module") or token.endswith(".py"):
                launcher, tokens = rest[:i], ["python", *rest[i:]]
                break
        else:  # named in prose for its own flags (`accelerate launch --cpu`)
            return None, [], rest, []
        if tokens[1] == "--module":
            tokens[1] = "-m"
    if not tokens or tokens[0] not in ("python", "python3") or len(tokens) < 2:
        return None, [], [], []
    if tokens[1] == "-m" and len(tokens) > 2:
        module = tokens[2]
        if module.split(".")[0] in FOLDER_NAMES:
            return None, [], [], [f"`python -m {module}`: the module is audioformer.{module}"]
        if module.split(".")[0] not in PROJECT_MODULES:
            return None, [], [], []
        if importlib.util.find_spec(module) is None:
            return None, [], [], [f"`python -m {module}`: no such module"]
        return ("module", module), tokens[3:], launcher, []
    if tokens[1].endswith(".py"):
        script = tokens[1]
        if not (ROOT / script).is_file():
            return None, [], [], [f"`python {script}`: no such file in the repository"]
        return ("script", script), tokens[2:], launcher, []
    return None, [], [], []


def check_command(tokens: list[str]) -> list[str]:
    """What is wrong with one command of the docs (an empty list when nothing is)."""
    if tokens[:2] in (["python", "-c"], ["python3", "-c"]) and len(tokens) > 2:
        return check_python(tokens[2], "`python -c`")
    target, args, launcher, problems = project_target(tokens)
    if launcher:
        from accelerate.commands.launch import launch_command_parser

        known = set(launch_command_parser()._option_string_actions)
        problems += [f"`accelerate launch {f}`: not a flag of accelerate launch" for f in flags(launcher) - known]
    if target is None:
        return problems
    options, fields = options_and_fields(target)
    name = target[1]
    problems += [f"`{name} {f}`: not a flag of {name}" for f in sorted(flags(args) - options)]
    for token in args:
        if re.match(r"^(\./)?configs/", token):
            problems += check_recipe(token, name, fields)
    return problems


def flags(args: list[str]) -> set[str]:
    names = {a.strip("[]").split("=", 1)[0] for a in args}
    return {n for n in names if re.match(r"^--?[A-Za-z]", n)}


def check_recipe(token: str, command: str, fields: set[str]) -> list[str]:
    path = ROOT / token
    if not path.is_file():
        return [f"`{command} {token}`: no such recipe"]
    recipe = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    unknown = sorted(set(recipe) - fields)
    return [f"{token}: {key!r} is not a field of {command}" for key in unknown]


def check_python(code: str, where: str) -> list[str]:
    """The code parses, and every import of this project in it resolves (module and names)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        return [f"{where}: does not parse ({error})"]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            pairs = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            pairs = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in pairs:
            if module.split(".")[0] in FOLDER_NAMES:
                problems.append(f"{where}: `import {module}`: the package is installed as audioformer.{module}")
                continue
            if module.split(".")[0] not in PROJECT_MODULES:
                continue
            try:
                imported = importlib.import_module(module)
            except ImportError as error:
                problems.append(f"{where}: `import {module}` fails ({error})")
                continue
            is_submodule = hasattr(imported, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None
            if name and not hasattr(imported, name) and not is_submodule:
                problems.append(f"{where}: `from {module} import {name}`: {module} has no {name}")
    return problems


# The tests


@pytest.mark.parametrize("page", [p.name for p in DOC_FILES])
def test_every_command_of_the_page_exists_with_its_flags_and_recipes(page):
    commands = [tokens for p, tokens in doc_commands() if p == page]
    problems = [problem for tokens in commands for problem in check_command(tokens)]
    assert not problems, f"{page}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", [p.name for p in DOC_FILES])
def test_python_snippets_parse_and_import_the_project(page):
    path = next(p for p in DOC_FILES if p.name == page)
    blocks = fenced_blocks(path.read_text(), ("python",))
    problems = [problem for i, block in enumerate(blocks) for problem in check_python(block, f"python block {i + 1}")]
    assert not problems, f"{page}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", [p.name for p in DOC_FILES])
def test_relative_links_point_at_files(page):
    path = next(p for p in DOC_FILES if p.name == page)
    missing = []
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"^(\w+:|#)", target):
            continue
        file = path.parent / target.split("#")[0]
        if not file.exists():
            missing.append(f"{target}: no such file")
    assert not missing, f"{page}:\n" + "\n".join(missing)


def test_flags_named_in_prose_are_flags_of_a_project_command():
    """A flag quoted on its own (`--weighted_sampling`, `--mpc_alpha 0.95`) is one of some command of the docs."""
    targets = {project_target(tokens)[0] for _, tokens in doc_commands()} - {None}
    from accelerate.commands.launch import launch_command_parser

    known = set(launch_command_parser()._option_string_actions) | set(EXTERNAL_FLAGS)
    for target in targets:
        known |= options_and_fields(target)[0]
    unknown = []
    for path in DOC_FILES:
        for span in INLINE.findall(FENCE.sub("", path.read_text())):
            if span.startswith("--"):
                unknown += [f"{path.name}: {flag}" for flag in sorted(flags(span.split()) - known)]
    assert not unknown, "flags of no command:\n" + "\n".join(unknown)


def test_the_docs_have_project_commands_to_check():
    """The extraction finds the commands: a check that finds none would pass on anything."""
    targets = {project_target(tokens)[0] for _, tokens in doc_commands()}
    assert ("script", "run_mlm.py") in targets
    assert ("script", "run_classification.py") in targets
    assert ("module", "audioformer.tokenization.tokenize_dataset") in targets


# The check itself, on a small page with known mistakes


FIXTURE = """
```bash
python run_mlm.py --mlm_probability 0.25 --output_dir out
python run_mlm.py --mlm_probabilty 0.25 --output_dir out  # misspelt
accelerate launch --num_processes 2 run_classification.py --learning_rate 1e-4 \\
    --early_stoping_patience 3
accelerate launch --num_procs 2 -m audioformer.tokenization.tokenize_dataset --num_shards 4
python -m audioformer.tokenization.tokenise_dataset --output_dir x
python -m model_cards.space demo_output
for c in 1 2; do python run_mlm.py configs/no_such_recipe_c$c.yaml; done
python run_cross_validation.py --fold_column fold --folds 1 2 --loss lsep --max_duration 5
pip install --no-such-pip-flag whatever
```

Inline: `python -m audioformer.model_cards.publish OUT --repo_id ORG/NAME --dry-run`.
"""


def test_the_check_finds_misspelt_flags_missing_modules_and_recipes():
    problems = []
    for span in fenced_blocks(FIXTURE, ("bash",)) + inline_commands(FIXTURE):
        for tokens in shell_commands(span):
            problems += check_command(tokens)
    assert sorted(problems) == sorted(
        [
            "`run_mlm.py --mlm_probabilty`: not a flag of run_mlm.py",
            "`run_classification.py --early_stoping_patience`: not a flag of run_classification.py",
            "`accelerate launch --num_procs`: not a flag of accelerate launch",
            "`python -m audioformer.tokenization.tokenise_dataset`: no such module",
            "`python -m model_cards.space`: the module is audioformer.model_cards.space",
            "`run_mlm.py configs/no_such_recipe_c1.yaml`: no such recipe",
            "`run_mlm.py configs/no_such_recipe_c2.yaml`: no such recipe",
            "`audioformer.model_cards.publish --dry-run`: not a flag of audioformer.model_cards.publish",
        ]
    )


def test_the_check_reads_recipe_keys_and_python_imports(tmp_path, monkeypatch):
    recipe = ROOT / "configs" / "mlm_tiny_demo.yaml"
    fields = options_and_fields(("script", "run_mlm.py"))[1]
    assert check_recipe(str(recipe.relative_to(ROOT)), "run_mlm.py", fields) == []
    bad = tmp_path / "configs" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text("mlm_probabilty: 0.25\noutput_dir: x\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert check_recipe("configs/bad.yaml", "run_mlm.py", fields) == [
        "configs/bad.yaml: 'mlm_probabilty' is not a field of run_mlm.py"
    ]
    assert check_python("import audioformer\nfrom audioformer import AudioFormerModel", "ok") == []
    assert check_python("from training.demo_data import write_demo_audiofolder", "old") == [
        "old: `import training.demo_data`: the package is installed as audioformer.training.demo_data"
    ]
    assert check_python("import numpy as np, no_such_package", "other") == []  # not this project's: unchecked
    assert check_python("from audioformer.training.demo_data import write_demo_folder", "x") == [
        "x: `from audioformer.training.demo_data import write_demo_folder`: audioformer.training.demo_data has no "
        "write_demo_folder"
    ]
    assert check_python("import audioformer.trainin", "y")[0].startswith("y: `import audioformer.trainin` fails")
