"""Device mesh, shardings and multi-host set-up.

Everything runs as ``jax.jit`` over a 1-D ``'data'`` mesh: one CPU is the
trivial mesh, 8 TPU cores or several hosts are the same code.
"""
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


def check_batch_size(batch_size: int, mesh: Mesh, what: str = 'batch_size') -> None:
    """Fails early when a global batch cannot be split evenly over the mesh."""
    num_devices = mesh.devices.size
    if batch_size % num_devices or batch_size % jax.process_count():
        raise ValueError(
            f'{what}={batch_size} must be divisible by the number of devices '
            f'({num_devices}) and processes ({jax.process_count()}); set '
            f'--config.{what} to a multiple of {num_devices}.')


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
