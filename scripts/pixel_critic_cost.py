"""Cost of one critic update from pixels: the frozen camera features the RL stages use against a small
trainable conv encoder with DrQ-v2's random shift (the alternative docs/rl.md, "Pixels in the RL stages",
weighs). The twin's pixel spec: 2 cameras 128x128, 8-d proprio, n_obs_steps 2, chunks of 8 x 7.

    python scripts/pixel_critic_cost.py [--batch 256] [--updates 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.policies.critics import QEnsemble
from robot_rl.policies.encoders.image import ImageEncoder
from robot_rl.policies.model_config import PolicyConfig

CAMERAS, STEPS, HW, PROPRIO, ACTION = 2, 2, 128, 8, 8 * 7


class DrQEncoder(nn.Module):
    """DrQ-v2's encoder: 4 3x3 convs of 32 channels (the first stride 2), flattened, then a 50-d LayerNorm
    trunk; random shift: pad 4 and crop back (one shift per batch here, DrQ-v2 draws one per frame: this
    understates the cost slightly)."""

    def __init__(self, hw: int = HW) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(3, 32, 3, 2), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
                                   nn.Conv2d(32, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            n = self.convs(torch.zeros(1, 3, hw, hw)).shape[1]
        self.trunk = nn.Sequential(nn.Linear(n, 50), nn.LayerNorm(50), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        padded = F.pad(x, (4, 4, 4, 4), mode="replicate")
        dx, dy = torch.randint(0, 9, (2,))          # one shift per batch keeps this cheap: a lower bound
        return self.trunk(self.convs(padded[:, :, dy:dy + h, dx:dx + w]))


def time_updates(step, updates: int) -> float:
    step()                                          # warm-up (allocations)
    t0 = time.perf_counter()
    for _ in range(updates):
        step()
    return (time.perf_counter() - t0) / updates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--updates", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    B = a.batch
    action = torch.randn(B, ACTION)
    target = torch.randn(B)

    cfg = PolicyConfig()
    out_dim = ImageEncoder((3, HW, HW), cfg.crop_ratio, cfg.image_width, cfg.image_blocks, cfg.image_pool,
                           cfg.num_keypoints).out_dim
    feat_dim = STEPS * (CAMERAS * out_dim + PROPRIO)
    q = QEnsemble(feat_dim, ACTION, 2, (256, 256))
    opt = torch.optim.Adam(q.parameters(), lr=3e-4)
    cached = torch.randn(B, feat_dim)                # what the replay holds: features computed once per frame

    def frozen_step() -> None:
        loss = (q(cached, action) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    enc = DrQEncoder()
    q2 = QEnsemble(STEPS * (CAMERAS * 50 + PROPRIO), ACTION, 2, (256, 256))
    opt2 = torch.optim.Adam([*enc.parameters(), *q2.parameters()], lr=3e-4)
    frames = torch.randint(0, 256, (B * STEPS * CAMERAS, 3, HW, HW), dtype=torch.uint8)
    proprio = torch.randn(B, STEPS * PROPRIO)

    def conv_step() -> None:
        z = enc(frames.float() / 255).reshape(B, -1)   # the critic's encoder learns from the TD loss
        loss = (q2(torch.cat([z, proprio], 1), action) - target).pow(2).mean()
        opt2.zero_grad()
        loss.backward()
        opt2.step()

    frozen_s = time_updates(frozen_step, a.updates)
    conv_s = time_updates(conv_step, a.updates)
    print(f"batch {B}, {a.threads} thread(s): frozen features {frozen_s * 1e3:.1f} ms/update, "
          f"trainable DrQ-v2 encoder {conv_s * 1e3:.0f} ms/update ({conv_s / frozen_s:.0f}x; "
          f"{B * STEPS * CAMERAS} frames per update, obs only: next obs would add as many forward passes)")


if __name__ == "__main__":
    main()
