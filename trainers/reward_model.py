"""Scalar reward models for the RL baselines: the learned one, and pre-trained real-world scorers from local weights.

The learned reward model (D3PO's comparison, ``specs/trainers.md``) is trained on exactly the pairs a D3PO run used
(``<run>/preferences.jsonl``) with the Bradley-Terry loss

    L = -log σ(r(x_w, c) - r(x_l, c)),

so "D3PO without a reward model" and "RL with a reward model learned from the same labels" see the same data.
Builtin world: a small CNN over the 48x48 image modulated by the prompt's words and word pairs (the builtin grammar's
vocabulary), so it can learn prompt-conditional correctness (:class:`BuiltinRewardNet`). Real world: an MLP head on
frozen open_clip image and text features. Saved as a folder (``reward_model.json`` + ``model.safetensors``) that
``reward:PATH`` loads.

Pre-trained scorers (``reward:NAME``), never downloaded: ``aesthetic`` (the LAION aesthetic MLP on the normalised
open_clip ViT-L-14 image embedding, as DDPO's ``aesthetic_scorer.py``), ``hps`` (HPS v2: scaled-free cosine of
open_clip ViT-H-14 image and text embeddings with the HPS checkpoint), ``pickscore`` (PickScore: a transformers CLIP
model, logit_scale.exp() times the cosine).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from harness.builtin.prompts import vocabulary
from harness.builtin.world import CANVAS
from harness.data import data_dirs
from harness.errors import DataError, HarnessError
from harness.store import atomic_folder
from trainers.labels import read_comparisons

CONFIG_FILE = "reward_model.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "harness-reward-model"
PAD, UNK = 0, 1  # token ids before the vocabulary's words
PRETRAINED = ("aesthetic", "hps", "pickscore")
# LAION's improved aesthetic predictor file, as DDPO loads it.
AESTHETIC_FILE = "sac+logos+ava1-l14-linearMSE.pth"
HPS_FILE = "HPS_v2_compressed.pt"
PICKSCORE_DIR = "PickScore_v1"


# --- networks ------------------------------------------------------------------------------------------------------


def tokenize(prompts: list[str], words: list[str], max_words: int) -> torch.Tensor:
    """[B, max_words] word ids (PAD after the prompt, UNK for a word outside ``words``), lower-cased, commas split."""
    index = {w: i + 2 for i, w in enumerate(words)}
    out = torch.full((len(prompts), max_words), PAD, dtype=torch.long)
    for b, prompt in enumerate(prompts):
        ids = [index.get(w, UNK) for w in prompt.lower().replace(",", " , ").split()][:max_words]
        out[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


class BuiltinRewardNet(nn.Module):
    """r(image, prompt) for the builtin world: a small CNN whose features the prompt modulates (FiLM).

    Prompt: a bag of its words and of its adjacent word pairs (bigrams: "red circle", "left of"), each with a
    learned vector; their sum gives a per-channel scale γ and shift β. Words add up, so what "red" asks for is
    learned once and shared by every prompt that says it (a flattened per-position encoding memorised prompts
    instead); bigrams bind a colour to its shape, which a plain bag of words would lose ("a red circle and a blue
    square" vs "a blue circle and a red square"). Image: three 3x3 convolutions (48 -> 12 px, strided early to stay
    cheap on a CPU), modulated as h = SiLU(f (1 + γ) + β) so the prompt selects the colour and shape detectors it
    asks for; one more convolution (-> 6 px), then the channel-wise max and mean over positions and a linear map.
    """

    def __init__(self, vocab_size: int, width: int = 32) -> None:
        super().__init__()
        self.tokens = vocab_size + 2  # with PAD and UNK
        self.stem = nn.Sequential(
            nn.Conv2d(3, width // 2, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.film = nn.EmbeddingBag(self.tokens + self.tokens**2, 2 * width, mode="sum", padding_idx=PAD)
        self.tail = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU())
        self.head = nn.Linear(2 * width, 1)

    def bag(self, words: torch.Tensor) -> torch.Tensor:
        """[B, 2L - 1] ids: the words, then each adjacent pair as tokens + first * tokens + second (PAD if either
        word is PAD)."""
        first, second = words[:, :-1], words[:, 1:]
        pairs = torch.where((first == PAD) | (second == PAD), PAD, self.tokens + first * self.tokens + second)
        return torch.cat([words, pairs], dim=1)

    def forward(self, pixels: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(self.bag(words)).chunk(2, dim=1)
        h = F.silu(self.stem(pixels) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])
        h = self.tail(h).flatten(2)
        return self.head(torch.cat([h.amax(2), h.mean(2)], dim=1)).squeeze(1)


class ClipRewardHead(nn.Module):
    """r = MLP([i, t, i * t]) on L2-normalised frozen CLIP image (i) and text (t) features."""

    def __init__(self, dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3 * dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([image, text, image * text], dim=1)).squeeze(1)


class ClipEncoder:
    """Frozen open_clip features: L2-normalised image and text embeddings."""

    def __init__(self, network: nn.Module, preprocess: Callable, tokenizer: Callable, name: str,
                 batch_size: int = 32) -> None:
        self.network, self.preprocess, self.tokenizer = network.eval(), preprocess, tokenizer
        self.name, self.batch_size = name, batch_size

    @classmethod
    def load(cls, model: str, pretrained: str) -> ClipEncoder:
        from harness.perception.clip_color import load_open_clip

        network, preprocess, tokenizer = load_open_clip(model, pretrained)
        return cls(network, preprocess, tokenizer, f"{model}/{pretrained}")

    @torch.no_grad()
    def images(self, images: list[Image.Image]) -> torch.Tensor:
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            pixels = torch.stack([self.preprocess(img.convert("RGB")) for img in chunk])
            out.append(F.normalize(self.network.encode_image(pixels).float(), dim=-1))
        return torch.cat(out)

    @torch.no_grad()
    def texts(self, texts: list[str]) -> torch.Tensor:
        out = [F.normalize(self.network.encode_text(self.tokenizer(texts[s : s + self.batch_size])).float(), dim=-1)
               for s in range(0, len(texts), self.batch_size)]
        return torch.cat(out)


def pixels_of(images: list[Image.Image], size: int) -> torch.Tensor:
    """[B, 3, size, size] in [-1, 1]."""
    arrays = [np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                         if img.size != (size, size) else img.convert("RGB")) for img in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# --- the learned reward model --------------------------------------------------------------------------------------


@dataclass
class RewardModelConfig:
    world: str
    seed: int = 0
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    heldout_fraction: float = 0.2
    patience: int = 8  # epochs without a better held-out loss before stopping
    # builtin world
    words: list[str] = field(default_factory=vocabulary)
    max_words: int = 16
    image_size: int = CANVAS  # images are resized to this side (the network pools, so any size works)
    # real world
    clip_model: str = "ViT-L-14"
    clip_pretrained: str = "openai"
    feature_dim: int = 0


class RewardModel:
    """A learned reward model: ``score(images, prompts)`` -> one float per image, higher = preferred."""

    def __init__(self, config: RewardModelConfig, net: nn.Module, encoder: ClipEncoder | None = None,
                 folder: Path | None = None, metrics: dict | None = None) -> None:
        self.config, self.net, self.encoder, self.folder = config, net.eval(), encoder, folder
        self.metrics = metrics or {}

    @classmethod
    def build(cls, config: RewardModelConfig, encoder: ClipEncoder | None = None) -> RewardModel:
        torch.manual_seed(config.seed)
        if config.world == "builtin":
            net: nn.Module = BuiltinRewardNet(len(config.words))
        else:
            if encoder is None:
                encoder = ClipEncoder.load(config.clip_model, config.clip_pretrained)
            if not config.feature_dim:
                config.feature_dim = int(encoder.texts(["a photo"]).shape[1])
            net = ClipRewardHead(config.feature_dim)
        return cls(config, net, encoder)

    def image_inputs(self, images: list[Image.Image]) -> torch.Tensor:
        """Pixels in [-1, 1] (builtin world) or frozen CLIP image features (real world)."""
        if self.config.world == "builtin":
            return pixels_of(images, self.config.image_size)
        assert self.encoder is not None
        return self.encoder.images(images)

    def text_inputs(self, prompts: list[str]) -> torch.Tensor:
        """Word ids (builtin world) or frozen CLIP text features (real world)."""
        if self.config.world == "builtin":
            return tokenize(prompts, self.config.words, self.config.max_words)
        assert self.encoder is not None
        return self.encoder.texts(prompts)

    @torch.no_grad()
    def score(self, images: list[Image.Image], prompts: list[str]) -> np.ndarray:
        self.net.eval()
        out = []
        for start in range(0, len(images), 64):
            chunk = slice(start, start + 64)
            out.append(self.net(self.image_inputs(images[chunk]), self.text_inputs(prompts[chunk])))
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    def scorer_id(self) -> dict:
        weights = self.folder / WEIGHTS_FILE if self.folder else None
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights and weights.is_file() else None
        return {"reward_model": str(self.folder), "weights_sha256": digest, "world": self.config.world}

    def save(self, folder: Path, overwrite: bool = False) -> Path:
        """Write the folder through a temporary sibling and a rename, so a crash leaves no half-written model."""
        folder = Path(folder)
        if folder.exists() and not overwrite:
            raise HarnessError(f"{folder} already exists; choose another --out or pass --overwrite")
        with atomic_folder(folder) as tmp:
            meta = {"format": FORMAT, "config": asdict(self.config), "metrics": self.metrics}
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=1) + "\n")
            save_file({k: v.detach().contiguous() for k, v in self.net.state_dict().items()}, str(tmp / WEIGHTS_FILE))
        self.folder = folder
        return folder

    @classmethod
    def load(cls, folder: Path, encoder: ClipEncoder | None = None) -> RewardModel:
        folder = Path(folder)
        path = folder / CONFIG_FILE
        try:
            meta = json.loads(path.read_text())
            if meta.get("format") != FORMAT:
                raise KeyError("format")
            config = RewardModelConfig(**meta["config"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise HarnessError(f"{folder} is not a learned reward model ({type(err).__name__} reading {CONFIG_FILE});"
                               " train one with `harness train-reward`") from None
        model = cls.build(config, encoder)
        try:
            model.net.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        except Exception as err:  # safetensors / torch raise several types for missing or mismatched weights
            raise HarnessError(f"{folder / WEIGHTS_FILE}: unreadable or mismatched weights ({err})") from None
        model.folder, model.metrics = folder, meta.get("metrics", {})
        return model


@dataclass(frozen=True)
class Pair:
    prompt: str
    winner: Path
    loser: Path


def read_training_pairs(path: Path) -> list[Pair]:
    """Strict pairs (ties dropped) from a pairwise / ranking JSONL file; image ids are paths, relative to the file's
    folder unless absolute. A missing image is a one-line error naming file:line."""
    path = Path(path)
    pairs = []
    for comp in read_comparisons(path):
        files = []
        for image_id in comp.images:
            if not isinstance(image_id, str):
                raise DataError(f"{comp.where}: image {image_id!r} must be an image path to train a reward model")
            file = Path(image_id) if Path(image_id).is_absolute() else path.parent / image_id
            if not file.is_file():
                raise DataError(f"{comp.where}: image {image_id!r} not found ({file})")
            files.append(file)
        for k, m, winner in comp.pairs():
            if winner:
                w, lo = (k, m) if winner > 0 else (m, k)
                pairs.append(Pair(comp.prompt, files[w], files[lo]))
    return pairs


def bt_loss(r_w: torch.Tensor, r_l: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry pair loss, mean over pairs: -log σ(r_w - r_l) = softplus(-(r_w - r_l))."""
    return F.softplus(-(r_w - r_l)).mean()


def train_reward_model(pairs_jsonl: Path, out: Path, world: str = "builtin", seed: int = 0, epochs: int = 30,
                       overwrite: bool = False, encoder: ClipEncoder | None = None, **settings: object) -> RewardModel:
    """Train a reward model with the Bradley-Terry loss on the pairs of ``pairs_jsonl`` and save it to ``out``.

    A seeded ``heldout_fraction`` of the pairs (at least one) is held out; after each epoch the held-out pair loss
    is measured and the weights of the best epoch are kept; training stops after ``patience`` epochs without
    improvement. Metrics (initial and best held-out loss, held-out accuracy, per-epoch history) are saved with the
    model. ``settings`` overrides other :class:`RewardModelConfig` fields.
    """
    if world not in ("builtin", "real"):
        raise HarnessError(f"unknown world {world!r}; use builtin or real")
    if epochs < 1:
        raise HarnessError(f"--epochs must be at least 1, got {epochs}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise HarnessError(f"{out} already exists; choose another --out or pass --overwrite")
    known = set(RewardModelConfig.__dataclass_fields__) - {"world", "seed", "epochs"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise HarnessError(f"unknown reward-model setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    config = RewardModelConfig(world=world, seed=seed, epochs=epochs, **settings)  # type: ignore[arg-type]
    if not 0 < config.heldout_fraction < 1:
        raise HarnessError(f"heldout_fraction must be in (0, 1), got {config.heldout_fraction}")
    pairs = read_training_pairs(pairs_jsonl)
    if len(pairs) < 2:
        raise HarnessError(f"{pairs_jsonl}: {len(pairs)} strict pair(s); a reward model needs at least 2 "
                           "(one is held out)")
    model = RewardModel.build(config, encoder)

    # Encode every distinct image and prompt once; pairs index into those tensors.
    files = list(dict.fromkeys(f for p in pairs for f in (p.winner, p.loser)))
    prompts = list(dict.fromkeys(p.prompt for p in pairs))
    images = []
    for file in files:
        with Image.open(file) as img:
            images.append(img.convert("RGB"))
    image_x, text_x = model.image_inputs(images), model.text_inputs(prompts)
    file_row, prompt_row = {f: i for i, f in enumerate(files)}, {p: i for i, p in enumerate(prompts)}
    index = torch.tensor([[file_row[p.winner], file_row[p.loser], prompt_row[p.prompt]] for p in pairs])

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(pairs), generator=generator)
    n_held = max(1, round(config.heldout_fraction * len(pairs)))
    held, train = index[order[:n_held]], index[order[n_held:]]

    def pair_loss(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r_w = model.net(image_x[rows[:, 0]], text_x[rows[:, 2]])
        r_l = model.net(image_x[rows[:, 1]], text_x[rows[:, 2]])
        return bt_loss(r_w, r_l), (r_w > r_l).float().mean()

    @torch.no_grad()
    def heldout() -> tuple[float, float]:
        model.net.eval()
        loss, acc = pair_loss(held)
        return float(loss), float(acc)

    optimizer = torch.optim.AdamW(model.net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    initial_loss, initial_acc = heldout()
    best = (initial_loss, initial_acc, 0, copy.deepcopy(model.net.state_dict()))
    history = []
    for epoch in range(1, epochs + 1):
        model.net.train()
        perm = train[torch.randperm(len(train), generator=generator)]
        total = 0.0
        for start in range(0, len(perm), config.batch_size):
            loss, _ = pair_loss(perm[start : start + config.batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(perm[start : start + config.batch_size])
        held_loss, held_acc = heldout()
        history.append({"epoch": epoch, "train_loss": total / max(len(perm), 1), "heldout_loss": held_loss,
                        "heldout_accuracy": held_acc})
        if held_loss < best[0]:
            best = (held_loss, held_acc, epoch, copy.deepcopy(model.net.state_dict()))
        elif epoch - best[2] >= config.patience:
            break
    model.net.load_state_dict(best[3])
    model.net.eval()
    model.metrics = {"pairs": len(pairs), "train_pairs": len(train), "heldout_pairs": n_held,
                     "initial_heldout_loss": initial_loss, "initial_heldout_accuracy": initial_acc,
                     "best_heldout_loss": best[0], "best_heldout_accuracy": best[1], "best_epoch": best[2],
                     "epochs_run": len(history), "history": history, "pairs_file": str(pairs_jsonl)}
    model.save(out, overwrite=overwrite)
    return model


# --- pre-trained scorers -------------------------------------------------------------------------------------------


class AestheticMLP(nn.Module):
    """LAION's improved aesthetic predictor head (768 -> 1024 -> 128 -> 64 -> 16 -> 1, dropout between), in the
    layout of its released state dict (``layers.0`` ... ``layers.7``)."""

    def __init__(self, dim: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                                    nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.layers(embedding).squeeze(1)


class AestheticScorer:
    """The LAION aesthetic score: the MLP on the L2-normalised CLIP ViT-L/14 image embedding (prompt ignored)."""

    def __init__(self, encoder: ClipEncoder, mlp: AestheticMLP, source: str) -> None:
        self.encoder, self.mlp, self.source = encoder, mlp.eval(), source

    @torch.no_grad()
    def score(self, images: list[Image.Image], prompts: list[str]) -> np.ndarray:
        return self.mlp(self.encoder.images(images)).double().numpy()

    def scorer_id(self) -> dict:
        return {"reward": "aesthetic", "clip": self.encoder.name, "mlp": self.source}


class ClipPreferenceScorer:
    """PickScore / HPS-style preference score: ``scale`` x cos(image embedding, prompt embedding)."""

    def __init__(self, name: str, encoder: ClipEncoder, scale: float, source: str) -> None:
        self.name, self.encoder, self.scale, self.source = name, encoder, scale, source

    def score(self, images: list[Image.Image], prompts: list[str]) -> np.ndarray:
        cos = (self.encoder.images(images) * self.encoder.texts(prompts)).sum(-1)
        return (self.scale * cos).double().numpy()

    def scorer_id(self) -> dict:
        return {"reward": self.name, "model": self.encoder.name, "weights": self.source, "scale": self.scale}


def _local_file(params: dict[str, str], key: str, default: str, data_dir: Path | None, name: str) -> Path:
    """An explicit ``?key=PATH`` or ``rewards/<default>`` in a data folder; absent: a one-line error saying where."""
    candidates = [Path(params[key])] if key in params else [d / "rewards" / default for d in data_dirs(data_dir)]
    for path in candidates:
        if path.exists():
            return path
    raise HarnessError(f"reward:{name} needs local weights, found in none of: {', '.join(map(str, candidates))}; "
                       f"copy them there or pass reward:{name}?{key}=PATH (weights are never downloaded)")


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


class HFClip(nn.Module):
    """A transformers CLIPModel behind open_clip's encode_image / encode_text interface (projected embeddings)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @staticmethod
    def _projected(out: object) -> torch.Tensor:
        # transformers 5 returns a model output whose pooler_output holds the projection; 4.x returned the tensor.
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._projected(self.model.get_image_features(pixel_values=pixels))

    def encode_text(self, tokens: dict) -> torch.Tensor:
        return self._projected(self.model.get_text_features(**tokens))


def load_pickscore(folder: Path) -> tuple[ClipEncoder, float]:
    """PickScore from a local transformers folder (model + processor): score = logit_scale.exp() x cosine."""
    from transformers import AutoProcessor, CLIPModel

    try:
        model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        raise HarnessError(f"reward:pickscore: {folder} is not a local CLIP model folder with its processor ({err})"
                           ) from None

    def preprocess(img: Image.Image) -> torch.Tensor:
        return processor(images=img, return_tensors="pt")["pixel_values"][0]

    def tokenizer(texts: list[str]) -> dict:
        return dict(processor(text=texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt"))

    scale = float(model.logit_scale.detach().exp())
    return ClipEncoder(HFClip(model), preprocess, tokenizer, f"pickscore:{folder}"), scale


def load_reward(name: str, world: str, params: dict[str, str], data_dir: Path | None = None) -> object:
    """The scorer ``reward:NAME|PATH`` names: a learned reward model folder, or a pre-trained scorer by name."""
    path = Path(name)
    if (path / CONFIG_FILE).is_file():
        if params:
            raise HarnessError(f"reward:{name}: a learned reward model takes no parameters")
        model = RewardModel.load(path)
        if model.config.world != world:
            raise HarnessError(f"reward:{name} was trained for the {model.config.world} world, not {world}")
        return model
    if name not in PRETRAINED:
        what = "is a folder without " + CONFIG_FILE if path.is_dir() else "is neither a reward model folder nor a name"
        raise HarnessError(f"reward:{name} {what}; use a folder from `harness train-reward` or one of "
                           f"{', '.join(PRETRAINED)}")
    if world != "real":
        raise HarnessError(f"reward:{name} scores real photographs; in the builtin world use a learned reward model "
                           "(reward:PATH) or objective:NAME")
    if name == "aesthetic":
        mlp_file = _local_file(params, "mlp", AESTHETIC_FILE, data_dir, name)
        encoder = ClipEncoder.load(params.get("clip", "ViT-L-14"), params.get("pretrained", "openai"))
        mlp = AestheticMLP(int(encoder.texts(["a photo"]).shape[1]))
        mlp.load_state_dict(_load_state(mlp_file))
        return AestheticScorer(encoder, mlp, str(mlp_file))
    if name == "hps":
        weights = _local_file(params, "weights", HPS_FILE, data_dir, name)
        encoder = ClipEncoder.load(params.get("clip", "ViT-H-14"), str(weights))
        return ClipPreferenceScorer("hps", encoder, 1.0, str(weights))
    folder = _local_file(params, "model", PICKSCORE_DIR, data_dir, name)
    encoder, scale = load_pickscore(folder)
    return ClipPreferenceScorer("pickscore", encoder, scale, str(folder))
