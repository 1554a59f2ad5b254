"""Autoguidance of the shipped content model by the older, weaker one (Karras et al. 2024): first frames.

The guided output is good + (w - 1) * (good - bad), `bad` the content model shipped before (commit
bd4e944, extracted to runs/old-content); 512 first frames at ddpm x N, the seeds of eval/first_frames.py.

    python eval/autoguidance.py W [STEPS]
"""
import json, sys, time
sys.path.insert(0, "eval")  # run from the repository root
import numpy as np
import torch
from common import batches, gray, load_pipeline
from digits import count_shares, digit_sets, load_classifier, translation_ceiling
from vidm.checkpoint import load_model

w = float(sys.argv[1]); steps = int(sys.argv[2]) if len(sys.argv) > 2 else 50
torch.set_num_threads(1)
pipe = load_pipeline("checkpoints/moving-mnist-64", "cpu")
bad = load_model("runs/old-content", "content", "cpu")
good = pipe.content
def guided(labels=None):
    def f(x, t):
        out_g = good(x, t, labels)
        out = out_g if w == 1 else out_g + (w - 1) * (out_g - bad(x, t, labels))
        return good.diffusion.split(x, t, out)
    return f
good.denoiser = guided
net = load_classifier()
frames = np.empty((512, 64, 64), np.uint8)
start = time.time()
for lo, hi in batches(512, 64):
    frames[lo:hi] = gray(pipe(num_videos=hi - lo, num_frames=1, content_steps=steps, content_sampler="ddpm", seed=0 + lo).frames)[:, 0]
sets = digit_sets(net, frames)
r = {"w": w, "steps": steps, "seconds": time.time() - start, "digits": count_shares(sets),
     "ceiling": translation_ceiling(net, frames),
     "classes": sets.sum(0).tolist()}
print(json.dumps(r))
