"""
Labels for fine-tuning: read a label column, fix the classes, and encode them as `label_ids`.

A label column holding one string (or `ClassLabel`) per clip is single-label (multi-class); one holding a list
per clip is multi-label. The classes are those of a fine-tuned checkpoint, else those seen in the training split.

    labels = LabelSpace.from_datasets(splits, "labels")          # checks every split; errors name the rows
    labels.empty_label_lists                                      # {"train": 3}: clips with an empty list (warned)
    code_datasets = labels.add_label_ids(code_datasets)           # columns: input_ids, label_ids
    config = load_config(model_args, **labels.config_kwargs(loss="lsep"))
"""

import logging
import math
from dataclasses import dataclass, field

import datasets


logger = logging.getLogger(__name__)


LOSSES = ("ce", "bce", "lsep")


def _is_list_feature(feature) -> bool:
    return isinstance(feature, (datasets.Sequence, datasets.List, list))


def _label_order(name: str):
    """Numeric names in numeric order, then the rest alphabetically."""
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def _rows_text(rows: list[int]) -> str:
    return f"{rows[:20]}{' ...' if len(rows) > 20 else ''}"


def _not_a_label(value, names: list[str] | None) -> str | None:
    """Why `value` cannot be a class label (in words), or None if it can (or is missing)."""
    if value is None or isinstance(value, (str, bool)):
        return None
    if isinstance(value, int):
        if names is not None and not -1 <= value < len(names):
            return f"is outside the ClassLabel's {len(names)} classes"
        return None
    if isinstance(value, float):
        return None if math.isnan(value) or value.is_integer() else "is a fraction, not a class name or index"
    if isinstance(value, (list, tuple)):
        return "is a list inside a list of labels"
    return f"is a {type(value).__name__}, not a class name or index"


def read_labels(dataset: datasets.Dataset, column: str, split: str) -> tuple[list, bool]:
    """
    The label column as names: `(rows, multi_label)`, rows a list of str (single-label) or of lists of str.

    Raises a ValueError if the column is missing, naming the rows whose label is missing (None, "", or -1 in a
    ClassLabel column), or naming the row and value of a value that is no label (a fraction, a mapping, a list
    inside a list, an index outside the ClassLabel). Whole-number floats (1.0, as pandas reads a column with gaps)
    name the class "1".
    """
    if column not in dataset.column_names:
        raise ValueError(
            f"No label column {column!r} in split '{split}' (columns: {dataset.column_names}); set "
            "--label_column_name."
        )
    feature = dataset.features[column]
    multi_label = _is_list_feature(feature)
    inner = (feature.feature if hasattr(feature, "feature") else feature[0]) if multi_label else feature
    names = inner.names if isinstance(inner, datasets.ClassLabel) else None

    values = dataset[column]
    bad = []  # (row, value, why) of values that are no label at all

    def name(row, value):
        why = _not_a_label(value, names)
        if why is not None:
            bad.append((row, value, why))
            return ""
        if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
            return None
        if names is not None:
            return None if value == -1 else names[value]  # -1: datasets' "no label" for a ClassLabel
        return str(int(value)) if isinstance(value, float) else str(value)

    if multi_label:
        rows = [None if v is None else [name(i, x) for x in v] for i, v in enumerate(values)]
        missing = [i for i, r in enumerate(rows) if r is None or any(x is None for x in r)]
    else:
        rows = [name(i, v) for i, v in enumerate(values)]
        missing = [i for i, r in enumerate(rows) if r is None]
    if bad:
        row, value, why = bad[0]
        raise ValueError(
            f"Split '{split}', row {row}, column {column!r}: {value!r:.80} {why}"
            + (
                f" ({len(bad)} such values, rows {_rows_text(sorted({r for r, _, _ in bad}))})."
                if len(bad) > 1
                else "."
            )
            + " A label is a class name (string) or a class index, one per clip or a list of them per clip."
        )
    if missing:
        raise ValueError(
            f"Split '{split}': {len(missing)} row(s) have no label in column {column!r}, rows "
            f"{_rows_text(missing)}. Fill them or drop those clips."
        )
    return rows, multi_label


def encode_labels(rows: list, label2id: dict, multi_label: bool, split: str) -> list:
    """Names -> class index (single-label) or sorted index list (multi-label); ValueError naming unknown rows."""
    unknown_rows, unknown = [], set()
    encoded = []
    for i, row in enumerate(rows):
        names = row if multi_label else [row]
        bad = [n for n in names if n not in label2id]
        if bad:
            unknown_rows.append(i)
            unknown.update(bad)
            continue
        ids = sorted(label2id[n] for n in names)
        encoded.append(ids if multi_label else ids[0])
    if unknown_rows:
        raise ValueError(
            f"Split '{split}': {len(unknown_rows)} row(s) have labels the model does not know, rows "
            f"{_rows_text(unknown_rows)}; unknown labels {sorted(unknown)[:20]}. The known labels are those of the "
            "training split (or of the fine-tuned checkpoint; --ignore_mismatched_sizes trains a new classifier on "
            "the data's labels)."
        )
    return encoded


def label_names_from_checkpoint(config) -> list[str] | None:
    """The labels of a fine-tuned checkpoint's config, or None for a pretraining one (default LABEL_i names)."""
    names = [config.id2label[i] for i in sorted(config.id2label)]
    if config.problem_type is None and all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


@dataclass
class LabelSpace:
    """The classes of a fine-tuning run: `names[i]` is class `i`. `empty_label_lists` counts, per split, the
    multi-label clips whose label list is empty (accepted, with a warning: see `from_datasets`)."""

    column: str
    names: list[str]
    multi_label: bool
    empty_label_lists: dict[str, int] = field(default_factory=dict)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @classmethod
    def from_datasets(cls, dataset_dict, column: str, checkpoint_config=None, warn: bool = True) -> "LabelSpace":
        """
        Reads `column` in every split of `dataset_dict` ("train", "validation", "test") and checks it: present,
        no missing label, the same kind (list or not) everywhere, at least 2 classes, every label known.

        An empty label list (a multi-label clip with no class) is accepted, since "none of these classes" can be
        a true annotation, but counted in `empty_label_lists` and logged as a warning per split with its rows
        (`warn=False` keeps quiet, for a second look at the same data): such a clip adds nothing to the LSEP loss
        (eq. 7 needs a positive), is a negative for every class under BCE, and a negative for every class in mAP.

        Args:
            checkpoint_config: config of a fine-tuned checkpoint, whose classes are kept; None (or a pretraining
                checkpoint's) takes the classes of the training split.
        """
        rows, multi_label = {}, None
        for split, ds in dataset_dict.items():
            rows[split], split_multi = read_labels(ds, column, split)
            if multi_label is not None and split_multi != multi_label:
                raise ValueError(f"Column {column!r} holds a list per clip in one split and not in another.")
            multi_label = split_multi
        names = label_names_from_checkpoint(checkpoint_config) if checkpoint_config is not None else None
        if names is None:
            reference = rows["train"] if "train" in rows else next(iter(rows.values()))
            seen = {n for row in reference for n in (row if multi_label else [row])}
            names = sorted(seen, key=_label_order)
        if len(names) < 2:
            raise ValueError(f"Classification needs at least 2 classes; column {column!r} holds only {names}.")
        labels = cls(column=column, names=names, multi_label=multi_label)
        for split, split_rows in rows.items():
            encode_labels(split_rows, labels.label2id, multi_label, split)
            empty = [i for i, row in enumerate(split_rows) if multi_label and len(row) == 0]
            if empty:
                labels.empty_label_lists[split] = len(empty)
                if warn:
                    logger.warning(
                        "Split '%s': %d of %d clip(s) have an empty label list in column %r, rows %s. They add "
                        "nothing to the LSEP loss (no positive), are negatives for every class under BCE and in "
                        "mAP. Drop them if their labels are missing rather than truly none of the classes.",
                        split,
                        len(empty),
                        len(split_rows),
                        column,
                        _rows_text(empty),
                    )
        return labels

    def add_label_ids(self, dataset_dict):
        """Keeps `input_ids` and adds `label_ids` (int64, or a list of int32 for multi-label) to every split."""
        out = datasets.DatasetDict()
        feature = datasets.List(datasets.Value("int32")) if self.multi_label else datasets.Value("int64")
        for split, ds in dataset_dict.items():
            rows, _ = read_labels(ds, self.column, split)
            encoded = encode_labels(rows, self.label2id, self.multi_label, split)
            # add_column works in memory: no cache file for the processes of a DDP run to race on.
            out[split] = ds.select_columns(["input_ids"]).add_column("label_ids", encoded, feature=feature)
        return out

    def resolve_loss(self, loss: str | None) -> str:
        """--loss (one of `LOSSES`, checked where the flag enters), defaulting to ce (single-label) / lsep
        (multi-label); a ValueError if it does not fit the data."""
        loss = loss or ("lsep" if self.multi_label else "ce")
        if self.multi_label and loss == "ce":
            raise ValueError(f"--loss ce is for single-label data, but {self.column!r} holds lists: use lsep or bce.")
        if not self.multi_label and loss != "ce":
            raise ValueError(
                f"--loss {loss} is for multi-label data, but {self.column!r} holds one label per clip: "
                "use ce, or a list column."
            )
        return loss

    def config_kwargs(self, loss: str | None = None) -> dict:
        """The config fields of these labels: id2label, label2id, problem_type and (multi-label) the loss."""
        kwargs = dict(
            id2label=self.id2label,
            label2id=self.label2id,
            problem_type="multi_label_classification" if self.multi_label else "single_label_classification",
        )
        if self.multi_label:
            kwargs["multi_label_loss"] = self.resolve_loss(loss)
        else:
            self.resolve_loss(loss)
        return kwargs


__all__ = ["LOSSES", "LabelSpace", "read_labels", "encode_labels", "label_names_from_checkpoint"]
