"""Write a grid PNG of randomized observations, one row per randomization preset (or, with
``--domains``, the simulator above the proxy-real target domain on the same seeds).

    python scripts/render_grid.py --out envs/assets/randomization_grid.png
    python scripts/render_grid.py --domains --out envs/assets/proxy_real_grid.png

Each tile is a policy observation (64x64 by default, after sensor corruption), scaled up with
nearest-neighbour so the pixels the policy really sees stay visible.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: E402,F401
from envs.textures import write_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("randomization_grid.png"), help="PNG to write")
    parser.add_argument("--columns", type=int, default=8, help="tiles per row")
    parser.add_argument("--image-size", type=int, default=64, help="observation size, pixels")
    parser.add_argument("--tile", type=int, default=128, help="tile size in the PNG, pixels")
    parser.add_argument("--presets", nargs="+", default=["none", "light", "full", "full"],
                        help="one row per preset")
    parser.add_argument("--domains", action="store_true",
                        help="two rows: the simulator (full randomization) and the proxy-real domain, same seeds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.suffix.lower() != ".png":
        parser.error(f"--out must end in .png, got {args.out}")

    rows = []
    if args.domains:
        plan = [("sim", "full", "sim"), ("proxy_real", "full", "proxy-real")]
    else:
        plan = [("sim", preset, preset) for preset in args.presets]
    for r, (domain, preset, label) in enumerate(plan):
        env = gym.make("PandaGrasp-v0", image_size=args.image_size, randomization=preset, domain=domain)
        tiles = []
        for c in range(args.columns):
            # Same seeds in every row for --domains (the same worlds, seen two ways).
            seed = args.seed + c if args.domains else args.seed + 1000 * r + c
            obs, _ = env.reset(seed=seed)
            for _ in range(3):  # a few steps so the gripper moves and delayed frames catch up
                obs, *_ = env.step(env.action_space.sample())
            tile = cv2.resize(obs["image"], (args.tile, args.tile), interpolation=cv2.INTER_NEAREST)
            cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
            tiles.append(tile)
        env.close()
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_image(args.out, np.ascontiguousarray(grid[:, :, ::-1]), "the randomization grid")
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
