"""What a run leaves behind: messages and progress lines (``log``), metrics.jsonl, TensorBoard
events, plots and summary.json. Only process 0 writes or prints."""
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np


def is_writer() -> bool:
    """True on the process that writes files (process 0)."""
    return jax.process_index() == 0


# Every message of a run goes through this one logger, printed by process 0 only. It is the
# standard library's, not absl's handler: absl formats for stderr with a per-line prefix, and
# experiments.run lowers absl's verbosity to WARNING to keep orbax's INFO lines off the terminal;
# ours are the run's own output, plain lines on stdout.
LOGGER_NAME = 'nofe_jax'


class _ProcessZero(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return is_writer()


class _CurrentStdout(logging.StreamHandler):
    """Writes to ``sys.stdout`` as it is when a message is written (a redirect, pytest's
    capture), flushing each line."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        del value


def logger() -> logging.Logger:
    """The run's logger: INFO and above, as plain lines on stdout, on process 0 only."""
    found = logging.getLogger(LOGGER_NAME)
    if not found.handlers:
        handler = _CurrentStdout()
        handler.setFormatter(logging.Formatter('%(message)s'))
        found.addHandler(handler)
        found.addFilter(_ProcessZero())
        found.setLevel(logging.INFO)
        found.propagate = False  # absl's root handler would print it again
    return found


def log(message: str) -> None:
    """Prints ``message`` (process 0 only)."""
    logger().info(message)


def json_safe(obj):
    """``obj`` with NaN/Inf floats as None (strict JSON has no NaN; e.g. an accuracy over 0 examples)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str, obj) -> None:
    """Writes ``obj`` as indented strict JSON atomically (temp file + rename)."""
    if not is_writer():
        return
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        json.dump(json_safe(obj), f, indent=2, default=_to_builtin, allow_nan=False)
        f.write('\n')
    os.replace(tmp, path)


def _to_builtin(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f'{type(value).__name__} is not JSON serialisable')


RUNS_FILE = 'runs.json'


def read_runs(workdir: str) -> list[dict]:
    """Every process run of ``workdir`` so far: ``started`` (UTC) and ``wall_time_s`` each."""
    path = os.path.join(workdir, RUNS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


class RunLog:
    """Appends this process's run to ``runs.json`` and keeps its wall time there up to date,
    so a resumed run's summary can count the time of the runs that were cut short."""

    def __init__(self, workdir: str, start: float | None = None):
        """``start``: ``time.perf_counter()`` when this process's run began (default: now)."""
        self._path = os.path.join(workdir, RUNS_FILE)
        self._start = time.perf_counter() if start is None else start
        started = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
        self._runs = read_runs(workdir) + [{'started': started, 'wall_time_s': 0.0}]
        self.update()

    @property
    def elapsed_s(self) -> float:
        """The wall time of this run until now."""
        return time.perf_counter() - self._start

    def update(self) -> float:
        """Records the wall time of this run until now, and returns it."""
        self._runs[-1]['wall_time_s'] = elapsed = self.elapsed_s
        write_json(self._path, self._runs)
        return elapsed

    @property
    def total_wall_time_s(self) -> float:
        """The wall time of every run of the workdir, this one until its last update (so after an
        ``update``, at least the time it returned)."""
        return sum(run['wall_time_s'] for run in self._runs)

    @property
    def restarts(self) -> int:
        """How many runs of the workdir came before this one."""
        return len(self._runs) - 1


# Our own writer and progress lines, not clu's metric_writers / periodic_actions: clu is not a
# dependency (its last release, 0.0.12, predates our pinned jax 0.10.2), and these do the same job
# in a few lines: JSON lines + TensorBoard on process 0, and a rate that leaves out eval time.
class MetricWriter:
    """Scalars to ``metrics.jsonl`` (one object per call) and TensorBoard events; with a
    ``run_log``, the run's wall time to ``runs.json`` at every call."""

    def __init__(self, workdir: str, run_log: RunLog | None = None):
        self._active = is_writer()
        self._run_log = run_log
        if not self._active:
            return
        from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
        self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

    def write(self, step: int, scalars: Mapping[str, float], **context) -> None:
        """Records ``scalars`` at ``step``; ``context`` (stage, epoch) goes to JSON only."""
        if not self._active:
            return
        record = {'step': int(step), **context, **{k: float(v) for k, v in scalars.items()}}
        self._jsonl.write(json.dumps(json_safe(record), allow_nan=False) + '\n')
        self._jsonl.flush()
        prefix = f"{context['stage']}/" if 'stage' in context else ''
        for name, value in scalars.items():
            if math.isfinite(float(value)):
                self._tb.add_scalar(prefix + name, float(value), int(step))
        self._tb.flush()
        self._log_time()

    def close(self) -> None:
        """Flushes and closes both files; records the run's final wall time."""
        if self._active:
            self._jsonl.close()
            self._tb.close()
            self._log_time()

    def _log_time(self) -> None:
        if self._run_log is not None:
            self._run_log.update()


class Progress:
    """One terminal line per log step of a stage: epoch, step, loss, images/s and the run's ETA.

    The rate counts training time only: the compilation of the first step (``start_clock``) and
    the time spent evaluating, in hooks and saving (``exclude``) are taken out, so the rate does
    not jump after an eval. The ETA covers the rest of this stage and ``later_examples``, the
    examples the run's stages still to come will train on.
    """

    def __init__(self, total_steps: int, batch_size: int, stage: str, later_examples: int = 0):
        self._total, self._batch, self._stage = total_steps, batch_size, stage
        self._later = later_examples
        self._last_time = time.perf_counter()
        self._last_step = None
        self._excluded = 0.0  # seconds not spent training since the last report

    def start_clock(self, step: int) -> None:
        """The rate is measured from ``step`` on (call it once the first step has finished)."""
        self._last_step, self._last_time, self._excluded = step, time.perf_counter(), 0.0

    def exclude(self, seconds: float) -> None:
        """``seconds`` since the last report were not spent training (eval, hooks, saving)."""
        self._excluded += seconds

    def report(self, step: int, epoch: float, scalars: Mapping[str, float]) -> float:
        """Prints the line and returns the measured images/s since the last report (NaN for a
        period that held the compilation or no step)."""
        now = time.perf_counter()
        trained = max(now - self._last_time - self._excluded, 1e-9)
        steps = step - self._last_step if self._last_step is not None else 0
        rate = steps * self._batch / trained if steps > 0 else float('nan')
        remaining = (self._total - step) * self._batch + self._later
        eta = remaining / rate if rate == rate and rate > 0 else float('nan')
        self._last_step, self._last_time, self._excluded = step, now, 0.0
        extra = ' '.join(f'{k}={v:.4f}' for k, v in scalars.items() if k != 'loss')
        log(f'[{self._stage}] epoch {epoch:6.2f} step {step:7d}/{self._total} '
            f'loss {scalars.get("loss", float("nan")):.4f} {extra} '
            f'{rate:8.1f} img/s ETA {_format_seconds(eta)}')
        return rate


def _format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return '--:--'
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}:{minutes:02d}:{secs:02d}' if hours else f'{minutes:02d}:{secs:02d}'


def read_metrics(workdir: str) -> list[dict]:
    """All records of ``metrics.jsonl``."""
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f if line.strip()]


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on servers)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


@dataclasses.dataclass
class CurveSeries:
    """One stage's curves on the run's epoch axis: its epochs shifted by ``offset``, the epochs
    of the stages before it."""
    stage: str
    offset: float
    train_loss: tuple[list[float], list[float]]  # (run epoch, mean training loss) per log
    test_loss: tuple[list[float], list[float]]  # (run epoch, test loss) per evaluation
    test_top1: tuple[list[float], list[float]]  # (run epoch, test top-1) per evaluation


def _points(rows: Sequence[dict], key: str, offset: float) -> tuple[list[float], list[float]]:
    # A resumed run logs again the steps after its checkpoint: the last record of a step wins.
    by_step = {r['step']: r for r in rows if r.get(key) is not None}
    ordered = [by_step[step] for step in sorted(by_step)]
    return [offset + r['epoch'] for r in ordered], [float(r[key]) for r in ordered]


def learning_curve_series(records: Sequence[dict]) -> list[CurveSeries]:
    """The stages of ``records`` (metrics.jsonl) in the order they ran, one after another: each
    stage's epochs are offset by the summed lengths (last logged epoch) of the stages before."""
    stages = list(dict.fromkeys(r.get('stage', 'train') for r in records))
    series, offset = [], 0.0
    for stage in stages:
        rows = [r for r in records if r.get('stage', 'train') == stage and 'epoch' in r]
        series.append(CurveSeries(stage, offset, _points(rows, 'train/loss', offset),
                                  _points(rows, 'test/loss', offset),
                                  _points(rows, 'test/top1', offset)))
        offset += max((r['epoch'] for r in rows), default=0.0)
    return series


def plot_learning_curves(workdir: str, path: str, top1_labels: Mapping[str, str]) -> None:
    """PNG of the losses (log scale) and test top-1 against the run's epochs, one panel each: the
    stages one after another, a labelled line where each begins, evaluations marked.

    ``top1_labels`` says what each stage's top-1 measures (a generalist's is K-way, over
    specialties), for the legend.
    """
    if not is_writer():
        return
    plt = _pyplot()
    series = learning_curve_series(read_metrics(workdir))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, s in enumerate(series):
        color = f'C{i % 10}'
        if s.train_loss[0]:  # a stage of no steps (DMDE's Eq. 7 alone) has only its evaluation
            ax_loss.plot(*s.train_loss, color=color, label=f'{s.stage}: train')
        if s.test_loss[0]:
            ax_loss.plot(*s.test_loss, 'o--', color=color, markersize=4, label=f'{s.stage}: test')
        ax_acc.plot(*s.test_top1, 'o-', color=color, markersize=4,
                    label=f'{s.stage}: {top1_labels.get(s.stage, "top-1")}')
    for i, s in enumerate(series):  # each stage named where it begins; a line where one ends
        for ax in (ax_loss, ax_acc):
            if i:
                ax.axvline(s.offset, color='grey', linestyle=':', linewidth=1)
            ax.annotate(s.stage, (s.offset, 1.0), xycoords=('data', 'axes fraction'),
                        xytext=(3, -12), textcoords='offset points', fontsize=8, color='grey')
    losses = [v for s in series for v in (*s.train_loss[1], *s.test_loss[1])]
    if losses and min(losses) > 0:
        ax_loss.set_yscale('log')
    ax_loss.set(xlabel='epoch (stages one after another)', ylabel='loss', title='loss')
    ax_acc.set(xlabel='epoch (stages one after another)', ylabel='test accuracy (see legend)',
               title='test accuracy (markers: evaluations)')
    for ax in (ax_loss, ax_acc):
        ax.set_xlim(left=0.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


_MAX_LABELLED_CLASSES = 200  # beyond that, class names and boxes are unreadable


def plot_specialties(path: str, assignment: np.ndarray, class_names, num_experts: int,
                     counts: np.ndarray | None) -> None:
    """PNG of a partition: classes grouped by specialty over the generalist's C x K counts."""
    if not is_writer():
        return
    plt = _pyplot()
    k = num_experts
    order = np.argsort(assignment, kind='stable')
    names = [class_names[c] for c in order]
    matrix = np.asarray(counts)[order] if counts is not None else np.eye(k)[assignment[order]]
    labelled = len(order) <= _MAX_LABELLED_CLASSES
    height = max(4.0, 0.14 * len(order) + 1.5) if labelled else 12.0
    fig, ax = plt.subplots(figsize=(2.0 + 0.45 * min(k, 40), height))
    image = ax.imshow(matrix, aspect='auto', cmap='viridis', interpolation='nearest')
    ax.set_xlabel('specialty (generalist prediction)')
    if labelled:
        ax.set_yticks(range(len(order)), names, fontsize=max(4, min(9, 500 // len(order))))
        ax.set_xticks(range(k))
        for c, row in enumerate(assignment[order]):
            ax.add_patch(plt.Rectangle((row - 0.5, c - 0.5), 1, 1, fill=False,
                                       edgecolor='red', linewidth=0.8))
    else:
        ax.set_ylabel('classes, grouped by specialty (names in specialties.json)')
    ax.set_title('specialties (red: assigned)\nover the generalist\'s counts on S', fontsize=9)
    fig.colorbar(image, ax=ax, label='images of the class predicted in the specialty')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_group_membership(path: str, groups: Sequence[np.ndarray], class_names) -> None:
    """PNG of overlapping task groups: a classes x groups membership matrix, classes in the order
    of their first group (so windows over the ontology show as a staircase)."""
    member = np.zeros((len(class_names), len(groups)))
    for g, group in enumerate(groups):
        member[np.asarray(group, dtype=np.int64), g] = 1.0
    shared = int(np.sum(member.sum(axis=1) >= 2))
    plot_class_group_matrix(path, member, class_names,
                            f'{len(groups)} task groups; {shared} of {len(class_names)} classes in two or more',
                            cmap='Greys', vmax=1.0)


def plot_class_group_matrix(path: str, values: np.ndarray, class_names, title: str,
                            cmap: str = 'viridis', vmax: float | None = None) -> None:
    """PNG of a classes x groups matrix (membership, mean gate weight), classes ordered by the
    group where their value is largest."""
    if not is_writer():
        return
    plt = _pyplot()
    num_classes, num_groups = values.shape
    order = np.argsort(np.argmax(values, axis=1), kind='stable')
    labelled = num_classes <= _MAX_LABELLED_CLASSES
    height = max(4.0, 0.14 * num_classes + 1.5) if labelled else 12.0
    fig, ax = plt.subplots(figsize=(2.0 + 0.45 * min(num_groups, 40), height))
    image = ax.imshow(values[order], aspect='auto', cmap=cmap, interpolation='nearest', vmin=0,
                      vmax=vmax if vmax is not None else max(float(values.max()), 1e-9))
    ax.set_xlabel('task group')
    if labelled:
        ax.set_yticks(range(num_classes), [class_names[c] for c in order],
                      fontsize=max(4, min(9, 500 // num_classes)))
    else:
        ax.set_ylabel('classes (names in groups.json)')
    if vmax is None:
        fig.colorbar(image, ax=ax, fraction=0.05)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_group_similarities(path: str, similarities: Sequence[np.ndarray],
                            group_names: Sequence[Sequence[str]]) -> None:
    """PNG of each task group's visual similarity between its classes (one heatmap per group)."""
    if not is_writer() or not similarities:
        return
    plt = _pyplot()
    columns = min(4, len(similarities))
    rows = -(-len(similarities) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(similarities):]:
        ax.axis('off')
    for g, (ax, sim, names) in enumerate(zip(axes.flat, similarities, group_names)):
        ax.imshow(sim, cmap='viridis', interpolation='nearest', vmin=0.0, vmax=max(float(np.max(sim)), 1e-9))
        ax.set_title(f'group {g} ({len(names)} classes)', fontsize=8)
        if len(names) <= 20:
            ax.set_yticks(range(len(names)), names, fontsize=5)
            ax.set_xticks([])
        else:
            ax.axis('off')
    fig.suptitle('visual similarity S within each task group (last update)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
