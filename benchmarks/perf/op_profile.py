"""Where one sampling call's time goes, by kind of operator, and how close the FLOP-carrying kernels are to the peak.

    python -m benchmarks.perf.op_profile [--models builtin:shapes,tiny-sd] [--batch 64] [--steps N] [--guidance G]
        [--threads T] [--repeats 2] [--device auto|cpu|cuda] [--dtype auto|fp32|fp16|bf16] [--out results/perf]

For each model: one warm-up :func:`harness.sampling.sample` call at ``--batch``, then the same call timed without the
profiler (best of ``--repeats``), then once more under ``torch.profiler`` (CPU activity, and CUDA activity on a GPU,
where the kernels' device time is what is grouped). Every operator's *self* time (its own time, without the operators
it calls, so nothing is counted twice) goes to one of the categories of :data:`CATEGORIES`; operators no pattern
knows go to ``other``, and the largest of them are printed and recorded, so nothing is hidden in it. The profiled
call's wall time not spent in any operator is ``outside operators`` (Python: the sampling loop, the scheduler,
diffusers' module code), so the shares are shares of the whole call and sum to 1.

It prints the categories' self time and share, the 15 operators with the most self time (with call counts), and,
from the same run: images/s of the unprofiled call, FLOPs per image (counted as ``sampling_speed`` counts them,
:func:`benchmarks.perf.sampling_speed.flops_per_image`), the matmul peak measured in this run, and two fractions of it:

- ``fraction_of_peak``: the whole call, ``FLOPs / (call seconds x peak)``, as ``sampling_speed`` reports it;
- ``compute_fraction_of_peak``: the FLOP-carrying kernels alone, ``FLOPs / (compute seconds x peak)``, where the
  compute seconds are the unprofiled call's seconds x ``compute_share``, the profiled share of convolution + matmul +
  attention (so ``fraction_of_peak = compute_share x compute_fraction_of_peak`` exactly; shares are taken within one
  call because absolute times drift between calls on a shared machine). It is the rate the call would reach if every
  other operator and the Python between them cost nothing: the ceiling of any change that leaves the compute kernels
  as they are, which is what a bit-exact change must do (another convolution algorithm or a fused kernel rounds
  differently). ``1 - compute_share`` is what everything else costs. The profiler's own bookkeeping (microseconds per
  operator) falls mostly on the many small operators, so the compute share is if anything understated and the
  ceiling overstated by about that much.
- ``compute_fraction_of_peak_with_inside``: the same, counting as compute time the operators that the compute
  operators call themselves (:func:`inside_compute`: ``addmm`` copies its bias into the output with an
  ``aten::copy_`` before the product), which a change that keeps the compute kernels cannot remove either; so it is
  the tighter ceiling. ``inside_compute_shares`` says what they are, by their own category.

The peak is what a 1024 x 1024 ``torch.matmul`` reaches, not the hardware's limit: a convolution kernel may beat it,
so ``compute_fraction_of_peak`` can exceed 1 (on the 2-core Zen 5 machines, where MKL's matmul takes its AVX2 path,
the whole call did). ``fraction_of_device_peak`` and ``compute_fraction_of_device_peak`` divide by the better of the
matmul and a large 3 x 3 convolution (:func:`benchmarks.perf.common.conv_peak_flops`) instead.
Absolute times on a machine shared with other work are inflated, and
the peak and the call are timed at different moments, so under a varying load both fractions drift with it; the
shares, taken within the one profiled call, are what to compare between runs. One JSON line per model goes to
``results/perf/op_profile.jsonl`` (:class:`benchmarks.perf.common.ResultsFile`).
"""

from __future__ import annotations

import argparse
import fnmatch
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.perf.common import RESULTS, ResultsFile, device_name, device_peak, sample_peaks, table, timed
from benchmarks.perf.sampling_speed import PROMPT, load_model
from benchmarks.perf.sampling_speed import flops_per_image as count_flops_per_image
from harness.errors import HarnessError
from harness.numerics import Numerics
from harness.policy import Policy
from harness.sampling import SamplerConfig, sample

OTHER = "other"

CATEGORIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("convolution", "compute-bound: a 3 x 3 convolution does 9 x C_in multiply-adds per output element, so it runs "
     "at the arithmetic units' rate once its tiles are in cache",
     ("conv*", "*_convolution*", "convolution*", "cudnn_convolution*", "mkldnn_convolution*")),
    ("matmul", "compute-bound: an (m x k) @ (k x n) product does k multiply-adds per output element; the "
     "projections, feed-forwards and (unfused) attention products of the UNet and text encoder",
     ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_addmm_activation", "addbmm", "einsum")),
    ("attention", "compute-bound when fused (one kernel does both products and the softmax); an unfused softmax is "
     "counted here too, being part of the same attention",
     ("scaled_dot_product*", "_scaled_dot_product*", "*flash_attention*", "*efficient_attention*", "*cudnn_attention*",
      "softmax", "_softmax", "_safe_softmax")),
    ("normalisation", "memory-bound: two passes over the activations (statistics, then scale and shift) and a few "
     "FLOPs per element",
     ("group_norm", "native_group_norm", "layer_norm", "native_layer_norm", "batch_norm", "native_batch_norm",
      "_batch_norm*", "rms_norm", "_fused_rms_norm", "instance_norm")),
    ("elementwise", "memory-bound: one to a few FLOPs per element read and written (arithmetic, activations, the "
     "guidance and scheduler updates, reductions, fills), so the memory traffic sets their time",
     ("add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "pow", "sqrt", "rsqrt", "abs",
      "silu", "silu_", "gelu", "gelu_", "relu", "relu_", "sigmoid", "tanh", "clamp", "clamp_", "clip", "sin", "cos",
      "exp", "log", "lerp", "lerp_", "where", "addcmul*", "addcdiv*", "round", "floor", "ceil", "sign",
      "mean", "sum", "var", "std", "var_mean", "amax", "max", "min", "argmax", "argmin", "cumsum", "norm",
      "linalg_vector_norm", "fill_", "zero_", "masked_fill*", "eq", "ne", "lt", "gt", "le", "ge", "bitwise_*",
      "logical_*", "isfinite", "isnan", "nan_to_num", "equal", "dropout", "_foreach_*")),
    ("copies and layout", "memory-bound, no arithmetic: copies and concatenations move every element, resampling "
     "reads and writes it, and views, reshapes and allocations cost only the dispatcher's time",
     ("copy_", "_copy_from*", "cat", "_cat", "stack", "clone", "contiguous", "to", "_to_copy", "type_as",
      "upsample*", "_upsample*", "interpolate", "pad", "constant_pad_nd", "reflection_pad*", "replication_pad*",
      "repeat", "repeat_interleave", "expand", "expand_as", "view", "_unsafe_view", "reshape", "flatten",
      "unflatten", "permute", "transpose", "t", "unsqueeze", "squeeze", "as_strided", "slice", "select", "narrow",
      "chunk", "split", "split_with_sizes", "unbind", "index", "index_select", "gather", "embedding", "detach",
      "detach_", "alias", "lift_fresh", "resolve_conj", "resolve_neg", "empty", "empty_like", "empty_strided", "zeros",
      "zeros_like", "ones", "ones_like", "full", "full_like", "arange", "scalar_tensor", "item",
      "_local_scalar_dense", "tensor", "new_empty*", "new_zeros", "new_ones", "new_full", "result_type",
      "is_nonzero", "randn", "normal_", "uniform_", "random_", "set_", "as_strided_", "resize_", "_reshape_alias",
      "unfold", "is_same_size")),
)
"""``(category, why it is compute- or memory-bound, patterns)``, first match wins. Patterns are ``fnmatch`` globs
matched against the operator's name without its ``aten::`` namespace; an operator that matches none is ``other``.

Only the first three categories carry the model's FLOPs (``FlopCounterMode`` counts convolutions, matrix products
and attention, nothing else), so their share of the call is the share of its time that the FLOPs per image are
divided by for ``compute_fraction_of_peak``."""

COMPUTE = ("convolution", "matmul", "attention")
OUTSIDE = "outside operators"
NAMES = (*(name for name, _, _ in CATEGORIES), OTHER, OUTSIDE)
TOP_OPS = 15
TOP_OTHER = 10


def categorise(op: str) -> str:
    """The category of an operator name as the profiler records it (``aten::addmm``, ``cudnn_convolution``)."""
    name = op.split("::", 1)[-1]
    for category, _, patterns in CATEGORIES:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            return category
    return OTHER


def operator_times(events: object, device: torch.device) -> list[dict]:
    """One row per operator of a profile (``prof.key_averages()``): name, category, self seconds, calls; the device's
    self time on CUDA (the kernels' own time; the CPU side only launches them), the CPU's otherwise. Operators that
    took no self time are dropped; rows come largest first."""
    rows = []
    for event in events:
        micros = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
        if micros > 0:
            rows.append({"op": event.key, "category": categorise(event.key), "self_s": micros / 1e6,
                         "calls": event.count})
    return sorted(rows, key=lambda row: -row["self_s"])


def category_shares(ops: list[dict], wall_s: float) -> dict[str, float]:
    """Each category's share of a call that took ``wall_s``, every name of :data:`NAMES`, summing to 1: the operators'
    self seconds by category, and ``outside operators`` for the rest of the wall time (on a CPU the Python between
    operators, the scheduler's and diffusers' own code; on a GPU the device idle between kernels), at least 0."""
    seconds: dict[str, float] = defaultdict(float)
    for row in ops:
        seconds[row["category"]] += row["self_s"]
    seconds[OUTSIDE] = max(0.0, wall_s - sum(seconds.values()))
    total = sum(seconds.values())
    return {name: seconds[name] / total if total else 0.0 for name in NAMES}


def inside_compute(events: object, device: torch.device) -> dict[str, float]:
    """Self seconds, by their own category, of the operators that a convolution, matmul or attention operator calls
    (``prof.events()``, each with its ``cpu_parent``): on a CPU, ``addmm`` first copies the broadcast bias into its
    output (an ``aten::copy_``) and then accumulates the product onto it, and ``linear`` transposes its weight. Their
    name puts them outside the compute categories, but they are part of the compute kernel: no change that keeps the
    kernel (as a bit-exact change must) removes them."""
    seconds: dict[str, float] = defaultdict(float)
    for event in events:
        category = categorise(event.name)
        if category in COMPUTE:
            continue
        parent = event.cpu_parent
        while parent is not None and categorise(parent.name) not in COMPUTE:
            parent = parent.cpu_parent
        if parent is not None:
            micros = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
            seconds[category] += micros / 1e6
    return dict(seconds)


def profile_call(policy: Policy, config: SamplerConfig, batch: int) -> tuple[list[dict], dict[str, float], float]:
    """Operator rows of one profiled :func:`sample` call at ``batch``, the seconds of :func:`inside_compute`, and
    the call's wall seconds under the profiler."""
    device = torch.device(policy.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    prompts, seeds = [PROMPT] * batch, list(range(batch))
    with profile(activities=activities) as prof:
        wall = timed(lambda: sample(policy, prompts, seeds, config), 1, device)
    return operator_times(prof.key_averages(), device), inside_compute(prof.events(), device), wall


def measure_model(name: str, batch: int, steps: int | None, guidance: float | None, repeats: int,
                  numerics: Numerics, scratch: Path) -> dict:
    """The profile of one model (see the module docstring) as one results row, without the fractions of the matmul
    peak (added by :func:`measure`, which measures the peak around all models)."""
    policy = load_model(name, scratch, numerics)
    config = SamplerConfig.for_policy(policy, num_inference_steps=steps, guidance_scale=guidance)
    device = torch.device(policy.device)
    prompts, seeds = [PROMPT] * batch, list(range(batch))
    flops = count_flops_per_image(policy, config)
    sample(policy, prompts, seeds, config)  # warm-up: thread pool, kernel selection, allocator at this batch
    call_s = timed(lambda: sample(policy, prompts, seeds, config), repeats, device)
    ops, inside_s, profiled_s = profile_call(policy, config, batch)
    shares = category_shares(ops, profiled_s)
    total_s = sum(row["self_s"] for row in ops)
    for row in ops:
        row["share"] = row["self_s"] / max(total_s, profiled_s)
    inside = {category: seconds / max(total_s, profiled_s) for category, seconds in inside_s.items()}
    return {"model": name, "batch": batch, "steps": config.num_inference_steps, "guidance": config.guidance_scale,
            "images_per_s": batch / call_s, "call_s": call_s, "profiled_call_s": profiled_s,
            "operator_self_s": total_s, "compute_share": sum(shares[c] for c in COMPUTE),
            "inside_compute_shares": inside, "compute_share_with_inside": sum(shares[c] for c in COMPUTE)
            + sum(inside.values()),
            "gflop_per_image": flops / 1e9, "shares": shares, "top_ops": ops[:TOP_OPS],
            "other_ops": [row for row in ops if row["category"] == OTHER][:TOP_OTHER]}


def measure(models: list[str], batch: int, steps: int | None, guidance: float | None, results: ResultsFile,
            numerics: Numerics | None = None, repeats: int = 2) -> list[dict]:
    """One row per model, with the placement, the matmul peak of this device and dtype (the better of two samples,
    before and after the models) and both fractions of it, added to ``results``."""
    numerics = numerics or Numerics()
    numerics.validate()
    numerics.check_available()
    device, dtype = numerics.torch_device(), numerics.torch_dtype()
    first = sample_peaks(device, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure_model(name, batch, steps, guidance, repeats, numerics, Path(tmp)) for name in models]
    peak, conv_peak = sample_peaks(device, dtype, first)
    best = max(peak, conv_peak)
    for row in rows:
        flops_per_call = row["gflop_per_image"] * 1e9 * batch
        row.update(device=device_name(device), dtype=str(dtype).removeprefix("torch."),
                   threads=torch.get_num_threads(), **device_peak(peak, conv_peak),
                   fraction_of_peak=flops_per_call / (row["call_s"] * peak),
                   fraction_of_device_peak=flops_per_call / (row["call_s"] * best),
                   compute_fraction_of_device_peak=(flops_per_call / (row["compute_share"] * row["call_s"] * best)
                                                    if row["compute_share"] else None),
                   compute_fraction_of_peak=(flops_per_call / (row["compute_share"] * row["call_s"] * peak)
                                             if row["compute_share"] else None),
                   compute_fraction_of_peak_with_inside=(
                       flops_per_call / (row["compute_share_with_inside"] * row["call_s"] * peak)
                       if row["compute_share_with_inside"] else None))
        results.add(**row)
    return rows


def report(row: dict) -> str:
    """The printed form of one row: categories, top operators, then the rates."""
    wall = max(row["profiled_call_s"], row["operator_self_s"])  # what the shares are shares of
    categories = [{"category": name, "self_s": share * wall, "share": share}
                  for name, share in sorted(row["shares"].items(), key=lambda item: -item[1])]
    lines = [f"== {row['model']}, batch {row['batch']}, {row['steps']} steps, guidance {row['guidance']}, "
             f"{row['dtype']} on {row['device']}, {row['threads']} threads",
             table(categories, ["category", "self_s", "share"]), "",
             f"top {TOP_OPS} operators by self time",
             table(row["top_ops"], ["op", "category", "self_s", "share", "calls"])]
    if row["other_ops"]:
        lines += ["", "largest operators in other", table(row["other_ops"], ["op", "self_s", "share", "calls"])]
    compute = row["compute_fraction_of_peak"]
    lines += ["",
              f"images/s (unprofiled call, best of its repeats) {row['images_per_s']:.3g}; call {row['call_s']:.3g} s,"
              f" profiled {row['profiled_call_s']:.3g} s of which {row['operator_self_s']:.3g} s in operators",
              f"GFLOP per image {row['gflop_per_image']:.4g}; matmul peak {row['matmul_peak_gflops']:.1f} GFLOP/s, "
              f"3x3 convolution {row['conv_peak_gflops']:.1f} GFLOP/s",
              f"fraction of peak: whole call {row['fraction_of_peak']:.3g}; compute categories alone "
              f"{'n/a' if compute is None else f'{compute:.3g}'} (compute share {row['compute_share']:.3g}, "
              f"other operators {1 - row['compute_share']:.3g})",
              f"fraction of the device's peak (the better of matmul and convolution): whole call "
              f"{row['fraction_of_device_peak']:.3g}"]
    if row["inside_compute_shares"]:
        inside = ", ".join(f"{category} {share:.3g}" for category, share in sorted(
            row["inside_compute_shares"].items(), key=lambda item: -item[1]))
        lines += [f"called inside compute operators (addmm's bias copy, linear's transpose...): {inside}; counting "
                  f"them, compute share {row['compute_share_with_inside']:.3g}, compute categories' fraction of peak "
                  f"{row['compute_fraction_of_peak_with_inside']:.3g}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="builtin:shapes", help="comma-separated --ckpt specs or tiny-sd")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=2, help="unprofiled timings of the call; the best is kept")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto: the GPU if there is one)")
    parser.add_argument("--dtype", default="auto", help="auto, fp32, fp16 or bf16 (auto: fp16 on CUDA, else fp32)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = ResultsFile("op_profile", args.out)
    try:
        rows = measure(args.models.split(","), args.batch, args.steps, args.guidance, results,
                       Numerics(device=args.device, dtype=args.dtype), args.repeats)
    except HarnessError as error:
        raise SystemExit(f"error: {error}") from None
    print("\n\n".join(report(row) for row in rows))
    print(f"wrote {results.write()}")


if __name__ == "__main__":
    main()
