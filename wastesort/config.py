"""Parameters shared by every stage, the service and the CLI.

Every knob lives in ``params.yaml`` (DVC's params file) so ``dvc exp run -S key=value``
reaches it. ``Params`` below is the one typed place for their defaults and allowed values:
``load_params`` checks the file against it before any work starts and returns every section
with its defaults filled in, so code reads ``cfg["key"]`` and never repeats a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PARAMS_FILE = Path("params.yaml")


class UserError(Exception):
    """A problem the user can fix; a stage prints its message in one line (``stage.run``)."""


class ConfigError(UserError, ValueError):
    """A parameter or input path is unusable; the message names it."""


def image_size(value: Any) -> tuple[int, int]:
    """``backbone.image_size`` as (height, width): a whole number is a square, [height, width]
    keeps an aspect ratio (TrashNet's photos: [240, 320])."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 32 for v in value)
    ):
        raise ConfigError(
            "params.yaml: backbone.image_size must be a whole number of pixels "
            f"(a square) or [height, width], each at least 32, got {value!r}"
        )
    return int(value[0]), int(value[1])


Fraction = Annotated[float, Field(ge=0, le=1)]
Margin = Annotated[float, Field(ge=-1, le=1)]  # accuracy that may be lost (< 0: a gain is required)
Seed = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]


class Section(BaseModel):
    # strict: YAML already gives numbers, booleans and lists their types; "4" or "no" is a typo
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Data(Section):
    path: str = "data/raw"
    classes: list[str] = []
    extra_paths: list[str] = []

    @field_validator("extra_paths")
    @classmethod
    def _relative(cls, value):
        for path in value:
            if os.path.isabs(path) or path.startswith(("~", "..")):
                raise ValueError(
                    f"must be folders inside the repo, relative to its root ({path!r} is not: "
                    "DVC tracks them, extras/dvc.yaml)"
                )
        return value


class Validate(Section):
    min_side: Positive = 32
    max_pixels: Positive = 50_000_000
    min_images_per_class: Positive = 20
    near_duplicate_distance: Annotated[int, Field(ge=0, le=63)] = 4  # of 64 pHash bits
    exclude_near_duplicate_conflicts: bool = False


class Split(Section):
    seed: Seed = 42
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.15
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.15


class Review(Section):
    folds: Annotated[int, Field(ge=2)] = 5
    seed: Seed = 42
    c: Annotated[float, Field(gt=0)] = 0.01
    top: Positive = 24


class Augment(Section):
    seed: Seed = 42
    variants_per_image: Count = 4
    horizontal_flip: bool = True
    vertical_flip: bool = True
    rotation_degrees: Annotated[float, Field(ge=0, le=180)] = 20
    width_shift: Annotated[float, Field(ge=0, lt=1)] = 0.1
    height_shift: Annotated[float, Field(ge=0, lt=1)] = 0.1
    shear_degrees: Annotated[float, Field(ge=0, lt=90)] = 8
    zoom: Annotated[float, Field(ge=0, lt=1)] = 0.15
    brightness: Annotated[float, Field(ge=0, lt=1)] = 0.2
    contrast: Annotated[float, Field(ge=0, lt=1)] = 0.2
    fill_mode: Literal["reflect", "nearest", "constant", "wrap", "mirror"] = "reflect"
    preview_images: Count = 6


class Backbone(Section):
    name: Literal[
        "mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"
    ] = "efficientnet_lite1"
    weights: str | None = "imagenet"
    image_size: int | list[int] | tuple[int, int] = 240
    batch_size: Positive = 32

    @field_validator("image_size", mode="before")
    @classmethod
    def _size(cls, value):
        try:
            image_size(value)
        except ConfigError:
            raise ValueError(
                "must be a whole number of pixels (a square) or [height, width], each at least 32"
            ) from None
        return value


class Distribute(Section):
    strategy: Literal["none", "mirrored", "multi_worker"] = "none"
    logical_cpus: Count = 0
    mixed_precision: bool = True


class Finetune(Section):
    layers: int | Literal["all"] = "all"
    lr: Annotated[float, Field(gt=0)] = 3e-4
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    ema_momentum: Annotated[float, Field(ge=0, lt=1)] = 0.99
    epochs: Count = 12
    patience: Positive = 12
    batch_size: Positive = 32
    seed: Seed = 42
    fresh_augmentation: bool = True
    mixup_alpha: Annotated[float, Field(ge=0)] = 0.0
    warmup_lr: Annotated[float, Field(gt=0)] = 1e-3
    warmup_epochs: Count = 30
    warmup_patience: Positive = 8

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, value):
        if value == "all" or isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ValueError("must be 'all' or a whole number >= 0")


class Head(Section):
    dense_units: Positive = 128
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.3
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1


class Train(Section):
    seed: Seed = 42
    lr: Annotated[float, Field(gt=0)] = 1e-3
    epochs: Positive = 40
    batch_size: Positive = 64
    patience: Positive = 8
    class_weights: bool = True
    calibrate: bool = True


class Evaluate(Section):
    min_accuracy: Fraction = 0.90
    gate_on: Literal["point", "lower_bound"] = "point"
    mistakes_shown: Count = 16


class Export(Section):
    representative_images: Positive = 100
    seed: Seed = 42
    min_float32_agreement: Fraction = 0.995
    max_int8_drop: Margin = 0.02


class Mlflow(Section):
    experiment: str = "wastesort"


class Register(Section):
    model_name: str = "wastesort"
    alias: str = "champion"
    max_regression: Margin = 0.0


class Serve(Section):
    model: Literal["float32", "int8"] = "float32"
    max_upload_mb: Annotated[float, Field(gt=0)] = 10
    max_pixels: Positive = 25_000_000
    max_batch_size: Positive = 32
    max_images_per_request: Positive = 32
    min_confidence: Fraction = 0.7
    uncertain_stream: str = "manual_check"
    workers: Positive = 2
    tflite_threads: Positive = 1
    default_stream: str = "residual_waste"
    streams: dict[str, str] = {
        "cardboard": "paper_and_cardboard",
        "paper": "paper_and_cardboard",
        "glass": "glass",
        "metal": "metals",
        "plastic": "plastics",
        "plastic_bottle": "plastics",
        "plastic_container": "plastics",
        "plastic_cup": "plastics",
        "trash": "residual_waste",
    }
    capture: Literal["none", "uncertain", "all"] = "none"
    capture_dir: str = "inbox"
    capture_max_files: Positive = 10_000
    capture_max_mb: Annotated[float, Field(gt=0)] = 2048
    inbox_token: str = ""


class Monitor(Section):
    min_answers: Positive = 30
    max_class_mix_p: Fraction = 0.01
    max_uncertain_rise: Fraction = 0.10


class Params(Section):
    """params.yaml: one model per section; a section left out takes its defaults."""

    data: Data = Data()
    validate_: Validate = Field(Validate(), alias="validate")
    split: Split = Split()
    review: Review = Review()
    augment: Augment = Augment()
    backbone: Backbone = Backbone()
    distribute: Distribute = Distribute()
    finetune: Finetune = Finetune()
    head: Head = Head()
    train: Train = Train()
    evaluate: Evaluate = Evaluate()
    export: Export = Export()
    mlflow: Mlflow = Mlflow()
    register_: Register = Field(Register(), alias="register")
    serve: Serve = Serve()
    monitor: Monitor = Monitor()


def section_models() -> dict[str, type[Section]]:
    """Each section's name in params.yaml and its model."""
    return {(f.alias or name): f.annotation for name, f in Params.model_fields.items()}


def describe(error: ValidationError, path: Path, section: str | None = None) -> str:
    """The first problem of a validation error, in one line naming ``section.key`` (``section``:
    the error is of that one section's model)."""
    first = error.errors()[0]
    loc = [str(p) for p in ((section,) if section else ()) + first["loc"] if isinstance(p, str)]
    names = [loc[0], *[p for p in loc[1:] if p.isidentifier()][:1]] if loc else []
    where = ".".join(names) or "params"
    models = section_models()
    if first["type"] == "extra_forbidden":
        if len(names) == 1:
            return (
                f"{path}: '{where}' is not a section of the parameters (known: {', '.join(models)})"
            )
        return (
            f"{path}: {where} is not a parameter (the {names[0]} section has: "
            f"{', '.join(models[names[0]].model_fields)})"
        )
    if first["type"] == "model_type":
        return f"{path}: {where} must be a mapping of keys to values (got {first['input']!r})"
    message = first["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    return f"{path}: {where} {message[:1].lower()}{message[1:]} (got {first['input']!r})"


def validated(params: dict[str, Any], path: Path = PARAMS_FILE) -> dict[str, Any]:
    """``params`` checked against ``Params``: every section, defaults filled in."""
    check_moved(params, path)
    try:
        model = Params.model_validate(params)
    except ValidationError as exc:
        raise ConfigError(describe(exc, path)) from None
    return model.model_dump(by_alias=True)


def typed(name: str, mapping: dict[str, Any] | Section) -> Section:
    """One section as its frozen model (a partial mapping takes the defaults; the model itself
    passes through); a bad value is a one-line ``ConfigError`` naming ``name.key``."""
    try:
        return section_models()[name].model_validate(mapping)
    except ValidationError as exc:
        raise ConfigError(describe(exc, PARAMS_FILE, name)) from None


def defaults(name: str) -> dict[str, Any]:
    """One section's defaults, as ``load_params`` returns it."""
    return Params().model_dump(by_alias=True)[name]


def load_params(path: str | os.PathLike = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the repo root)")
    with path.open() as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return validated(params, path)


# Parameters that moved (README, "Upgrading"): old section.key -> new section.key or None
MOVED = {
    "finetune.head_dense_units": "head.dense_units",
    "train.dense_units": "head.dense_units",
    "finetune.head_dropout": "head.dropout",
    "train.dropout": "head.dropout",
    "finetune.label_smoothing": "head.label_smoothing",
    "train.label_smoothing": "head.label_smoothing",
    "finetune.head_lr": "finetune.warmup_lr",
    "finetune.head_epochs": "finetune.warmup_epochs",
    "finetune.head_patience": "finetune.warmup_patience",
    "native_view": None,
    "serve.review_token": "serve.inbox_token",
}


def check_moved(params: dict[str, Any], path: Path) -> None:
    """A parameter of an earlier version is named with where it went, in one line."""
    for old, new in MOVED.items():
        section_name, _, key = old.partition(".")
        value = params.get(section_name)
        present = isinstance(value, dict) and key in value if key else value is not None
        if not present:
            continue
        where = f"it is now {new}" if new else "it was removed (CHANGELOG.md)"
        raise ConfigError(f"{path}: {old} is no longer a parameter: {where}")


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"params.yaml: section '{name}' is missing or not a mapping")
    return value


def data_root(params: dict[str, Any]) -> Path:
    return Path(str(section(params, "data")["path"])).expanduser()


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def configured_classes(params: dict[str, Any]) -> list[str]:
    """The class list from params; empty means "every sub-folder of the data folder"."""
    classes = section(params, "data")["classes"] or []
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise ConfigError("params.yaml: data.classes must be a list of folder names (or [])")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"params.yaml: data.classes has repeated names: {classes}")
    return list(classes)
