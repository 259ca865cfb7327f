#!/usr/bin/env python3
"""PyTorch peer of the training benchmark: the toolkit's U-Net and training step in PyTorch.

A benchmark peer only, never a dependency of the toolkit. It answers one question for
`bench/train.ts`: how fast does a mainstream CPU framework run the *same* training step on the
same machine? To make that comparison fair it rebuilds, layer for layer, the U-Net that
`train/network.ts` describes (`unetForward`, `describeUNet`) and times the step of
`train/trainer.ts` (`Trainer.trainStep`):

1. t ~ U{0..T-1} (T = 1000, linear betas 1e-4..0.02) and eps ~ N(0, I) per example;
2. x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps;
3. L_simple = MSE(net(x_t, t), eps), dropout active (training mode);
4. backward, global-norm clipping at 1 (a non-finite loss or norm is an error), Adam
   (lr 2e-4 with the trainer's linear warm-up, betas 0.9/0.999, epsilon 1e-8 placed as the
   trainer places it);
5. EMA of every weight with decay min(0.9999, (1 + s) / (10 + s)).

float32, NCHW (PyTorch's native layout), CPU only. The images are random values in [-1, 1]:
the cost of a step does not depend on their content.

Usage (run with Debian's interpreter, which has python3-torch):

  /usr/bin/python3 bench/train_peer.py --config '<UNetConfig JSON>' [--threads N]
      [--batch B] [--steps K] [--warmup W] [--seed S] [--params-only] [--list-params]

`--config -` reads the JSON from stdin. Prints one line of JSON to stdout:

  {"torch": "1.13.0", "threads": 2, "batch": 64, "params": 686769,
   "steps_per_s": 1.23, "seconds_per_step": 0.81}

`--params-only` skips the timing (steps_per_s and seconds_per_step are null);
`--list-params` prints instead one JSON array of [name, shape] in the canonical names and
layouts of network.ts (conv kernels [kh, kw, in, out], dense [in, out]), for comparing the
architecture with `describeUNet`. Errors go to stderr with exit status 1 (2 for bad usage).

Reading the figures: they measure this PyTorch build as much as the network. Debian's
python3-torch runs convolutions through oneDNN but dense layers and attention's batched matrix
products through the system's generic libblas (the reference BLAS unless an optimised one is
installed as the libblas.so.3 alternative). Its OpenMP threads spin while waiting, so on a
machine busy with other work more threads can be much slower than one; OMP_WAIT_POLICY=PASSIVE
in the environment makes them sleep instead.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

# The official code's GroupNorm epsilon (train/tfjs_ops.ts GROUP_NORM_EPSILON).
GROUP_NORM_EPSILON = 1e-6
# DDPM's schedule as lib/schedule.ts makes it by default.
TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02
# Optimiser defaults of train/trainer.ts (the paper's CIFAR-10 settings).
LR, WARMUP_STEPS, GRAD_CLIP = 2e-4, 5000, 1.0
BETA1, BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8
EMA_DECAY = 0.9999
# Conditional networks: share of labels trained as "no class" (trainer's labelDropout).
LABEL_DROPOUT = 0.1


class ConfigError(ValueError):
    """A UNetConfig that network.ts's validateConfig would reject."""


def validate_config(config: dict) -> dict:
    """Checks a UNetConfig as network.ts's validateConfig does; returns it with defaults."""
    required = ["imageSize", "channels", "ch", "chMult", "numResBlocks", "attnResolutions",
                "dropout", "groups"]
    missing = [k for k in required if k not in config]
    if missing:
        raise ConfigError(f"config lacks {', '.join(missing)}")

    def positive(name: str, v) -> None:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")

    for name in ["imageSize", "channels", "ch", "numResBlocks", "groups"]:
        positive(name, config[name])
    num_classes = config.get("numClasses") or 0
    if num_classes:
        positive("numClasses", num_classes)
    if not config["chMult"]:
        raise ConfigError("chMult must list at least one level")
    for i, m in enumerate(config["chMult"]):
        positive(f"chMult[{i}]", m)
    if not 0 <= config["dropout"] < 1:
        raise ConfigError(f"dropout must be in [0, 1), got {config['dropout']}")
    size = config["imageSize"]
    for level in range(len(config["chMult"]) - 1):
        if size % 2:
            raise ConfigError(f"imageSize {config['imageSize']} cannot be halved at level {level}")
        size //= 2
    for c in [config["ch"]] + [m * config["ch"] for m in config["chMult"]]:
        if c % config["groups"]:
            raise ConfigError(
                f"groups ({config['groups']}) must divide every channel count, not {c}")
    if config["ch"] % 2 or config["ch"] < 4:
        raise ConfigError(
            f"ch (the timestep embedding's width) must be even and >= 4, got {config['ch']}")
    return {**config, "numClasses": num_classes}


# --- Layers with network.ts's initialisers ------------------------------------------------------

def _fan_avg_uniform_(w: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """network.ts's fanAvgUniform: U(-l, l), l = sqrt(3 / ((fanIn + fanOut) / 2))."""
    limit = math.sqrt(3 / ((fan_in + fan_out) / 2))
    with torch.no_grad():
        w.uniform_(-limit, limit)


class Conv(nn.Conv2d):
    """A convolution with TensorFlow's 'same' padding, as the tfjs ops use.

    For a stride-2 convolution of an even size, TensorFlow puts the one extra row and column
    of padding at the end (bottom, right); PyTorch's symmetric `padding` cannot, so the
    padding is applied explicitly with F.pad.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                 zero_init: bool = False):
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0)
        if zero_init:  # residual outputs, attention output, the final convolution
            nn.init.zeros_(self.weight)
        else:
            _fan_avg_uniform_(self.weight, in_ch * kernel * kernel, out_ch * kernel * kernel)
        nn.init.zeros_(self.bias)
        self.symmetric = stride == 1  # odd kernel, stride 1: same padding on both sides

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        if self.symmetric:
            return F.conv2d(x, self.weight, self.bias, 1, k // 2)
        pads = []
        for size in (x.shape[3], x.shape[2]):  # F.pad lists the last dimension first
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, s)


class Dense(nn.Linear):
    def __init__(self, in_units: int, out_units: int):
        super().__init__(in_units, out_units)
        _fan_avg_uniform_(self.weight, in_units, out_units)
        nn.init.zeros_(self.bias)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    # Scale ones, shift zeros: PyTorch's defaults, and network.ts's.
    return nn.GroupNorm(groups, channels, eps=GROUP_NORM_EPSILON)


# --- Blocks of unetForward ----------------------------------------------------------------------
# Attributes are registered in the order unetForward meets the parameters, so that
# named_parameters() lists a block's parameters in walk order.

class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = group_norm(in_ch, groups)
        self.conv1 = Conv(in_ch, out_ch, 3)
        self.temb_proj = Dense(temb_dim, out_ch)
        self.norm2 = group_norm(out_ch, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = Conv(out_ch, out_ch, 3, zero_init=True)
        # A 1x1 convolution on the skip path only where the channel count changes.
        self.skip = Conv(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, h: torch.Tensor, temb_act: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.silu(self.norm1(h)))
        y = y + self.temb_proj(temb_act)[:, :, None, None]
        y = self.conv2(self.dropout(F.silu(self.norm2(y))))
        return (h if self.skip is None else self.skip(h)) + y


class AttnBlock(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.q = Conv(channels, channels, 1)
        self.k = Conv(channels, channels, 1)
        self.v = Conv(channels, channels, 1)
        self.proj_out = Conv(channels, channels, 1, zero_init=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, c, height, width = h.shape
        normed = self.norm(h)
        # [n, c, h, w] -> [n, hw, c]: softmax(q k^T / sqrt(c)) v over the h*w positions.
        flat = lambda t: t.reshape(n, c, height * width).transpose(1, 2)  # noqa: E731
        q, k, v = flat(self.q(normed)), flat(self.k(normed)), flat(self.v(normed))
        weights = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * (1 / math.sqrt(c)), dim=-1)
        mixed = torch.bmm(weights, v).transpose(1, 2).reshape(n, c, height, width)
        return h + self.proj_out(mixed)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The official get_timestep_embedding: sin then cos of t exp(-ln(10000) i / (half - 1))."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - 1))
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class UNet(nn.Module):
    """network.ts's unetForward as a module. Submodule paths are network.ts's parameter paths
    (`down.1.res.0.conv1`), so `canonical_params` can name every tensor as describeUNet does."""

    def __init__(self, config: dict):
        super().__init__()
        config = validate_config(config)
        self.config = config
        ch, groups, dropout = config["ch"], config["groups"], config["dropout"]
        ch_mult, num_res = config["chMult"], config["numResBlocks"]
        attn_res = set(config["attnResolutions"])
        temb_dim = 4 * ch
        res = lambda i, o: ResBlock(i, o, temb_dim, groups, dropout)  # noqa: E731

        self.temb = nn.ModuleDict({
            "dense0": Dense(ch, temb_dim),
            "dense1": Dense(temb_dim, temb_dim),
        })
        self.num_classes = config["numClasses"]
        if self.num_classes:
            # One extra row, index numClasses, for "no class" (classifier-free guidance).
            # N(0, 0.3^2) rows, the last zero, as network.ts's classEmbedding initialiser.
            table = torch.randn(self.num_classes + 1, temb_dim) * 0.3
            table[-1] = 0
            self.class_emb = nn.ParameterDict({"w": nn.Parameter(table)})
        self.conv_in = Conv(config["channels"], ch, 3)

        # Down path: mirrors unetForward's bookkeeping of channels, sizes and skips.
        channels, size = ch, config["imageSize"]
        skip_channels = [channels]
        self.down = nn.ModuleDict()
        for level, mult in enumerate(ch_mult):
            blocks = nn.ModuleDict({"res": nn.ModuleList(), "attn": nn.ModuleDict()})
            for i in range(num_res):
                blocks["res"].append(res(channels, ch * mult))
                channels = ch * mult
                if size in attn_res:
                    blocks["attn"][str(i)] = AttnBlock(channels, groups)
                skip_channels.append(channels)
            if level != len(ch_mult) - 1:
                blocks["downsample"] = Conv(channels, channels, 3, stride=2)
                size //= 2
                skip_channels.append(channels)
            self.down[str(level)] = blocks

        self.mid = nn.ModuleDict({
            "res": nn.ModuleList([res(channels, channels), res(channels, channels)]),
            "attn": nn.ModuleList([AttnBlock(channels, groups)]),
        })

        # Up path: one more block per level than on the way down, each fed a skip.
        self.up = nn.ModuleDict()
        for level in reversed(range(len(ch_mult))):
            blocks = nn.ModuleDict({"res": nn.ModuleList(), "attn": nn.ModuleDict()})
            for i in range(num_res + 1):
                blocks["res"].append(res(channels + skip_channels.pop(), ch * ch_mult[level]))
                channels = ch * ch_mult[level]
                if size in attn_res:
                    blocks["attn"][str(i)] = AttnBlock(channels, groups)
            if level != 0:
                blocks["upsample"] = Conv(channels, channels, 3)
                size *= 2
            self.up[str(level)] = blocks
        assert not skip_channels, "skip connections left over (a bug)"

        self.norm_out = group_norm(channels, groups)
        self.conv_out = Conv(channels, config["channels"], 3, zero_init=True)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None):
        ch_mult, num_res = self.config["chMult"], self.config["numResBlocks"]
        temb = self.temb["dense0"](timestep_embedding(t, self.config["ch"]))
        temb = self.temb["dense1"](F.silu(temb))
        if self.num_classes:
            if y is None:
                raise ValueError(
                    f"the network is conditional on {self.num_classes} classes and needs labels y")
            temb = temb + self.class_emb["w"][y]
        # network.ts applies silu(temb) inside every residual block; the value is the same each
        # time, so it is computed once here (an [n, 4 ch] vector: no measurable cost).
        temb_act = F.silu(temb)

        h = self.conv_in(x)
        skips = [h]
        for level in range(len(ch_mult)):
            blocks = self.down[str(level)]
            for i in range(num_res):
                h = blocks["res"][i](h, temb_act)
                if str(i) in blocks["attn"]:
                    h = blocks["attn"][str(i)](h)
                skips.append(h)
            if "downsample" in blocks:
                h = blocks["downsample"](h)
                skips.append(h)

        h = self.mid["res"][0](h, temb_act)
        h = self.mid["attn"][0](h)
        h = self.mid["res"][1](h, temb_act)

        for level in reversed(range(len(ch_mult))):
            blocks = self.up[str(level)]
            for i in range(num_res + 1):
                h = blocks["res"][i](torch.cat([h, skips.pop()], dim=1), temb_act)
                if str(i) in blocks["attn"]:
                    h = blocks["attn"][str(i)](h)
            if "upsample" in blocks:
                h = blocks["upsample"](F.interpolate(h, scale_factor=2, mode="nearest"))

        return self.conv_out(F.silu(self.norm_out(h)))

    def canonical_params(self) -> list[tuple[str, list[int]]]:
        """[name, shape] of every parameter in network.ts's names and layouts: conv kernels
        [kh, kw, in, out] (PyTorch: [out, in, kh, kw]), dense [in, out] (PyTorch: [out, in]),
        norm scale `.g`, biases and shifts `.b`."""
        modules = dict(self.named_modules())
        out = []
        for name, p in self.named_parameters():
            path, leaf = name.rsplit(".", 1)
            module = modules.get(path)
            shape = list(p.shape)
            if isinstance(module, nn.Conv2d) and leaf == "weight":
                shape = [shape[2], shape[3], shape[1], shape[0]]
            elif isinstance(module, nn.Linear) and leaf == "weight":
                shape = [shape[1], shape[0]]
            if isinstance(module, nn.ParameterDict):  # class_emb.w
                canonical = name
            elif leaf == "weight":
                canonical = f"{path}.{'g' if isinstance(module, nn.GroupNorm) else 'w'}"
            else:
                canonical = f"{path}.b"
            out.append((canonical, shape))
        return out


# --- The training step of train/trainer.ts ------------------------------------------------------

class PeerTrainer:
    def __init__(self, model: UNet):
        self.model = model
        self.params = [p for p in model.parameters()]
        self.ema = [p.detach().clone() for p in self.params]
        betas = torch.linspace(BETA_START, BETA_END, TIMESTEPS, dtype=torch.float64)
        abar = torch.cumprod(1 - betas, dim=0)
        self.sqrt_abar = abar.sqrt().float()
        self.sqrt_one_minus_abar = (1 - abar).sqrt().float()
        # PyTorch's Adam is the same update as the trainer's except where epsilon goes: the
        # trainer divides by sqrt(v) + eps (TensorFlow's form), PyTorch by
        # sqrt(v / (1 - beta2^k)) + eps'. They agree with eps' = eps / sqrt(1 - beta2^k), set
        # each step below, as is the warm-up learning rate.
        self.optimizer = torch.optim.Adam(self.params, lr=LR, betas=(BETA1, BETA2),
                                          eps=ADAM_EPSILON, foreach=True)
        self.step = 0

    def train_step(self, x0: torch.Tensor) -> tuple[float, float]:
        """One step on NCHW x0 in [-1, 1]; returns (loss, gradient norm before clipping)."""
        n = x0.shape[0]
        t = torch.randint(0, TIMESTEPS, (n,))
        noise = torch.randn_like(x0)
        y = None
        if self.model.num_classes:
            # Random labels, a LABEL_DROPOUT share replaced by "no class", as the trainer does.
            y = torch.randint(0, self.model.num_classes, (n,))
            y[torch.rand(n) < LABEL_DROPOUT] = self.model.num_classes
        a = self.sqrt_abar[t].view(n, 1, 1, 1)
        s = self.sqrt_one_minus_abar[t].view(n, 1, 1, 1)
        xt = a * x0 + s * noise

        self.model.train()  # dropout on
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(self.model(xt, t, y), noise)
        loss.backward()
        loss_value = loss.item()
        # Raises before changing anything when the norm is NaN or infinite, as the trainer's
        # NonFiniteLossError does; otherwise scales by clip / max(norm, clip).
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, GRAD_CLIP,
                                                         error_if_nonfinite=True))
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"step {self.step + 1}: the loss is {loss_value}")

        k = self.step + 1
        group = self.optimizer.param_groups[0]
        group["lr"] = LR * min(1, k / WARMUP_STEPS) if WARMUP_STEPS > 0 else LR
        group["eps"] = ADAM_EPSILON / math.sqrt(1 - BETA2 ** k)
        self.optimizer.step()

        decay = min(EMA_DECAY, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            torch._foreach_mul_(self.ema, decay)
            torch._foreach_add_(self.ema, self.params, alpha=1 - decay)
        self.step = k
        return loss_value, grad_norm


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True,
                        help="the UNetConfig as JSON, or - to read it from stdin")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--batch", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed (default 0)")
    parser.add_argument("--params-only", action="store_true",
                        help="build the network and report its parameter count, no timing")
    parser.add_argument("--list-params", action="store_true",
                        help="print [name, shape] of every parameter in network.ts's layouts")
    args = parser.parse_args(argv)
    for name in ["threads", "batch", "steps"]:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")

    try:
        try:
            config = json.loads(sys.stdin.read() if args.config == "-" else args.config)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config is not valid JSON ({e})") from None
        if not isinstance(config, dict):
            raise ConfigError("the config must be a JSON object (a UNetConfig)")
        torch.manual_seed(args.seed)
        torch.set_num_threads(args.threads)
        model = UNet(config)
        if args.list_params:
            print(json.dumps(model.canonical_params()))
            return 0
        params = sum(p.numel() for p in model.parameters())
        result = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                  "batch": args.batch, "params": params,
                  "steps_per_s": None, "seconds_per_step": None}
        if not args.params_only:
            trainer = PeerTrainer(model)
            shape = (args.batch, config["channels"], config["imageSize"], config["imageSize"])
            x0 = torch.rand(shape) * 2 - 1
            for _ in range(args.warmup):  # allocator and oneDNN primitive caches warm up
                trainer.train_step(x0)
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step(x0)
            seconds = (time.perf_counter() - start) / args.steps
            result["steps_per_s"] = 1 / seconds
            result["seconds_per_step"] = seconds
        print(json.dumps(result))
        return 0
    except (ConfigError, FloatingPointError, RuntimeError, TypeError, ValueError) as e:
        print(f"train_peer: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
