"""Generation throughput by batch size, the model's FLOPs per image, and the fraction of the matmul peak reached.

    python -m benchmarks.perf.sampling_speed [--models builtin:shapes,tiny-sd] [--batch-sizes 16,32,64]
        [--images 128] [--steps N] [--guidance G] [--threads T] [--device auto|cpu|cuda] [--dtype auto|fp32|fp16|bf16]
        [--compile] [--sdxl-images 8] [--engine-batches 16] [--allow-cpu-sdxl] [--out results/perf]

For each model and batch size: images/s of pure sampling (:func:`harness.sampling.sample`), then, at the largest
batch, of the generation engine (:func:`harness.generation.generate`: PNG files and the SQLite index as well), whose
gap to pure sampling is the engine's overhead; where ``harness eval`` would fork generation workers for a long run
(a small model on the CPU: :func:`harness.generation.generation_processes`), the engine again with them over
``--engine-batches`` batches (``generate-forked``; its ``speedup_vs_one_process`` against the 1-process engine, the same
images). FLOPs per image are counted with ``torch.utils.flop_counter`` over one
sampling call (text encoders, every guided denoiser step, decode): ``gflop_per_image`` is the model's (a batch of 2,
every layer on both guidance halves) and ``executed_gflop_per_image`` what a call at the measured batch runs
(:mod:`harness.cfg_prefix` runs the UNet's text-free prefix once for both halves from 16 images up, 3.9 % fewer
on the builtin model). The fraction of peak is ``executed_gflop_per_image x images/s / peak``, the hardware's
utilisation (skipped work does not count as work done), with the peak measured in the same run, on the same
device and in the same dtype, by a large ``torch.matmul`` (:func:`benchmarks.perf.common.matmul_peak_flops`).
``fraction_of_device_peak`` divides by the better of that and a large 3 x 3 convolution's rate
(:func:`benchmarks.perf.common.conv_peak_flops`): where the matmul is not the device's fastest kernel (PyTorch's CPU
matmul takes MKL's AVX2 path on AMD CPUs, at half the rate of oneDNN's AVX-512 convolutions on Zen 5) the matmul
fraction exceeds 1 and says little; this one is the utilisation to quote.

Models: any ``--ckpt`` spec, and three built from configs with random weights (no download):

- ``tiny-sd`` and ``tiny-sdxl``: the random-init Stable Diffusion 1.x and XL pipelines of the tests
  (``tests/tiny_pipelines.py``): real diffusers classes at toy sizes, 16 x 16 pixels;
- ``sdxl-unet``: the real-size SDXL base 1.0 UNet (2.57 B parameters). No real-size text encoders or VAE are built,
  so it measures denoising alone: per image, ``steps`` UNet calls at 1024 x 1024 (128 x 128 latents) on the
  classifier-free-guidance batch (2 per image) with random text embeddings of SDXL's shapes, and a DDIM update
  with SDXL's noise schedule. Its FLOPs are counted on a meta-device twin (no memory, no arithmetic); one CFG call is
  13.5 TFLOP, so a 20-step image is 270 TFLOP: minutes to tens of minutes per image on a CPU, refused there unless
  ``--allow-cpu-sdxl``. ``--sdxl-images`` (default 8) bounds its images per measurement.

``--device``/``--dtype``/``--compile`` place every model with :func:`harness.numerics.place` (``auto``: the GPU in
float16 when there is one, else the CPU in float32, as before). Each results line names the device (the GPU's
product name), dtype and switches; on CUDA every timing is bracketed by device synchronisations and each
measurement records its own ``peak_gpu_mb`` (``torch.cuda.max_memory_allocated``).

On one GPU the whole comparison is the command below, sized to finish in under 5 minutes on an H200 (about
1 PFLOP/s of dense float16 matmul): the SDXL part is 4 batch sizes x 8 images x 270 TFLOP = 8.6 PFLOP, under a
minute even at 15 % of peak; the toy models are bound by kernel launches, about 70 sampling calls of 10-20 steps each
(under 20 s per model); CUDA start-up and imports add about half a minute. A model that fails there is reported
and the others still measured (:class:`ModelsFailed`).

    python -m benchmarks.perf.sampling_speed --device cuda --models builtin:shapes,tiny-sd,tiny-sdxl,sdxl-unet \\
        --batch-sizes 1,2,4,8 --images 32 --sdxl-images 8 --out results/perf
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import traceback
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.perf.common import (
    RESULTS,
    ResultsFile,
    device_name,
    device_peak,
    peak_gpu_memory,
    sample_peaks,
    synchronize,
    table,
)
from harness.checkpoints import resolve_checkpoint
from harness.errors import HarnessError
from harness.generation import GenerationRequest, generate, generation_processes
from harness.numerics import Numerics, place
from harness.policy import Policy
from harness.sampling import SamplerConfig, sample
from harness.store import ImageStore

PROMPT = "a photo of a red circle left of a blue square"
ENGINE_BATCHES = 16  # batches of the forked-engine measurement: whole batches per worker, as in a long run
TINY_SD, TINY_SDXL, SDXL_UNET = "tiny-sd", "tiny-sdxl", "sdxl-unet"

# The SDXL base 1.0 UNet, as published in stabilityai/stable-diffusion-xl-base-1.0 (unet/config.json; the model card
# describes it as the 2.6 B-parameter UNet of Podell et al. 2023, "SDXL"). Facts of that checkpoint, not choices:
# three levels (the first without attention), 1 / 2 / 10 transformer blocks per level, 64-channel heads, cross-
# attention on the 2048-wide concatenation of the two CLIP text encoders' hidden states, and the "text_time"
# embedding of the pooled 1280-wide text embedding plus six size/crop numbers (2816 = 1280 + 6 x 256).
SDXL_UNET_CONFIG: dict[str, object] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "use_linear_projection": True,
}
SDXL_TEXT_TOKENS = 77  # CLIP's context length: both SDXL text encoders pad every prompt to it
VAE_FACTOR = 8  # pixels per latent side in SDXL's VAE: 128 x 128 latents are a 1024 x 1024 image
# SDXL base's noise schedule (scheduler/scheduler_config.json of the same checkpoint), sampled with DDIM as the
# harness samples every Stable Diffusion checkpoint (harness.sd_policy.ddim_from).
SDXL_SCHEDULE: dict[str, object] = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                                    "steps_offset": 1, "timestep_spacing": "leading", "set_alpha_to_one": False,
                                    "clip_sample": False, "prediction_type": "epsilon"}


def load_model(name: str, scratch: Path, numerics: Numerics | None = None) -> Policy:
    """A ``--ckpt`` spec, or ``tiny-sd``/``tiny-sdxl``: the tests' random-init pipeline saved to ``scratch`` and
    loaded back through the same path as any diffusers folder; then placed as ``numerics`` says."""
    if name in (TINY_SD, TINY_SDXL):
        from transformers.utils import logging as transformers_logging

        from tests.tiny_pipelines import save, tiny_sd_pipeline, tiny_sdxl_pipeline

        transformers_logging.set_verbosity_error()  # its letter tokenizer truncates every prompt, and says so per call
        build = tiny_sd_pipeline if name == TINY_SD else tiny_sdxl_pipeline
        policy = resolve_checkpoint(str(save(build(scratch), scratch / name)))
    else:
        policy = resolve_checkpoint(name)
    place(policy, numerics or Numerics())
    return policy


def sdxl_unet() -> nn.Module:
    """The SDXL base UNet with random weights, built on the current default device (``with torch.device(...)``:
    "meta" gives the architecture without memory, "cuda" initialises on the GPU)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**SDXL_UNET_CONFIG).eval().requires_grad_(False)


def text_time_conditioning(config: Mapping, batch: int, device: torch.device | str, dtype: torch.dtype
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Random text embeddings of the shapes an SDXL-layout UNet (``addition_embed_type="text_time"``) with
    ``config`` takes, for ``batch`` denoiser rows: 77 token embeddings of ``cross_attention_dim``, the pooled
    embedding (its width is what the added projection's input leaves after the six size numbers), and the size
    micro-conditioning (original size, crop corner, target size) of an uncropped image at the native size."""
    generator = torch.Generator().manual_seed(0)
    pooled_dim = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    embeds = torch.randn(batch, SDXL_TEXT_TOKENS, config["cross_attention_dim"], generator=generator, device="cpu")
    pooled = torch.randn(batch, pooled_dim, generator=generator, device="cpu")
    size = [config["sample_size"] * VAE_FACTOR] * 2
    time_ids = torch.tensor([[*size, 0, 0, *size]] * batch, device="cpu")
    return embeds.to(device, dtype), {"text_embeds": pooled.to(device, dtype), "time_ids": time_ids.to(device, dtype)}


def denoiser_call_flops(config: Mapping, rows: int) -> float:
    """FLOPs of one call of the UNet that ``config`` describes on ``rows`` latents at its native size, counted on a
    meta-device twin: the counter reads shapes only, so this costs seconds and no memory even for SDXL."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(dict(config))
        size = config["sample_size"]
        latents = torch.empty(rows, config["in_channels"], size, size)
        embeds, added = text_time_conditioning(config, rows, "meta", torch.float32)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            unet(latents, torch.tensor(500), encoder_hidden_states=embeds, added_cond_kwargs=added)
    return float(counter.get_total_flops())


@torch.no_grad()
def denoise(unet: nn.Module, batch: int, steps: int, guidance: float, seed: int = 0) -> torch.Tensor:
    """Latents of ``batch`` images after ``steps`` guided DDIM steps (SDXL's noise schedule) of an SDXL-layout
    ``unet``: what sampling an SDXL image costs without its text encoders (random embeddings instead) and VAE
    decode. Guidance runs both branches in one call (2 x ``batch`` rows) and combines them as u + s (c - u), as
    :func:`harness.sampling.guided_output` does."""
    from diffusers import DDIMScheduler

    device, dtype = next(unet.parameters()).device, next(unet.parameters()).dtype
    config = unet.config
    guided = guidance != 1.0
    scheduler = DDIMScheduler(**SDXL_SCHEDULE)
    scheduler.set_timesteps(steps, device=device)
    shape = (batch, config["in_channels"], config["sample_size"], config["sample_size"])
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed), device="cpu")
    latents = noise.to(device, dtype) * scheduler.init_noise_sigma
    embeds, added = text_time_conditioning(config, 2 * batch if guided else batch, device, dtype)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, t)
        if guided:
            model_input = torch.cat([model_input, model_input])
        output = unet(model_input, t, encoder_hidden_states=embeds, added_cond_kwargs=added).sample
        if guided:
            uncond, cond = output.chunk(2)
            output = uncond + guidance * (cond - uncond)
        latents = scheduler.step(output, t, latents).prev_sample
    return latents


def measure_denoiser(unet: nn.Module, name: str, batch_sizes: list[int], images: int, steps: int, guidance: float
                     ) -> list[dict]:
    """Denoising images/s of ``unet`` at each batch size (whole batches, after a one-step warm-up at that batch),
    GFLOP per image (one guided call's count x ``steps``, on a meta twin built from its config, so compiling
    ``unet`` does not touch the count) and each measurement's peak GPU memory."""
    device = next(unet.parameters()).device
    config = unet.config
    flops = denoiser_call_flops(config, 2 if guidance != 1.0 else 1) * steps
    parameters = sum(p.numel() for p in unet.parameters())
    rows = []
    for batch in batch_sizes:
        with peak_gpu_memory(device) as peak:
            denoise(unet, batch, 1, guidance)  # warm-up: kernel selection (and compilation) at this batch
            batches = max(1, round(images / batch))
            synchronize(device)
            started = time.perf_counter()
            for b in range(batches):
                latents = denoise(unet, batch, steps, guidance, seed=b)
            synchronize(device)
            rate = batches * batch / (time.perf_counter() - started)
        rows.append({"model": name, "batch": batch, "what": "denoise", "images_per_s": rate,
                     "gflop_per_image": flops / 1e9, "steps": steps, "guidance": guidance,
                     "resolution": config["sample_size"] * VAE_FACTOR, "parameters": parameters,
                     "peak_gpu_mb": peak["mb"],
                     # random weights in float16 may overflow; a reader should know whether the timed numbers were
                     "output_finite": bool(torch.isfinite(latents).all())})
    return rows


def measure_sdxl_unet(batch_sizes: list[int], images: int, steps: int, guidance: float, numerics: Numerics
                      ) -> list[dict]:
    """:func:`measure_denoiser` of the real-size SDXL base UNet, random weights initialised on the device itself."""
    device, dtype = numerics.torch_device(), numerics.torch_dtype()
    torch.manual_seed(0)
    with torch.device(device):
        unet = sdxl_unet()
    unet.to(dtype)
    if numerics.compile:
        unet.compile(dynamic=False)  # in place, as harness.numerics does for a policy's denoiser
    rows = measure_denoiser(unet, SDXL_UNET, batch_sizes, images, steps, guidance)
    del unet
    if device.type == "cuda":
        torch.cuda.empty_cache()  # give the 5-10 GB of weights back before the next model
    return rows


def flops_per_image(policy: Policy, config: SamplerConfig, batch: int = 2) -> float:
    """FLOPs of one image: everything one :func:`sample` call of ``batch`` images runs, counted by
    ``FlopCounterMode``, / batch (at 2 images nothing is shared between the guidance halves: the model's count)."""
    counter = FlopCounterMode(display=False)
    with counter:
        sample(policy, [PROMPT] * batch, list(range(batch)), config)
    return counter.get_total_flops() / batch


def sampling_rate(policy: Policy, config: SamplerConfig, batch: int, images: int) -> float:
    """Images/s of pure sampling at ``batch`` (after one warm-up batch), whole batches only."""
    sample(policy, [PROMPT] * batch, list(range(batch)), config)
    batches = max(1, round(images / batch))
    synchronize(policy.device)
    started = time.perf_counter()
    for b in range(batches):
        sample(policy, [PROMPT] * batch, list(range(b * batch, (b + 1) * batch)), config)
    synchronize(policy.device)
    return batches * batch / (time.perf_counter() - started)


def engine_rate(policy: Policy, config: SamplerConfig, batch: int, images: int, folder: Path,
                processes: int | None = 1) -> float:
    """Images/s of :func:`generate` into a fresh store: sampling plus PNG encoding, files and the SQLite index;
    ``processes`` as :func:`generate` (1: in this process, on its threads; None: as ``harness eval`` chooses)."""
    store = ImageStore(folder)
    requests = [GenerationRequest(f"{PROMPT} {i % 7}", 10_000 + i) for i in range(images)]
    generate(policy, requests[:batch], config, store, batch_size=batch, progress=False)  # warm-up
    synchronize(policy.device)
    started = time.perf_counter()
    generate(policy, requests[batch:], config, store, batch_size=batch, progress=False, processes=processes)
    synchronize(policy.device)
    return (images - batch) / (time.perf_counter() - started)


def measure_policy(name: str, batch_sizes: list[int], images: int, steps: int | None, guidance: float | None,
                   numerics: Numerics, scratch: Path, engine_batches: int = ENGINE_BATCHES) -> list[dict]:
    """Sampling images/s at each batch size and the engine's at the largest, for a loadable model: in this process
    (``generate``) and, where ``harness eval`` would fork generation workers for ``engine_batches`` batches, with
    them (``generate-forked``, the number of processes in ``processes``). FLOPs are counted before ``torch.compile``
    is applied (they are the model's, and the counter does not trace compiled graphs)."""
    policy = load_model(name, scratch, dataclasses.replace(numerics, compile=False))
    config = SamplerConfig.for_policy(policy, num_inference_steps=steps, guidance_scale=guidance)
    flops = flops_per_image(policy, config)
    executed = {batch: flops_per_image(policy, config, batch) for batch in batch_sizes}
    if numerics.compile:
        numerics.apply_switches(policy)
        policy.numerics_key = numerics.key()
    rows = []
    for batch in batch_sizes:
        with peak_gpu_memory(policy.device) as peak:
            rate = sampling_rate(policy, config, batch, images)
        rows.append({"model": name, "batch": batch, "what": "sample", "images_per_s": rate, "peak_gpu_mb": peak["mb"]})
    largest = max(batch_sizes)
    with peak_gpu_memory(policy.device) as peak:
        engine = engine_rate(policy, config, largest, max(images, 2 * largest), scratch / f"store-{name}")
    pure = next(row["images_per_s"] for row in rows if row["batch"] == largest)
    rows.append({"model": name, "batch": largest, "what": "generate", "images_per_s": engine,
                 "engine_overhead_share": max(0.0, 1 - engine / pure), "peak_gpu_mb": peak["mb"], "processes": 1})
    forks = generation_processes(policy, engine_batches) if engine_batches > 0 else 1
    if forks > 1:  # the engine as harness eval runs it on this machine: batches sampled in forked 1-thread workers
        forked = engine_rate(policy, config, largest, (engine_batches + 1) * largest, scratch / f"forked-{name}",
                             processes=None)
        rows.append({"model": name, "batch": largest, "what": "generate-forked", "images_per_s": forked,
                     "speedup_vs_one_process": forked / engine, "peak_gpu_mb": None, "processes": forks})
    for row in rows:
        row.update(gflop_per_image=flops / 1e9, executed_gflop_per_image=executed[row["batch"]] / 1e9,
                   steps=config.num_inference_steps, guidance=config.guidance_scale, resolution=config.height)
    return rows


COLUMNS = ["model", "what", "batch", "processes", "images_per_s", "gflop_per_image", "executed_gflop_per_image",
           "fraction_of_peak", "fraction_of_device_peak", "engine_overhead_share", "speedup_vs_one_process",
           "peak_gpu_mb"]


class ModelsFailed(RuntimeError):
    """Some models raised while being measured; the others' rows (and one error row per failure) are in the
    results."""


def measure(models: list[str], batch_sizes: list[int], images: int, steps: int | None, guidance: float | None,
            results: ResultsFile, numerics: Numerics | None = None, sdxl_images: int = 8,
            allow_cpu_sdxl: bool = False, engine_batches: int = ENGINE_BATCHES) -> list[dict]:
    """Every model's rows (see the module docstring), each with the device, dtype, switches and the matmul peak of
    that device and dtype, added to ``results``. Refuses, before anything loads, a device that is not here and
    ``sdxl-unet`` on a CPU unless ``allow_cpu_sdxl``.

    A model that raises (a kernel missing for a dtype, memory running out) does not cost the others' numbers, which
    matters where a GPU is lent for minutes: its traceback is printed, an ``error`` row takes its place, the next
    model runs, and :class:`ModelsFailed` names every failure at the end."""
    numerics = numerics or Numerics()
    numerics.validate()
    numerics.check_available()
    device, dtype = numerics.torch_device(), numerics.torch_dtype()
    if SDXL_UNET in models and device.type == "cpu" and not allow_cpu_sdxl:
        raise HarnessError(f"{SDXL_UNET} on a CPU takes minutes per denoiser call (13.5 TFLOP each); run it with "
                           "--device cuda, or pass --allow-cpu-sdxl to wait")
    rows: list[dict] = []
    failures: dict[str, str] = {}
    peaks = sample_peaks(device, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            try:
                if name == SDXL_UNET:
                    defaults = SamplerConfig()
                    rows += measure_sdxl_unet(batch_sizes, sdxl_images, steps or defaults.num_inference_steps,
                                              defaults.guidance_scale if guidance is None else guidance, numerics)
                else:
                    rows += measure_policy(name, batch_sizes, images, steps, guidance, numerics, Path(tmp),
                                           engine_batches)
            except Exception as error:  # recorded, printed, and raised again below as ModelsFailed
                traceback.print_exc()
                failures[name] = f"{type(error).__name__}: {error}".splitlines()[0]
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            # the better of two samples of the peak, around the model's runs
            peaks = sample_peaks(device, dtype, peaks)
    placement = {"device": device_name(device), "device_type": device.type,
                 "dtype": str(dtype).removeprefix("torch."), "compile": numerics.compile}
    peak, conv_peak = peaks
    for row in rows:
        row.update(placement)
        row.update(device_peak(peak, conv_peak))
        work = row.get("executed_gflop_per_image", row["gflop_per_image"])  # the denoiser-only rows count one call
        row["fraction_of_peak"] = work * 1e9 * row["images_per_s"] / peak
        row["fraction_of_device_peak"] = work * 1e9 * row["images_per_s"] / max(peak, conv_peak)
        row["threads"] = torch.get_num_threads()
        results.add(**row)
    for name, error in failures.items():
        results.add(model=name, error=error, **placement)
    if failures:
        listing = "; ".join(f"{name}: {error}" for name, error in failures.items())
        raise ModelsFailed(f"{len(failures)} of {len(models)} models failed ({listing}); the others' lines are "
                           "written")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=f"builtin:shapes,{TINY_SD}",
                        help=f"comma-separated --ckpt specs, {TINY_SD}, {TINY_SDXL} or {SDXL_UNET}")
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--images", type=int, default=128, help="images per measurement")
    parser.add_argument("--sdxl-images", type=int, default=8, help=f"images per measurement of {SDXL_UNET}")
    parser.add_argument("--engine-batches", type=int, default=ENGINE_BATCHES,
                        help="batches of the forked-engine measurement (0: none)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto: the GPU if there is one)")
    parser.add_argument("--dtype", default="auto", help="auto, fp32, fp16 or bf16 (auto: fp16 on CUDA, else fp32)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the denoiser")
    parser.add_argument("--allow-cpu-sdxl", action="store_true", help=f"run {SDXL_UNET} even on a CPU (very slow)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = ResultsFile("sampling_speed", args.out)
    numerics = Numerics(device=args.device, dtype=args.dtype, compile=args.compile)
    try:
        rows = measure(args.models.split(","), [int(b) for b in args.batch_sizes.split(",")], args.images,
                       args.steps, args.guidance, results, numerics, args.sdxl_images, args.allow_cpu_sdxl,
                       args.engine_batches)
    except HarnessError as error:  # bad input, refused before anything was measured
        raise SystemExit(f"error: {error}") from None
    except ModelsFailed as error:
        rows = [row for row in results.rows if "error" not in row]
        if rows:
            print(table(rows, COLUMNS))
        raise SystemExit(f"error: {error} to {results.write()}") from None
    print(table(rows, COLUMNS))
    print(f"matmul peak {rows[0]['matmul_peak_gflops']:.1f} GFLOP/s, 3x3 convolution "
          f"{rows[0]['conv_peak_gflops']:.1f} GFLOP/s ({rows[0]['dtype']} on {rows[0]['device']}), "
          f"{torch.get_num_threads()} threads; wrote {results.write()}")

if __name__ == "__main__":
    main()
