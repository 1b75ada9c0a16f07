"""Many processes, one run, on PyTorch's own distributed engine. torchrun (or
`accelerate launch`, or tui-ft's launcher, runs/launch.py) starts one process per
device and sets RANK, WORLD_SIZE and LOCAL_RANK; each process runs the same Trainer.

How a step is shared (Hugging Face TrainingArguments meanings): the batch order is
made for the global batch (per_device_train_batch_size x world size) from the same
seed on every rank, and rank r takes every world-size-th example of each global
micro-batch, so the examples of a step are exactly those one process would see with
the global batch. Nothing is dropped: where a last global batch has fewer examples
than ranks, a rank with none runs the batch's first example with its loss weighted
zero (every rank must run the same collectives). The loss is divided by the global
count of learned tokens, so DDP's mean of gradients equals the one-process gradient.

Only rank 0 writes the run folder (metrics, status, checkpoints); the other ranks
read it. Evaluation is split the same way and its summed loss and token count are
reduced across ranks, so the validation loss equals the one-process value."""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import TrainingError

# A collective that waits longer than this ends the run (a rank that hangs, a peer
# gone without its process ending): long enough for rank 0 to write a gpt2-xl
# checkpoint while the others wait at the next step.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=20)


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, items: list) -> list:
        """This rank's share of a global micro-batch (every world-size-th item)."""
        return items[self.rank::self.world_size]


def world_from_env(environ=None) -> World:
    """The world torchrun describes in the environment (one process when unset)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return World()
    try:
        world = World(rank=int(env.get("RANK", "0")), world_size=int(env["WORLD_SIZE"]),
                      local_rank=int(env.get("LOCAL_RANK", env.get("RANK", "0"))))
    except ValueError:
        raise TrainingError(f"RANK/WORLD_SIZE/LOCAL_RANK are not whole numbers "
                            f"({env.get('RANK')!r}, {env.get('WORLD_SIZE')!r}, "
                            f"{env.get('LOCAL_RANK')!r})") from None
    if not (world.world_size >= 1 and 0 <= world.rank < world.world_size
            and world.local_rank >= 0):
        raise TrainingError(f"RANK {world.rank} does not fit WORLD_SIZE {world.world_size}")
    return world


def init(world: World, device_choice: str):
    """Join the process group and pick this rank's device: cuda:LOCAL_RANK with nccl
    where CUDA is chosen (or auto and present), else the CPU with gloo. One process:
    the usual device choice."""
    import torch
    import torch.distributed as dist

    from ..model.precision import pick_device

    if not world.distributed:
        return pick_device(device_choice)
    wants_cuda = device_choice in ("auto", "cuda") or device_choice.startswith("cuda")
    if wants_cuda and torch.cuda.is_available():
        if world.local_rank >= torch.cuda.device_count():
            raise TrainingError(f"LOCAL_RANK {world.local_rank} has no GPU (this node "
                                f"has {torch.cuda.device_count()}); lower --nproc-per-node")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device_choice not in ("auto", "cpu"):
        raise TrainingError(f"device {device_choice!r} is not available on this node")
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT, **kwargs)
    if dist.get_world_size() != world.world_size or dist.get_rank() != world.rank:
        raise TrainingError("the process group does not match RANK/WORLD_SIZE")
    return device


def finish(world: World) -> None:
    """Leave the process group (a clean exit, so torchrun sees success)."""
    if not world.distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def reduce_sum(values, world: World, device):
    """The sums over ranks of a few numbers, in one collective: a float64 tensor on
    `device` (the same values on one process)."""
    import torch

    tensor = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(())
                          for v in values])
    if world.distributed:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, world: World, device) -> bool:
    """True when the flag is true on some rank (every rank gets the same answer)."""
    if not world.distributed:
        return flag
    return bool(reduce_sum([float(flag)], world, device)[0].item() > 0)


def gather(obj, world: World) -> list | None:
    """Every rank's `obj` on rank 0 (None on the others); [obj] on one process."""
    if not world.distributed:
        return [obj]
    import torch.distributed as dist

    out = [None] * world.world_size if world.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


@contextmanager
def gradient_sync(module, enabled: bool):
    """Whether the backward passes inside average gradients over the ranks: off on
    the accumulation steps before the last of an optimizer step (DDP's no_sync,
    FSDP2's set_requires_gradient_sync), on at the last. `module` None: one process."""
    if module is None or enabled:
        yield
        return
    if hasattr(module, "no_sync"):
        with module.no_sync():
            yield
        return
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def shard_fsdp(module, blocks, world: World, device):
    """FSDP2 (fully_shard) over `module`, each of `blocks` its own unit (gathered for
    its forward and backward only), the rest (embeddings, final norm) at the root.
    The parameters become DTensors sharded over the ranks, on `device`."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world.world_size,))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(module, mesh=mesh)
    return module


class ShardedState:
    """A checkpoint's parts of an FSDP run: the weights gathered whole on rank 0 (so
    every reader, responses, export, the app, loads them as from one process) and
    the optimizer state, two thirds of the bytes, saved sharded by every rank with
    torch.distributed.checkpoint. Every method is a collective: all ranks call it."""

    OPTIMIZER_DIR = "optimizer"

    def __init__(self, module, optimizer, world: World, prefix: str = "model.") -> None:
        self.module, self.optimizer, self.world, self.prefix = module, optimizer, world, prefix

    def full_weights(self) -> dict | None:
        """The model's weights, whole, on rank 0's CPU (None on the others)."""
        from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                             get_model_state_dict)

        full = get_model_state_dict(self.module, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))
        if not self.world.is_main:
            return None
        n = len(self.prefix)
        return {k[n:] if k.startswith(self.prefix) else k: v for k, v in full.items()}

    def save_optimizer(self, folder) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        state = {"optimizer": get_optimizer_state_dict(self.module, self.optimizer)}
        dcp.save(state, checkpoint_id=str(folder))

    def load_optimizer(self, folder) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import (get_optimizer_state_dict,
                                                             set_optimizer_state_dict)

        state = {"optimizer": get_optimizer_state_dict(self.module, self.optimizer)}
        dcp.load(state, checkpoint_id=str(folder))
        set_optimizer_state_dict(self.module, self.optimizer, state["optimizer"])

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()


def all_gather(obj, world: World) -> list:
    """Every rank's `obj`, on every rank, in rank order; [obj] on one process."""
    if not world.distributed:
        return [obj]
    import torch.distributed as dist

    out = [None] * world.world_size
    dist.all_gather_object(out, obj)
    return out


def wrap_ddp(module, device):
    """DistributedDataParallel around `module` (the loss module, so the whole forward
    and loss run inside it and its gradient hooks see every use of a weight)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    # The gradients are views of DDP's communication buckets: no second copy of them.
    if device.type == "cuda":
        return DDP(module, device_ids=[device.index], output_device=device.index,
                   gradient_as_bucket_view=True)
    return DDP(module, gradient_as_bucket_view=True)
