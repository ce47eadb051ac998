"""Where a training step's time goes: forward and backward time, MACs, parameters and activation memory
per module (``--bench-modules``, ``bench profile CASE``; docs/modules.md).

Which modules. The model itself (name ``""``, depth 0), its top-level children (depth 1) and, down to the
chosen depth (default 2), their children. An ``nn.Sequential`` *below* the top level and any
``nn.ModuleList``/``nn.ModuleDict`` group blocks without being a stage of their own: they are not
listed and their children take their depth, so that depth 2 of a ViT is ``encoder.layers.encoder_layer_N``
and of a ResNet ``layer1.0`` (top-level Sequentials such as ``layer1`` or the deformable stem ``conv1``
are stages and are listed). A listed module with no listed descendant is a *leaf*: the leaves
partition what the breakdown covers, and the coverage is their sum.

How it is timed, and why this way. Not with ``torch.profiler``: on a CPU its per-op bookkeeping costs
microseconds per op, as much as the small ops of these models at the smoke profile's batch of 2, and
attributing backward ops to modules needs its sequence-number linkage anyway. Instead:

* Forward: a forward pre-hook and a forward hook on each listed module mark the start and end of every
  call (a module called several times, as the triplet loss does, sums its calls). Marks come from the
  device's :meth:`~bench.measure.devices.Device.stopwatch`: ``perf_counter`` on the CPU, and on CUDA an event
  recorded on the current stream without synchronising, so the GPU's queue overlaps launches as it does
  unmeasured and the events measure stream time, kernels included. Everything is read after the
  phase's own end-of-phase synchronisation.
* Backward: no module backward hooks. ``register_full_backward_hook`` wraps a module's inputs and outputs
  in an identity autograd Function, and torchvision's ``ReLU(inplace=True)`` then fails on the next
  module's output ("a view ... is being modified inplace"). Instead autograd's own numbering: it numbers
  the nodes it creates in creation order, so the forward hooks read the counter before and after each
  call, and the nodes numbered in between are the call's (plus the AccumulateGrad nodes they feed: its
  parameters' gradient accumulation). Between the timed forward and backward phases the graph is walked
  once from the loss, and every node gets a pre- and a post-hook that mark its start and end. A call's
  backward time is from the first of its nodes starting to the last finishing; CUDA work is attributed
  because the marks are events on the stream the node runs on.
* The whole forward and backward phase are timed in the same rounds (``Device.timed``, as the phases of
  the ordinary rounds), and ``modules_coverage`` is the leaves' medians summed over the phase's median;
  ``modules_coverage_per_round`` the median over rounds of the same ratio taken within each round,
  which a busy machine's bursts (landing in a different module each round) do not pull down.
  What it leaves out: the loss, code a parent runs between its children (ViT's class token and position
  embedding), the autograd engine's scheduling between modules, and the optimizer step (not broken down).

Rounds. The breakdown runs in rounds of its own after the timed ones (one untimed instrumented round
first), on the same batch: a training step whose forward and backward are instrumented and timed, then
the optimizer step untimed. The hooks cost time, so the breakdown's own phases are slower than the
record's: ``modules_overhead`` is their median over the ordinary rounds' median, per phase.

Static parts, measured once: parameters (each module's own and its descendants'; parameters a parent
holds outside its listed children, such as ViT's class token, appear in the parent only); forward MACs
of one image at the run's input (fvcore through bench/measure/flops.py's handles, so deformable convolution and
attention count; the record's own ``macs_forward`` is at the native input); and activation memory: the
bytes of the tensors autograd saves for backward while the module's forward runs
(``torch.autograd.graph.saved_tensors_hooks``; each storage counted once per module, parameters and
buffers excluded; a tensor two siblings save counts for both, and once for their parent), measured in a
separate forward pass since the hook slows ops down.

Blind spots: work on other threads or CUDA streams than the current one; a module whose forward runs
nothing autograd records (an Identity, a view of its input) shows zero backward time; siblings whose
backward interleave (parallel branches) overlap, and the coverage can then exceed 1; with
``--bench-compile`` the breakdown runs the eager module (hooks would split the compiled graph).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bench.record.options import OPTIONS
from bench.record.schema import quantity

if TYPE_CHECKING:
    from bench.measure.devices import Device, Stopwatch

#: Autograd's number for AccumulateGrad nodes (UINT64_MAX: they run as soon as a gradient is ready).
_ACCUMULATE = 2**64 - 1
#: Containers that group blocks without being a stage (below the top level, for Sequential).
_GROUPS = (nn.ModuleList, nn.ModuleDict)
DEFAULT_DEPTH: int = OPTIONS["bench_modules_depth"].default
PHASES = ("forward", "backward")


def _sequence_nr() -> int:
    """The number autograd gives the next node it creates on this thread."""
    return int(torch._C._autograd._get_sequence_nr())


@dataclass(frozen=True)
class Entry:
    name: str
    module: nn.Module
    depth: int
    leaf: bool


def select_modules(model: nn.Module, depth: int = DEFAULT_DEPTH) -> list[Entry]:
    """The model (``""``) and its modules down to ``depth``, in model order (see the module docstring)."""
    if depth < 1:
        raise ValueError(f"--bench-modules-depth {depth}: must be at least 1")
    found: list[tuple[str, nn.Module, int]] = [("", model, 0)]
    seen = {id(model)}

    def visit(prefix: str, module: nn.Module, level: int) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            if id(child) in seen:
                continue  # a module registered twice is listed once, under its first name
            seen.add(id(child))
            if isinstance(child, _GROUPS) or (level > 1 and isinstance(child, nn.Sequential)):
                visit(name, child, level)
                continue
            found.append((name, child, level))
            if level < depth:
                visit(name, child, level + 1)

    visit("", model, 1)
    names = [n for n, _, _ in found]

    def has_listed_descendant(name: str) -> bool:
        prefix = f"{name}." if name else ""
        return any(other != name and other.startswith(prefix) for other in names)

    return [Entry(n, m, d, not has_listed_descendant(n)) for n, m, d in found]


# ------------------------------------------------------------------------------------------------------
# one instrumented round
# ------------------------------------------------------------------------------------------------------


@dataclass
class _Call:
    """One forward call of one module: its marks and the autograd numbers of the nodes it created."""

    start: Any
    lo: int
    end: Any = None
    hi: int = 0


class _Round:
    """Hooks for one round. Module hooks only mark each call's start and end and read autograd's node
    counter, so that the forward pass stays cheap; between the timed forward and backward phases
    :meth:`hook_graph` walks the graph once from the loss and hooks every node's start and end."""

    def __init__(self, entries: Sequence[Entry], watch: Stopwatch) -> None:
        self.entries = entries
        self.watch = watch
        self.calls: list[list[_Call]] = [[] for _ in entries]
        self.open: list[list[_Call]] = [[] for _ in entries]
        self.seqs: list[int] = []  # sorted autograd numbers of the graph's nodes (AccumulateGrad aside)
        self.order: list[int] = []  # their node indices, in that order
        #: Per AccumulateGrad node: its index and the numbers of the nodes that feed it.
        self.accumulate: list[tuple[int, list[int]]] = []
        self.pre: list[Any] = []
        self.post: list[Any] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        handles = []
        try:
            for i, entry in enumerate(self.entries):
                handles.append(entry.module.register_forward_pre_hook(self._pre_hook(i)))
                handles.append(entry.module.register_forward_hook(self._post_hook(i)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _pre_hook(self, i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            self.open[i].append(_Call(self.watch.mark(), _sequence_nr()))
        return hook

    def _post_hook(self, i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            call = self.open[i].pop()
            call.end, call.hi = self.watch.mark(), _sequence_nr()
            self.calls[i].append(call)
        return hook

    def hook_graph(self, loss: torch.Tensor) -> None:
        """Give every node of ``loss``'s graph a pre-hook and a post-hook that mark its backward. Walking
        from the loss finds nodes that a later in-place op rebased (a BatchNorm's output that an in-place
        ReLU overwrote is still reached through the ReLU's node)."""
        root = loss.grad_fn
        if root is None:
            return
        index: dict[Any, int] = {}
        numbered: list[tuple[int, int]] = []
        feeders: dict[int, list[int]] = {}
        stack = [root]
        while stack:
            node = stack.pop()
            if node in index:
                continue
            i = index[node] = self._hook(node)
            seq = node._sequence_nr()
            numbered.append((seq, i))
            for nxt, _ in node.next_functions:
                if nxt is None:
                    continue
                if nxt._sequence_nr() == _ACCUMULATE:
                    if nxt not in index:
                        index[nxt] = self._hook(nxt)
                    feeders.setdefault(index[nxt], []).append(seq)
                else:
                    stack.append(nxt)
        numbered.sort()
        self.seqs = [seq for seq, _ in numbered]
        self.order = [i for _, i in numbered]
        self.accumulate = list(feeders.items())

    def _hook(self, node: Any) -> int:
        i = len(self.pre)
        self.pre.append(None)
        self.post.append(None)

        def pre(grad_outputs: Any) -> None:
            if self.pre[i] is None:
                self.pre[i] = self.watch.mark()

        def post(grad_inputs: Any, grad_outputs: Any) -> None:
            self.post[i] = self.watch.mark()

        node.register_prehook(pre)
        node.register_hook(post)
        return i

    def _nodes(self, call: _Call) -> list[int]:
        """The nodes a forward call created (numbered in its range) and the AccumulateGrad nodes they feed."""
        first, last = bisect.bisect_left(self.seqs, call.lo), bisect.bisect_left(self.seqs, call.hi)
        nodes = self.order[first:last]
        nodes += [i for i, feeding in self.accumulate if any(call.lo <= seq < call.hi for seq in feeding)]
        return nodes

    def read(self, origin: Any) -> dict[str, list[float]]:
        """Per module name: [forward seconds, backward seconds, calls], after the device has settled."""
        watch = self.watch
        pre = [None if m is None else watch.seconds(origin, m) for m in self.pre]
        post = [None if m is None else watch.seconds(origin, m) for m in self.post]
        out: dict[str, list[float]] = {}
        for entry, calls in zip(self.entries, self.calls):
            forward = backward = 0.0
            for call in calls:
                forward += watch.seconds(call.start, call.end)
                nodes = self._nodes(call)
                starts = [t for t in (pre[n] for n in nodes) if t is not None]
                ends = [t for t in (post[n] for n in nodes) if t is not None]
                if starts and ends:
                    backward += max(0.0, max(ends) - min(starts))
            out[entry.name] = [forward, backward, float(len(calls))]
        return out


class Breakdown:
    """The per-module breakdown of one model on one device: :meth:`round` times one instrumented training
    step, :meth:`static` counts parameters, MACs and activation memory."""

    def __init__(self, model: nn.Module, depth: int, device: Device) -> None:
        self.model = model
        self.depth = depth
        self.device = device
        self.entries = select_modules(model, depth)

    def round(self, forward: Callable[[], torch.Tensor], backward: Callable[[torch.Tensor], None],
              after: Callable[[], None] | None = None) -> dict[str, Any]:
        """One instrumented forward and backward: the whole phases' times and each module's."""
        watch = self.device.stopwatch()
        state = _Round(self.entries, watch)
        origin = watch.mark()
        with state.installed():
            t_fwd, loss = self.device.timed(forward)
        state.hook_graph(loss)  # between the two timed phases: in neither
        t_bwd, _ = self.device.timed(functools.partial(backward, loss))
        del loss
        watch.settle()
        modules = state.read(origin)
        if after is not None:
            after()
        return {"forward": t_fwd, "backward": t_bwd, "modules": modules}

    def static(self, input_shape: tuple[int, ...], forward: Callable[[], Any]) -> dict[str, Any]:
        """Per module: type, depth, leaf, parameters, MACs of one image of ``input_shape`` (C, H, W) and
        the activation bytes saved for backward by one ``forward()`` (a training forward pass)."""
        from bench.measure.flops import count_macs_by_module

        first = next(self.model.parameters(), None)
        x = torch.zeros(1, *input_shape, device=first.device if first is not None else None)
        macs = count_macs_by_module(self.model, (x,))
        memory = self.activation_bytes(forward)
        modules = []
        for entry in self.entries:
            params = list(entry.module.parameters())
            modules.append({
                "name": entry.name, "type": type(entry.module).__name__, "depth": entry.depth, "leaf": entry.leaf,
                "params_total": sum(p.numel() for p in params),
                "params_trainable": sum(p.numel() for p in params if p.requires_grad),
                "macs_forward": macs.get(entry.name, 0),
                "mem_activation_bytes": memory[entry.name],
            })
        return {"depth": self.depth, "modules": modules}

    def activation_bytes(self, forward: Callable[[], Any]) -> dict[str, int]:
        """Bytes of the tensors saved for backward while each module's forward runs, each storage once per
        module; parameters and buffers are not activations. Siblings that save one tensor (a ReLU its
        output, the next convolution the same tensor as its input) each count it, their parent once."""
        def storage_key(t: torch.Tensor) -> tuple[str, int] | None:
            try:
                storage = t.untyped_storage()
            except (RuntimeError, NotImplementedError):  # a tensor without a storage of its own
                return None
            return (str(t.device), storage.data_ptr())

        owned = {storage_key(t) for t in (*self.model.parameters(), *self.model.buffers())}
        seen: list[set[tuple[str, int]]] = [set() for _ in self.entries]
        totals = [0] * len(self.entries)
        open_calls: list[int] = []
        handles = []

        def pack(t: torch.Tensor) -> torch.Tensor:
            key = storage_key(t)
            if key is None or key[1] == 0 or key in owned:
                return t
            size = t.untyped_storage().nbytes()
            for i in set(open_calls):
                if key not in seen[i]:
                    seen[i].add(key)
                    totals[i] += size
            return t

        def opener(i: int) -> Callable[..., None]:
            return lambda module, args: open_calls.append(i)

        def closer(i: int) -> Callable[..., None]:
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                del open_calls[len(open_calls) - 1 - open_calls[::-1].index(i)]
            return hook

        try:
            for i, entry in enumerate(self.entries):
                handles.append(entry.module.register_forward_pre_hook(opener(i)))
                handles.append(entry.module.register_forward_hook(closer(i)))
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                result = forward()
            del result
        finally:
            for handle in handles:
                handle.remove()
        return {entry.name: total for entry, total in zip(self.entries, totals)}


# ------------------------------------------------------------------------------------------------------
# the record's fields
# ------------------------------------------------------------------------------------------------------


def assemble(static: dict[str, Any], rounds: Sequence[dict[str, Any]],
             phase_medians: dict[str, float | None] | None = None) -> dict[str, Any]:
    """The record's ``modules*`` fields from :meth:`Breakdown.static` and the rounds (JSON-shaped, so
    ``bench ab`` assembles the rounds of every worker the same way). ``phase_medians``: the ordinary
    rounds' forward and backward medians, for ``modules_overhead``."""
    phase_samples = {p: [float(r[p]) for r in rounds] for p in PHASES}
    phase = {p: statistics.median(s) if s else None for p, s in phase_samples.items()}
    modules: list[dict[str, Any]] = []
    for item in static["modules"]:
        entry = dict(item)
        for i, p in enumerate(PHASES):
            samples = [float(r["modules"][item["name"]][i]) for r in rounds if item["name"] in r["modules"]]
            median = statistics.median(samples) if samples else None
            whole = phase[p]
            entry[quantity(p).samples] = samples
            entry[quantity(p).time] = median
            entry[f"share_{p}"] = median / whole if median is not None and whole else None
        calls = [r["modules"][item["name"]][2] for r in rounds if item["name"] in r["modules"]]
        entry["calls"] = int(statistics.median(calls)) if calls else 0
        modules.append(entry)
    coverage: dict[str, float] = {}
    for p in PHASES:
        key = quantity(p).time
        leaves = [m[key] for m in modules if m.get("leaf") and m[key] is not None]
        whole = phase[p]
        if leaves and whole:
            coverage[p] = sum(leaves) / whole
    # The same ratio round by round, then its median: a burst of another process's work that lands in
    # a different module in each round inflates the phase's median but no module's, and then the ratio
    # of medians understates what the modules cover; within one round both sides see the burst.
    per_round: dict[str, float] = {}
    leaf_names = [m["name"] for m in modules if m.get("leaf")]
    for i, p in enumerate(PHASES):
        ratios = [sum(float(r["modules"][n][i]) for n in leaf_names if n in r["modules"]) / float(r[p])
                  for r in rounds if r[p]]
        if ratios and leaf_names:
            per_round[p] = statistics.median(ratios)
    overhead: dict[str, float] = {}
    for p in PHASES:
        plain, measured = (phase_medians or {}).get(p), phase[p]
        if plain and measured is not None:
            overhead[p] = measured / plain
    return {
        "modules": modules,
        "modules_depth": int(static["depth"]),
        "modules_coverage": coverage or None,
        "modules_coverage_per_round": per_round or None,
        "modules_phase_samples_s": phase_samples,
        "modules_overhead": overhead or None,
    }
