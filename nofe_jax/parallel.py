"""Device mesh, shardings and multi-host set-up.

Everything runs as ``jax.jit`` over a 1-D ``'data'`` mesh: one CPU is the
trivial mesh, 8 TPU cores or several hosts are the same code.
"""
import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def initialize_distributed(coordinator_address: str = '', num_processes: int = 0,
                           process_id: int = -1) -> None:
    """Joins a multi-process run; a no-op for one process when nothing is given."""
    if coordinator_address:
        # CPU processes need a collectives backend to form one mesh; GPUs/TPUs ignore this.
        jax.config.update('jax_cpu_collectives_implementation', 'gloo')
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes,
                                   process_id=process_id)
    elif num_processes > 1:
        # On TPU pods and SLURM clusters JAX discovers the peers itself.
        jax.distributed.initialize()


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over all devices (Auto axis types, so plain arrays mix in)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device."""
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (batch) axis over the data axis."""
    return NamedSharding(mesh, P(DATA_AXIS))


def batch_multiple(mesh: Mesh) -> int:
    """Every global batch must be a multiple of this: each device and each process gets a share."""
    return math.lcm(mesh.devices.size, jax.process_count())


def padded_batch_size(batch_size: int, mesh: Mesh) -> int:
    """``batch_size`` rounded up to a multiple of ``batch_multiple`` (eval pads and masks the rest)."""
    if batch_size <= 0:
        raise ValueError(f'eval_batch_size={batch_size} must be positive.')
    multiple = batch_multiple(mesh)
    return -(-batch_size // multiple) * multiple


def check_batch_size(batch_size: int, mesh: Mesh, what: str = 'batch_size') -> None:
    """Fails early, naming the nearest valid sizes, when a global batch cannot be split over the mesh."""
    multiple = batch_multiple(mesh)
    if batch_size > 0 and batch_size % multiple == 0:
        return
    below = batch_size // multiple * multiple
    nearest = ' or '.join(str(n) for n in (below, below + multiple) if n > 0)
    raise ValueError(
        f'{what}={batch_size} must be a positive multiple of {multiple} (the {mesh.devices.size} '
        f'devices and {jax.process_count()} processes each take an equal share); nearest valid: '
        f'{nearest}.')


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Assembles each process's numpy slice into one global batch-sharded array."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def replicate(tree, mesh: Mesh):
    """Places a pytree (host values, or arrays every process holds alike) on every device."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x):
        # device_put cannot target other processes' devices: build the global array from
        # this process's identical copy instead.
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(x)),
                                            impl=jax.random.key_impl(x))
        host = np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) else x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)
