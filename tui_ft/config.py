"""TrainConfig: every training parameter with its default, group, help text and
validation; YAML in and out. Names follow Hugging Face `TrainingArguments`, so the
same words mean the same things. Validation reports every problem at once, each
naming the key, the value and the reason; the TUI form and `tui-ft train` share it.
It stays one module past ~400 lines on purpose: it is the table of every parameter,
and a newcomer looking for one finds it here, beside the check that reads it."""

from __future__ import annotations

import difflib
import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Collection

from .data.split import DEFAULT_RATIOS, SPLIT_METHODS
from .errors import TuiFtError
from .model.precision import DEVICE_NAMES, device_problem, precision_problem

SAMPLE_PREFIX = "@sample/"
GROUPS = ("model", "data", "optimisation", "evaluation and checkpoints", "precision",
          "generation")
STRATEGIES = ("no", "steps", "epoch")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
DISTRIBUTED_STRATEGIES = ("ddp", "fsdp")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Upper bounds of the numeric fields. Every number has both bounds so that a typo
# (1e308 epochs, a 30-digit seed) is refused by the check, naming the range, instead of
# overflowing later inside the trainer (math.ceil of inf, torch.manual_seed's int64).
# Each is far past any run this tool can make, so no real config meets one.
MAX_SEED = 2**32 - 1  # every RNG the seeds reach takes 0..2**32-1 (torch, random, numpy)
MAX_STEPS = 10**9  # optimizer steps: years of training at a step a second
MAX_EPOCHS = 10**6
MAX_TOKENS = 2**20  # a sequence or answer length, 1024 times GPT-2's context
MAX_BATCH = 65536  # records per batch, batches per optimizer step
MAX_COUNT = 10**6  # checkpoints kept, evaluations waited
MAX_LOSS_DELTA = 100.0  # a change of a loss in nats; GPT-2 starts near ln(50257) = 10.8
MAX_GRAD_NORM = 1e6
MAX_TEMPERATURE = 100.0  # already indistinguishable from uniform sampling


class ConfigError(TuiFtError):
    """A configuration with problems; `problems` lists each one."""

    def __init__(self, problems: list["Problem"], source: str = "") -> None:
        self.problems = problems
        where = f"{source}: " if source else ""
        lines = [f"{where}{len(problems)} problem{'s' if len(problems) != 1 else ''} "
                 "in the configuration:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Problem:
    key: str
    value: Any
    reason: str

    def __str__(self) -> str:
        return f"{self.key} = {self.value!r}: {self.reason}"


def _p(default, group: str, help: str, kind: type | tuple = None, *, choices=None,
       minimum=None, maximum=None, exclusive_min: bool = False, exclusive_max: bool = False,
       optional: bool = False):
    """A config field with the metadata the validator and the form use."""
    meta = {"group": group, "help": help, "kind": kind if kind is not None else type(default),
            "choices": choices, "min": minimum, "max": maximum,
            "exclusive_min": exclusive_min, "exclusive_max": exclusive_max,
            "optional": optional}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # -- model -------------------------------------------------------------------
    model: str = _p("tiny", "model",
                    "A preset (tiny, gpt2, gpt2-medium, gpt2-large, gpt2-xl), a Hugging "
                    "Face-layout folder, a .safetensors file, or a run/checkpoint to start from.")
    dropout: float = _p(0.0, "model", "Dropout in attention and MLP blocks while training.",
                        float, minimum=0.0, maximum=1.0, exclusive_min=False)
    lora_r: int | None = _p(None, "model",
                            "LoRA rank: train small low-rank adapters beside the target "
                            "layers with the base frozen; checkpoints hold only the adapter "
                            "(empty: full fine-tuning).", int, minimum=1, maximum=4096,
                            optional=True)
    lora_alpha: float = _p(16.0, "model", "LoRA scaling: the update is multiplied by "
                           "lora_alpha / lora_r.", float, minimum=0.0, exclusive_min=True,
                           maximum=1e6)
    lora_dropout: float = _p(0.0, "model", "Dropout on the LoRA adapters' input while "
                             "training.", float, minimum=0.0, maximum=1.0)
    load_in_8bit: bool = _p(False, "model",
                            "With LoRA: hold the frozen base's block weights in int8 "
                            "(bitsandbytes, pip install \"tui-ft[bnb]\"; CUDA, or the CPU "
                            "from bitsandbytes 0.46): about a quarter of their memory.")
    lora_target_modules: list = _p(["c_attn"], "model",
                                   "Layers of each block that get adapters: c_attn, "
                                   "c_proj, c_fc, attn.c_proj, mlp.c_proj, or attention, "
                                   "mlp, all.", tuple)
    gradient_checkpointing: bool = _p(False, "model",
                                      "Recompute activations in the backward pass: less memory, "
                                      "about a third more compute (for the large sizes).")
    # -- data --------------------------------------------------------------------
    dataset: str = _p(SAMPLE_PREFIX + "instructions.jsonl", "data",
                      "Training data (JSON list or JSONL). '@sample/NAME' is the shipped "
                      "sample data. Split into train/val/test unless val_dataset is set.")
    val_dataset: str | None = _p(None, "data",
                                 "Separate validation file; with it, 'dataset' is all train.",
                                 str, optional=True)
    test_dataset: str | None = _p(None, "data", "Separate test file (for responses).", str,
                                  optional=True)
    instruction_key: str = _p("instruction", "data",
                              "The key an Alpaca record's instruction is read from (for a "
                              "file that names it otherwise, e.g. prompt or question).")
    input_key: str = _p("input", "data", "The key of a record's optional input.")
    output_key: str = _p("output", "data",
                         "The key of the expected answer (e.g. response, completion).")
    split_ratios: list = _p(list(DEFAULT_RATIOS), "data",
                            "Train / validation / test fractions (or percentages).", list)
    split_seed: int = _p(123, "data",
                         "Seed of the split. A record's split depends only on its id and this.",
                         int, minimum=0, maximum=MAX_SEED)
    split_method: str = _p("hash", "data",
                           "hash: each record's split is fixed by its id (or content) and "
                           "the seed, stable when the file is edited; ordered: file order as "
                           "the book's script (first 85% train, next 10% test, the rest "
                           "validation).", choices=SPLIT_METHODS)
    prompt_style: str = _p("alpaca", "data", "Prompt style (see 'tui-ft styles').")
    mask_prompt: bool = _p(False, "data",
                           "Learn only the answers: every prompt token's target is -100.")
    max_length: int | None = _p(None, "data",
                                "Truncate sequences to this many tokens (empty: the model's "
                                "context).", int, minimum=2, maximum=MAX_TOKENS,
                                optional=True)
    group_by_length: bool = _p(False, "data",
                               "Batch records of similar length together (less padding).")
    packing: bool = _p(False, "data",
                       "Lay several records end to end in rows of max_length tokens, each "
                       "seeing only itself (positions restart): almost no padding. The "
                       "batch size then counts rows.")
    pad_to_multiple_of: int | None = _p(None, "data",
                                        "Pad each batch to a multiple of this many tokens: "
                                        "few shapes for torch.compile and CUDA graphs "
                                        "(empty: 64 with torch_compile, else none).", int,
                                        minimum=1, maximum=MAX_TOKENS, optional=True)
    # -- optimisation ------------------------------------------------------------
    output_dir: str | None = _p(None, "optimisation",
                                "Run folder (empty: a new folder under the runs directory).",
                                str, optional=True)
    num_train_epochs: float = _p(3.0, "optimisation", "Passes over the training split.",
                                 float, minimum=0.0, exclusive_min=True,
                                 maximum=MAX_EPOCHS)
    max_steps: int = _p(-1, "optimisation",
                        "Stop after this many optimizer steps (-1: use num_train_epochs).",
                        int, minimum=-1, maximum=MAX_STEPS)
    per_device_train_batch_size: int = _p(8, "optimisation", "Records per training batch.",
                                          int, minimum=1, maximum=MAX_BATCH)
    per_device_eval_batch_size: int = _p(8, "optimisation", "Records per evaluation batch.",
                                         int, minimum=1, maximum=MAX_BATCH)
    gradient_accumulation_steps: int = _p(1, "optimisation",
                                          "Batches added up before each optimizer step.",
                                          int, minimum=1, maximum=MAX_BATCH)
    optim: str = _p("adamw_torch", "optimisation",
                    "The optimizer: adamw_torch (fused where the device has it), or "
                    "adamw_bnb_8bit (bitsandbytes' 8-bit AdamW: its state takes a "
                    "quarter of the memory; pip install \"tui-ft[bnb]\"; CUDA, or the "
                    "CPU from bitsandbytes 0.50).",
                    choices=("adamw_torch", "adamw_bnb_8bit"))
    nproc_per_node: int = _p(1, "optimisation",
                             "Processes (one per GPU) training this run together under "
                             "torchrun with DDP. The batch size is per process: the "
                             "effective batch is per-device x processes x accumulation.",
                             int, minimum=1, maximum=1024)
    distributed: str = _p("ddp", "optimisation",
                          "With several processes: ddp keeps a whole model on each (fastest "
                          "where it fits); fsdp shards weights, gradients and optimizer "
                          "state across them (FSDP2), for models that do not fit one device.",
                          choices=DISTRIBUTED_STRATEGIES)
    # The default suits the default model (tiny, trained from scratch); fine-tuning a
    # pretrained GPT-2 wants about 5e-5 (the "gpt2 fine-tune" recipe sets it).
    learning_rate: float = _p(2e-3, "optimisation",
                              "Peak learning rate of AdamW (2e-3 for tiny from scratch; about "
                              "5e-5 to fine-tune pretrained GPT-2).", float,
                              minimum=0.0, exclusive_min=True, maximum=1.0)
    weight_decay: float = _p(0.0, "optimisation", "AdamW weight decay (not on biases, norms).",
                             float, minimum=0.0, maximum=1.0)
    # A beta of 1 makes AdamW divide by 1 - beta ** step = 0 (torch refuses it).
    adam_beta1: float = _p(0.9, "optimisation", "AdamW beta1.", float, minimum=0.0, maximum=1.0,
                           exclusive_max=True)
    adam_beta2: float = _p(0.999, "optimisation", "AdamW beta2.", float, minimum=0.0,
                           maximum=1.0, exclusive_max=True)
    adam_epsilon: float = _p(1e-8, "optimisation", "AdamW epsilon.", float, minimum=0.0,
                             exclusive_min=True, maximum=1.0)
    lr_scheduler_type: str = _p("linear", "optimisation",
                                "Learning-rate schedule after warmup.", choices=SCHEDULERS)
    warmup_steps: int = _p(0, "optimisation", "Steps of linear warmup from 0.", int, minimum=0,
                       maximum=MAX_STEPS)
    warmup_ratio: float = _p(0.0, "optimisation",
                             "Warmup as a fraction of all steps (used when warmup_steps is 0).",
                             float, minimum=0.0, maximum=1.0)
    max_grad_norm: float = _p(1.0, "optimisation",
                              "Clip the gradient norm to this (0: no clipping).", float,
                              minimum=0.0, maximum=MAX_GRAD_NORM)
    seed: int = _p(42, "optimisation", "Seed of initialisation, shuffling and dropout.", int,
                minimum=0, maximum=MAX_SEED)
    # -- evaluation and checkpoints ---------------------------------------------
    eval_strategy: str = _p("steps", "evaluation and checkpoints",
                            "When to compute validation loss: no, steps or epoch.",
                            choices=STRATEGIES)
    eval_steps: int = _p(50, "evaluation and checkpoints",
                         "Evaluate every this many steps (eval_strategy: steps).", int, minimum=1,
                         maximum=MAX_STEPS)
    logging_steps: int = _p(10, "evaluation and checkpoints",
                            "Log the averaged training loss every this many steps.", int,
                            minimum=1, maximum=MAX_STEPS)
    logging_dir: str | None = _p(None, "evaluation and checkpoints",
                                 "Where logs go (empty: <run>/logs).", str, optional=True)
    save_strategy: str = _p("steps", "evaluation and checkpoints",
                            "When to save a checkpoint: no, steps or epoch.", choices=STRATEGIES)
    save_steps: int = _p(100, "evaluation and checkpoints",
                         "Save every this many steps (save_strategy: steps).", int, minimum=1,
                         maximum=MAX_STEPS)
    save_total_limit: int | None = _p(3, "evaluation and checkpoints",
                                      "Keep at most this many checkpoints (the best is always "
                                      "kept; empty: keep all).", int, minimum=1,
                                      maximum=MAX_COUNT, optional=True)
    load_best_model_at_end: bool = _p(True, "evaluation and checkpoints",
                                      "At the end, restore the checkpoint with the best metric.")
    metric_for_best_model: str = _p("eval_loss", "evaluation and checkpoints",
                                    "Metric that decides the best checkpoint (kept, "
                                    "loaded at the end, early stopping): eval_loss, or "
                                    "eval_accuracy (next-token accuracy on the learned "
                                    "tokens of the validation split).")
    eval_exact_match: bool = _p(False, "evaluation and checkpoints",
                                "Also generate greedy answers to the validation split at "
                                "each evaluation and log their normalised exact match "
                                "(val_exact_match; costs generation time).")
    compute_metrics: str | None = _p(None, "evaluation and checkpoints",
                                     "A Python file defining compute_metrics(prompt, "
                                     "expected, answer) -> dict of numbers, run on the "
                                     "generated validation answers at each evaluation "
                                     "(logged as val_NAME; @sample/metrics.py is an "
                                     "example).", str, optional=True)
    greater_is_better: bool = _p(False, "evaluation and checkpoints",
                                 "Whether a larger metric is better: false for eval_loss, "
                                 "true for eval_accuracy.")
    early_stopping_patience: int | None = _p(None, "evaluation and checkpoints",
                                             "Stop after this many evaluations without "
                                             "improvement (empty: never).", int, minimum=1,
                                             maximum=MAX_COUNT, optional=True)
    early_stopping_threshold: float = _p(0.0, "evaluation and checkpoints",
                                         "Smallest change of the metric that counts as "
                                         "improvement.", float, minimum=0.0,
                                         maximum=MAX_LOSS_DELTA)
    overfit_patience: int = _p(3, "evaluation and checkpoints",
                               "Alert when validation loss has not improved for this many "
                               "evaluations while training loss kept falling.", int, minimum=1,
                               maximum=MAX_COUNT)
    overfit_min_delta: float = _p(0.01, "evaluation and checkpoints",
                                  "Smallest validation-loss improvement that counts (so the "
                                  "alert ignores noise).", float, minimum=0.0,
                                  maximum=MAX_LOSS_DELTA)
    resume_from_checkpoint: str | None = _p(None, "evaluation and checkpoints",
                                            "Checkpoint folder to continue from exactly.", str,
                                            optional=True)
    # -- precision ---------------------------------------------------------------
    bf16: bool = _p(False, "precision", "bfloat16 autocast (fp32 master weights): GPUs since "
                    "Ampere; CPUs with AMX (about 1.8x for gpt2 sizes).")
    fp16: bool = _p(False, "precision", "float16 autocast with loss scaling.")
    device: str = _p("auto", "precision", f"{DEVICE_NAMES}.")
    torch_compile: bool = _p(False, "precision",
                             "Compile the model with torch.compile (falls back cleanly).")
    torch_compile_mode: str = _p("default", "precision",
                                 "torch.compile mode; reduce-overhead replays CUDA graphs "
                                 "(pair it with packing or pad_to_multiple_of).",
                                 choices=COMPILE_MODES)
    # -- generation --------------------------------------------------------------
    # Fits the default model: tiny's context is 256 tokens, prompt and answer together.
    # The sample data's answers are at most 15 tokens, the book's at most 50.
    max_new_tokens: int = _p(128, "generation",
                             "Longest answer generated for a test record (lowered at "
                             "generation when the longest prompt leaves less room in the "
                             "model's context).", int, minimum=1,
                             maximum=MAX_TOKENS)
    temperature: float = _p(0.0, "generation", "0 is greedy; above 0 samples.", float,
                            minimum=0.0, maximum=MAX_TEMPERATURE)
    top_k: int | None = _p(None, "generation", "Sample from the K most likely tokens.", int,
                           minimum=1, maximum=MAX_TOKENS, optional=True)
    top_p: float | None = _p(None, "generation", "Nucleus sampling threshold.", float,
                             minimum=0.0, exclusive_min=True, maximum=1.0, optional=True)

    # -- behaviour ---------------------------------------------------------------

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def meta(cls, name: str) -> dict:
        return next(f.metadata for f in fields(cls) if f.name == name)

    def to_dict(self) -> dict:
        return {f.name: (list(getattr(self, f.name)) if isinstance(getattr(self, f.name), list)
                         else getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict, source: str = "", *, recorded: bool = False,
                  styles: Collection[str] | None = None) -> "TrainConfig":
        values, problems = check(data, recorded=recorded, styles=styles)
        if problems:
            raise ConfigError(problems, source)
        return cls(**values)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> None:
        from .fsio import write_atomic

        write_atomic(Path(path), self.to_yaml())

    @classmethod
    def load(cls, path: str | Path, *, recorded: bool = False) -> "TrainConfig":
        """`recorded`: the config of a run that exists (resume, its answers): see check."""
        return cls.from_dict(read_yaml(path), source=str(path), recorded=recorded)

    # Derived values the engine uses.

    def dataset_path(self, value: str | None = None) -> Path | None:
        return resolve_data_path(self.dataset if value is None else value)

    def record_fields(self):
        """The keys records are read from (a data.records.RecordFields)."""
        from .data.records import RecordFields

        return RecordFields(self.instruction_key, self.input_key, self.output_key)

    def sequence_length(self) -> int:
        """max_length, or when empty the model's context: a preset's, else GPT-2's 1024
        (a folder or file is read only when training starts)."""
        if self.max_length:
            return self.max_length
        from .model.presets import get_preset

        preset = get_preset(self.model)
        return preset.context_length if preset is not None else 1024

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"


def resolve_data_path(value: str | None) -> Path | None:
    """Where a typed data path points: '@sample/NAME' is the shipped sample data,
    '~' is the home folder. Every place a path is typed goes through here."""
    if value is None:
        return None
    value = str(value)
    if value.startswith(SAMPLE_PREFIX):
        from .paths import sample_data_dir

        return sample_data_dir() / value[len(SAMPLE_PREFIX):]
    return Path(value).expanduser()


def short_data_path(path: str | Path | None) -> str:
    """A data path as it is shown and saved: the shipped sample data as '@sample/NAME'
    (not a long site-packages path), anything else as it is."""
    if path is None:
        return ""
    text = str(path)
    if text.startswith(SAMPLE_PREFIX):
        return text
    from .paths import sample_data_dir

    try:
        inside = Path(text).resolve().relative_to(sample_data_dir().resolve())
    except (ValueError, OSError):
        return text
    return SAMPLE_PREFIX + inside.as_posix()


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from a file, with `yaml.safe_load` only: Python object tags fail."""
    from .yamlfile import read_yaml_file

    path = Path(path)
    data = read_yaml_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TuiFtError(f"{path}: expected a mapping of parameters (key: value), "
                         f"found {type(data).__name__}")
    return data


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(name: str, value: Any) -> tuple[Any, str | None]:
    """Turn a raw value (from YAML or from a text field) into the field's type.
    Returns (value, reason) where reason is None when the value is usable."""
    meta = TrainConfig.meta(name)
    kind = meta["kind"]
    if isinstance(value, str):
        stripped = value.strip()
        if meta["optional"] and stripped.lower() in ("", "none", "null", "~"):
            return None, None
    if value is None:
        return (None, None) if meta["optional"] else (value, "must be set")
    if kind is bool:
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE, None
        return value, "must be true or false"
    if kind is int:
        if isinstance(value, bool):
            return value, "must be a whole number"
        if isinstance(value, int):
            value_out = value
        elif isinstance(value, float) and value.is_integer():
            value_out = int(value)
        elif isinstance(value, str):
            try:
                value_out = int(value.strip().replace("_", ""))
            except ValueError:
                return value, "must be a whole number"
        else:
            return value, "must be a whole number"
        return _check_range(value_out, meta)
    if kind is float:
        if isinstance(value, bool):
            return value, "must be a number"
        if isinstance(value, (int, float)):
            try:
                value_out = float(value)
            except OverflowError:  # an int past float's range (10**400)
                return value, f"must be {range_text(meta)}"
        elif isinstance(value, str):
            try:
                # YAML 1.1 reads 5e-5 as a string; accept it as the number it means.
                value_out = float(value.strip())
            except ValueError:
                return value, "must be a number"
        else:
            return value, "must be a number"
        if not math.isfinite(value_out):
            return value, "must be a finite number"
        return _check_range(value_out, meta)
    if kind is tuple:
        # A list of names (lora_target_modules): YAML's list, or "a, b" / "a / b" typed.
        if isinstance(value, str):
            value = [v for v in value.replace(",", "/").replace(" ", "/").split("/") if v]
        if not isinstance(value, (list, tuple)) or not value or \
                not all(isinstance(v, str) and v.strip() for v in value):
            return value, "must be a list of names"
        return [v.strip() for v in value], None
    if kind is list:
        if isinstance(value, str):
            parts = [p for p in value.replace(",", "/").split("/") if p.strip()]
            try:
                value = [float(p) for p in parts]
            except ValueError:
                return value, "must be three numbers like 85/5/10"
        if not isinstance(value, (list, tuple)):
            return value, "must be a list of three numbers"
        from .data.split import SplitError, check_ratios

        try:
            return list(check_ratios(value)), None
        except SplitError as exc:
            return value, str(exc).removeprefix("split ratios ")
    # strings
    if not isinstance(value, str):
        return value, "must be text"
    if not value.strip():
        return value, "must not be empty"
    from .text import has_control

    if has_control(value):
        # A path or name with escape codes is never what was meant, and would be
        # sent to the terminal by every text field that shows it.
        return value, "must not contain control characters"
    if meta["choices"] and value not in meta["choices"]:
        return value, f"must be one of {', '.join(meta['choices'])}"
    return value, None


def _check_range(value, meta) -> tuple[Any, str | None]:
    low, high = meta["min"], meta["max"]
    too_low = low is not None and (value <= low if meta["exclusive_min"] else value < low)
    too_high = high is not None and (value >= high if meta["exclusive_max"] else value > high)
    if too_low or too_high:
        return value, f"must be {range_text(meta)}"
    return value, None


def range_text(meta: dict) -> str:
    """The values a numeric field takes, as a refusal says it: 'at least 1 and at most
    65536', 'greater than 0 and at most 1'."""
    low, high = meta["min"], meta["max"]
    parts = []
    if low is not None:
        parts.append(f"{'greater than' if meta['exclusive_min'] else 'at least'} "
                     f"{_number(low)}")
    if high is not None:
        parts.append(f"{'less than' if meta['exclusive_max'] else 'at most'} {_number(high)}")
    return " and ".join(parts)


def _number(value: float) -> str:
    """1000000, not 1e+06: a bound is read by someone about to type it."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def check(data: dict, *, recorded: bool = False,
          styles: Collection[str] | None = None) -> tuple[dict, list[Problem]]:
    """Coerce and check a mapping of parameters. Returns the usable values (defaults
    filled in) and every problem found: per key, then across keys.

    `recorded`: the config of a run that already exists. Rules that only steer new
    configs away from a setting that generation fits by itself at run time (an answer
    length the model's context cannot hold) do not apply: a run made before such a
    rule must still resume and answer.

    `styles`: the prompt style names there are. A caller that checks often (the
    Parameters form, on every key) reads the style files once and passes the names;
    left out, they are read here."""
    problems: list[Problem] = []
    names = TrainConfig.field_names()
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if not isinstance(key, str) or key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(Problem(str(key), raw, f"unknown parameter{hint}"))
            continue
        value, reason = coerce(key, raw)
        if reason:
            problems.append(Problem(key, raw, reason))
        else:
            values[key] = value
    defaults = {f.name: (f.default if f.default is not MISSING else f.default_factory())
                for f in fields(TrainConfig)}
    merged = {**defaults, **values}
    broken_styles: dict[str, str] = {}
    if styles is None:
        from .data.styles import load_styles

        catalog = load_styles()
        styles, broken_styles = catalog.names(), catalog.broken
    problems.extend(_cross_checks(merged, set(values), styles, recorded, broken_styles))
    return merged, problems


def _cross_checks(c: dict, given: set, styles: Collection[str], recorded: bool = False,
                  broken_styles: dict[str, str] | None = None) -> list[Problem]:
    out: list[Problem] = []
    if c["bf16"] and c["fp16"]:
        out.append(Problem("fp16", True, "bf16 and fp16 cannot both be on"))
    elif c["fp16"] and precision_problem("fp16", c["device"]):
        # Said now rather than when the run starts (the trainer refuses it too).
        out.append(Problem("fp16", True, f"needs a CUDA device (device is {c['device']}): "
                                         "use bf16 or fp32 there"))
    if c["load_best_model_at_end"]:
        if c["eval_strategy"] == "no":
            out.append(Problem("load_best_model_at_end", True,
                               "needs evaluation: set eval_strategy to steps or epoch"))
        elif c["save_strategy"] != c["eval_strategy"]:
            out.append(Problem("save_strategy", c["save_strategy"],
                               f"must match eval_strategy ({c['eval_strategy']}) when "
                               "load_best_model_at_end is on"))
        elif c["save_strategy"] == "steps" and c["save_steps"] % c["eval_steps"]:
            out.append(Problem("save_steps", c["save_steps"],
                               f"must be a multiple of eval_steps ({c['eval_steps']}) when "
                               "load_best_model_at_end is on"))
    if c["early_stopping_patience"] is not None and c["eval_strategy"] == "no":
        out.append(Problem("early_stopping_patience", c["early_stopping_patience"],
                           "needs evaluation: set eval_strategy to steps or epoch"))
    metric = c["metric_for_best_model"]
    name = metric.removeprefix("eval_")
    if name not in ("loss", "accuracy", "exact_match") and not c["compute_metrics"]:
        out.append(Problem("metric_for_best_model", metric,
                           "eval_loss (validation loss), eval_accuracy (next-token "
                           "accuracy on the validation split) and eval_exact_match are "
                           "computed; other names come from a compute_metrics file"))
    elif name == "exact_match" and not c["eval_exact_match"]:
        out.append(Problem("metric_for_best_model", metric,
                           "needs eval_exact_match: true (answers are generated then)"))
    elif name == "exact_match" and not c["greater_is_better"]:
        out.append(Problem("greater_is_better", False,
                           "an exact-match rate is better when larger: set it to true"))
    elif name == "loss" and c["greater_is_better"]:
        out.append(Problem("greater_is_better", True,
                           "a loss is better when smaller: set it to false"))
    elif name == "accuracy" and not c["greater_is_better"]:
        out.append(Problem("greater_is_better", False,
                           "an accuracy is better when larger: set it to true"))
    if c["val_dataset"] is None and c["eval_strategy"] != "no" and c["split_ratios"][1] == 0:
        out.append(Problem("split_ratios", c["split_ratios"],
                           "the validation share is 0 but eval_strategy is "
                           f"{c['eval_strategy']}: give it a share or a val_dataset"))
    if c["distributed"] == "fsdp" and c["nproc_per_node"] > 1:
        out.extend(fsdp_problems(c))
    if c["load_in_8bit"] and not c["lora_r"]:
        out.append(Problem("load_in_8bit", True, "an int8 base cannot be trained: it is "
                           "for LoRA (set lora_r); for full fine-tuning, optim: "
                           "adamw_bnb_8bit saves the optimizer's memory"))
    if not recorded:
        # Said while the config is written; whether bitsandbytes runs the operation on
        # the run's device is probed when the run starts (model/bnb.py). A run that
        # exists still answers and exports without it: neither needs 8-bit kernels.
        wanted = [key for key, on in (("optim", c["optim"] == "adamw_bnb_8bit"),
                                      ("load_in_8bit", c["load_in_8bit"])) if on]
        if wanted:
            from .model import bnb

            if not bnb.installed():
                out.extend(Problem(key, c[key], f"needs bitsandbytes: {bnb.INSTALL}")
                           for key in wanted)
    if c["lora_r"]:
        from .model.lora import LoraError, expand_targets

        try:
            expand_targets(c["lora_target_modules"])
        except LoraError as exc:
            out.append(Problem("lora_target_modules", c["lora_target_modules"],
                               str(exc).split(": ", 1)[1]))
    if c["compute_metrics"]:
        hook = resolve_data_path(c["compute_metrics"])
        if hook is None or not Path(hook).is_file():
            out.append(Problem("compute_metrics", c["compute_metrics"], "no such file"))
    out.extend(_record_key_checks(c))
    device_reason = device_problem(c["device"])
    if device_reason:
        out.append(Problem("device", c["device"], device_reason))
    if c["prompt_style"] not in styles:
        # A style file of that name that did not load says why (located), rather
        # than that the style is unknown.
        broken = (broken_styles or {}).get(c["prompt_style"])
        out.append(Problem("prompt_style", c["prompt_style"],
                           broken or f"unknown style (available: {', '.join(styles)})"))
    from .model.presets import get_preset

    preset = get_preset(c["model"])
    if preset is not None and c["max_length"] and c["max_length"] > preset.context_length:
        out.append(Problem("max_length", c["max_length"],
                           f"longer than {c['model']}'s context ({preset.context_length})"))
    if not recorded and preset is not None and c["max_new_tokens"] >= preset.context_length:
        # Prompt and answer share the context; generation lowers the value further when
        # the longest test prompt needs it, but this leaves no room for any prompt.
        out.append(Problem("max_new_tokens", c["max_new_tokens"],
                           f"leaves no room for the prompt in {c['model']}'s "
                           f"{preset.context_length}-token context: use less, e.g. "
                           f"{preset.context_length // 2}"))
    if c["max_steps"] == 0:
        out.append(Problem("max_steps", 0, "must be -1 (use epochs) or at least 1"))
    return out


def fsdp_problems(c: dict) -> list[Problem]:
    """What distributed: fsdp cannot do with these values. Checked with the config
    when it asks for several processes, and again by every rank that finds itself
    under FSDP (a plain torchrun launch need not say nproc_per_node)."""
    out = []
    if c["eval_exact_match"] or c["compute_metrics"]:
        out.append(Problem("distributed", "fsdp", "eval_exact_match and compute_metrics "
                           "generate answers, which fsdp does not do yet: use ddp"))
    if c["lora_r"]:
        out.append(Problem("distributed", "fsdp", "LoRA trains under ddp; fsdp "
                           "shards a whole model and is not needed for adapters"))
    if c["optim"] == "adamw_bnb_8bit":
        out.append(Problem("distributed", "fsdp", "bitsandbytes' 8-bit AdamW cannot "
                           "step fsdp's sharded parameters: use ddp, or adamw_torch "
                           "(fsdp shards its state already)"))
    return out


def _record_key_checks(c: dict) -> list[Problem]:
    """instruction_key, input_key and output_key name three different keys, none of
    them one a record has for another purpose."""
    out: list[Problem] = []
    seen: dict[str, str] = {}
    for name in ("instruction_key", "input_key", "output_key"):
        key = c[name]
        if key in ("id", "messages"):
            out.append(Problem(name, key, f"'{key}' is a record's own key; name the field "
                                          "that holds the text"))
        elif key in seen:
            out.append(Problem(name, key, f"the same key as {seen[key]}"))
        else:
            seen[key] = name
    return out


def field_problem(name: str, text: str) -> str | None:
    """The reason a single typed value is unusable (for validation as you type)."""
    _, reason = coerce(name, text)
    return reason
