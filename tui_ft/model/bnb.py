"""bitsandbytes, the optional library behind the 8-bit paths (an int8 LoRA base,
8-bit AdamW): the one place that imports it and says, before a run starts, whether
it can do what the run asks on the run's device.

Which devices it serves depends on its version, not on a rule we could write down:
int8 matrix products run on the CPU from 0.46 on, 8-bit optimizers from 0.50 on, and
on CUDA from long before. So rather than trust a version table, a few-element probe
runs each operation on the device once; if it fails, the message says what, on which
device, with which version, and what would serve."""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING

from ..errors import TrainingError

INSTALL = 'pip install "tui-ft[bnb]"'
# The first releases that ran each operation on the CPU (measured, see the probes).
CPU_SINCE = {"int8": "0.46", "adamw8bit": "0.50"}
WHAT = {"int8": "load_in_8bit", "adamw8bit": "optim: adamw_bnb_8bit"}

if TYPE_CHECKING:
    import torch

_probed: dict[tuple[str, str], str | None] = {}


def installed() -> bool:
    """Whether bitsandbytes can be imported, without importing it (that takes
    seconds): for checks that run on every key press, like the Parameters form."""
    return importlib.util.find_spec("bitsandbytes") is not None


def load(op: str):
    """The bitsandbytes module, or a TrainingError that says how to install it."""
    # It logs warnings that read like faults in a run's output: at import, about
    # optional 4-bit CPU kernels we do not use; and at every int8 product of fp32
    # inputs, that they are cast to fp16 (as LLM.int8() does by design), which once
    # filled a 6-step run's output with ten identical lines. Its errors still show.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    try:
        import bitsandbytes
    except ImportError:
        raise TrainingError(f"{WHAT[op]} needs bitsandbytes: {INSTALL}") from None
    return bitsandbytes


def _probe_int8(bnb, device: torch.device) -> None:
    import torch

    layer = int8_linear(bnb, torch.nn.Linear(16, 8), device)
    x = torch.randn(2, 16, device=device, requires_grad=True)
    layer(x).sum().backward()
    if x.grad is None or not torch.isfinite(x.grad).all():
        raise RuntimeError("no gradient came back through the int8 layer")


def _probe_adamw8bit(bnb, device: torch.device) -> None:
    import torch

    # 4096 elements: smaller tensors keep 32-bit state and would prove nothing.
    p = torch.nn.Parameter(torch.ones(4096, device=device))
    opt = bnb.optim.AdamW8bit([p], lr=1e-3)
    p.grad = torch.full_like(p, 0.5)
    opt.step()
    if opt.state[p]["state1"].dtype != torch.uint8 or not torch.isfinite(p).all():
        raise RuntimeError("the step did not keep 8-bit state")


def require(op: str, device: torch.device | str):
    """bitsandbytes, once it has shown it can run `op` ("int8" or "adamw8bit") on
    `device`; else a TrainingError that names the operation, the device, the version
    and the way out. The probe runs once per process and device type."""
    import torch

    device = torch.device(device)
    bnb = load(op)
    key = (op, device.type)
    if key not in _probed:
        try:
            (_probe_int8 if op == "int8" else _probe_adamw8bit)(bnb, device)
            _probed[key] = None
        except Exception as exc:  # any failure of the library's kernels says the same
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() \
                else type(exc).__name__
            _probed[key] = reason
    reason = _probed[key]
    if reason is not None:
        where = (f"bitsandbytes {getattr(bnb, '__version__', '?')} cannot run it on "
                 f"{device.type} ({reason})")
        hint = (f"on the CPU it needs bitsandbytes >= {CPU_SINCE[op]} ({INSTALL} "
                "--upgrade)" if device.type == "cpu" else "train on a CUDA device")
        raise TrainingError(f"{WHAT[op]}: {where}; {hint}")
    return bnb


def int8_linear(bnb, linear: torch.nn.Linear, device: torch.device):
    """`linear` as bitsandbytes' Linear8bitLt on `device` (LLM.int8(): int8 weights
    with a scale per row, outlier features in 16 bits), frozen. Moving it to the
    device is what quantizes it."""
    import torch

    q = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features,
                            bias=linear.bias is not None, has_fp16_weights=False,
                            threshold=6.0)
    q.weight = bnb.nn.Int8Params(linear.weight.data.to(torch.float16).cpu(),
                                 requires_grad=False, has_fp16_weights=False)
    if linear.bias is not None:
        q.bias = torch.nn.Parameter(linear.bias.data.float().cpu(), requires_grad=False)
    return q.to(device)
