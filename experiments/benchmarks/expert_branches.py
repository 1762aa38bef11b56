r"""Train-step time of K vmapped expert branches (stacked params) vs a Python loop over K branches.

  python -m experiments.benchmarks.expert_branches --model=alexnet_c100   # K = 2, 5, 10, 20, 50
  python -m experiments.benchmarks.expert_branches --model=nin_c100 --num_experts=10 --json_out=/tmp/nin.json

Both variants run the same jitted step on fixed random trunk features [B, *trunk_out]: forward
through K copies of the model's expert branch (train mode), the NofE's one softmax over the K * c_max
gathered class logits, backward, and a plain SGD update of the branch parameters (plus any
batch_stats). (a) is `ExpertBranches` (one `nn.vmap` module, params stacked on a leading K axis);
(b) is a Python loop over K separately parameterised modules of the same branch class, which XLA
sees as K independent sub-graphs. The trunk-feature shape comes from `jax.eval_shape` of the
model's NofE trunk on the registry input shape; the parameter-free `pre_branch` (AlexNet-C100's
LRN) is left out, as it is the same for both.

Both are compiled first, then timed in alternating rounds (`iterations` steps per round, each
round ended by `block_until_ready`) so that background load hits both alike; the report is the
median ms/step over rounds and the ratio loop / vmapped. Before timing, the loss of both is
checked to agree when the loop's per-branch params are copies of the stacked ones.

Absolute times are only meaningful on the machine that measured them; docs/development.md has the
figures with their commands (on CPU, vmapped beats the loop since the stacked branches'
convolutions are lowered as patches + one batched matmul, `models/layers.py`).
Prints a table (one row per K) and one JSON line {'rows': [...]}; `--json_out` also writes that
JSON to a file.
"""
import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import benchmarks
from nofe_jax.models import registry
from nofe_jax.models.experts import ExpertBranches, gather_class_logits

Variables = dict[str, Any]
Step = Callable[[Any, jax.Array, jax.Array], tuple[Any, jax.Array]]

_LR = 1e-3


def trunk_feature_shape(model: str) -> tuple[int, ...]:
    """Per-image trunk output shape of `model`'s NofE trunk (shape-only, nothing compiled)."""
    spec = registry.get_model_spec(model)
    trunk = spec.trunk(**spec.nofe_trunk_defaults)
    x = jax.ShapeDtypeStruct((1, *spec.input_shape), jnp.float32)
    out = jax.eval_shape(lambda x: trunk.init_with_output(jax.random.key(0), x, train=False)[0], x)
    return tuple(out.shape[1:])


def _loss_and_update(apply: Callable[[Variables, jax.Array], tuple[jax.Array, Variables]]) -> Step:
    """Jitted SGD step on `variables` for `apply(variables, features) -> ([B, K, c_max], new state)`."""

    def loss_fn(params, rest, features, labels):
        branch_logits, new_rest = apply({'params': params, **rest}, features)  # [B, K, c_max]
        batch, k, c_max = branch_logits.shape
        logits = gather_class_logits(branch_logits.astype(jnp.float32), jnp.arange(k * c_max))
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new_rest

    def step(variables, features, labels):
        params, rest = variables['params'], {c: v for c, v in variables.items() if c != 'params'}
        (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, features, labels)
        params = jax.tree.map(lambda p, g: p - _LR * g, params, grads)
        return {'params': params, **rest, **new_rest}, loss

    return jax.jit(step, donate_argnums=0)


def vmapped_step(branch: nn.Module, num_experts: int) -> Step:
    """Train step of `ExpertBranches(branch, K)`; variables as `ExpertBranches.init` gives them."""
    experts = ExpertBranches(branch, num_experts)

    def apply(variables, features):
        mutable = [c for c in variables if c != 'params']
        logits, new_rest = experts.apply(variables, features, train=True, mutable=mutable)
        return logits, dict(new_rest)

    return _loss_and_update(apply)


def loop_step(branch: nn.Module, num_experts: int) -> Step:
    """Train step of K separate `branch` modules; variables {collection: {'branch_k': ...}}."""

    def apply(variables, features):
        outs, new_rest = [], {}
        for k in range(num_experts):
            mine = {c: v[f'branch_{k}'] for c, v in variables.items()}
            mutable = [c for c in mine if c != 'params']
            out, state = branch.apply(mine, features, train=True, mutable=mutable)
            outs.append(out)
            for c, v in state.items():
                new_rest.setdefault(c, {})[f'branch_{k}'] = v
        return jnp.stack(outs, axis=1), new_rest

    return _loss_and_update(apply)


def unstack(stacked: Variables, num_experts: int) -> Variables:
    """Loop-layout copies {collection: {'branch_k': tree}} of `ExpertBranches` variables [K, ...]."""
    return {c: {f'branch_{k}': jax.tree.map(lambda a: a[k], v['branch']) for k in range(num_experts)}
            for c, v in stacked.items()}


def _time(step: Step, variables: Any, features: jax.Array, labels: jax.Array,
          iterations: int) -> tuple[Any, float]:
    """(new variables, ms per step) over `iterations` steps, synchronised at the end."""
    start = time.perf_counter()
    for _ in range(iterations):
        variables, loss = step(variables, features, labels)
    jax.block_until_ready((variables, loss))
    return variables, 1e3 * (time.perf_counter() - start) / iterations


def run_benchmark(model: str = 'alexnet_c100', num_experts: int = 10, c_max: int = 10,
                  batch_size: int = 100, iterations: int = 20, rounds: int = 5,
                  seed: int = 0) -> dict[str, Any]:
    """Median ms/step of both variants and the equivalence check, as a JSON-ready dict."""
    spec = registry.get_model_spec(model)
    if spec.branch is None:
        raise ValueError(f'model {model!r} has no expert branch')
    branch = spec.branch(c_max)
    feature_shape = trunk_feature_shape(model)
    rng = np.random.default_rng(seed)
    features = jnp.asarray(rng.normal(size=(batch_size, *feature_shape)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, num_experts * c_max, size=batch_size), jnp.int32)

    experts = ExpertBranches(branch, num_experts)
    stacked = jax.jit(lambda f: experts.init(jax.random.key(seed), f, train=False))(features)
    stacked = jax.tree.map(jnp.asarray, dict(stacked))
    steps = {'vmapped': vmapped_step(branch, num_experts), 'loop': loop_step(branch, num_experts)}
    variables = {'vmapped': stacked, 'loop': unstack(stacked, num_experts)}

    # Equivalence (and compilation): one step each from identical parameters.
    losses = {}
    for name, step in steps.items():
        variables[name], loss = step(jax.tree.map(jnp.copy, variables[name]), features, labels)
        losses[name] = float(loss)
    loss_diff = abs(losses['vmapped'] - losses['loop'])
    same_loss = loss_diff <= 1e-5 * max(1.0, abs(losses['vmapped']))

    times = {name: [] for name in steps}
    for _ in range(rounds):  # alternate, so load changes hit both variants alike
        for name, step in steps.items():
            variables[name], ms = _time(step, variables[name], features, labels, iterations)
            times[name].append(ms)
    vmapped_ms, loop_ms = (statistics.median(times[n]) for n in ('vmapped', 'loop'))
    return {
        'model': model,
        'num_experts': num_experts,
        'c_max': c_max,
        'batch_size': batch_size,
        'feature_shape': list(feature_shape),
        'backend': jax.default_backend(),
        'device': str(jax.devices()[0].device_kind),
        'iterations': iterations,
        'rounds': rounds,
        'vmapped_ms': vmapped_ms,
        'loop_ms': loop_ms,
        'loop_over_vmapped': loop_ms / vmapped_ms,
        'loss_vmapped': losses['vmapped'],
        'loss_loop': losses['loop'],
        'same_loss': bool(same_loss),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of `run_benchmark` results, one row per K."""
    first = rows[0]
    lines = [f"{first['model']}: c_max={first['c_max']} B={first['batch_size']} "
             f"features={tuple(first['feature_shape'])} on {first['backend']} ({first['device']})",
             '| K | vmapped ms/step | loop ms/step | loop / vmapped | same loss |',
             '|---:|---:|---:|---:|---|']
    lines += [f"| {r['num_experts']} | {r['vmapped_ms']:.1f} | {r['loop_ms']:.1f} | "
              f"{r['loop_over_vmapped']:.2f} | {'PASS' if r['same_loss'] else 'FAIL'} |" for r in rows]
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses `argv`, runs the benchmark for every K, prints the table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--model', default='alexnet_c100', choices=sorted(
        name for name, spec in registry.MODELS.items() if spec.branch is not None))
    parser.add_argument('--num_experts', default='2,5,10,20,50', help='comma-separated K values')
    parser.add_argument('--c_max', type=int, default=10)
    parser.add_argument('--batch_size', type=int, default=100)
    parser.add_argument('--iterations', type=int, default=20, help='timed steps per round')
    parser.add_argument('--rounds', type=int, default=5, help='alternating timed rounds per variant')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json_out', default=None, help='also write the JSON result here')
    args = parser.parse_args(argv)
    rows = [run_benchmark(args.model, int(k), args.c_max, args.batch_size, args.iterations,
                          args.rounds, args.seed) for k in args.num_experts.split(',')]
    result = {'rows': rows}
    return benchmarks.report(format_table(rows), result, args.json_out)


if __name__ == '__main__':
    main()
