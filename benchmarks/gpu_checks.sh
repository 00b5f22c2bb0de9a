#!/usr/bin/env bash
# The GPU checks as one run on a CUDA machine whose Python already has torch (and cupy, triton):
# the GPU training-step benchmark (asa-snn with and without ASA against the ReLU floors and the
# peers), then every test that runs on CUDA. Wheels of the pure-Python dependencies the machine
# lacks travel in .whl/ (see benchmarks/README.md, "GPU"); results go to $OUT (default: /tmp/gpu).
set -u
OUT=${OUT:-/tmp/gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=$PWD:/tmp/site
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout "${BENCH_S:-300}" python3 benchmarks/train_step.py --device cuda --steps-T 16 60 --batch 32 \
    --rounds "${ROUNDS:-3}" --only "asa-snn (none)" "asa-snn (asa2)" "asa-snn (asa1)" "asa-snn (asa2, reference)" \
    "asa-snn (asa2, compiled)" "asa-snn (asa1, compiled)" "relu (batched)" \
    "relu (batched, NHWC)" spikingjelly "spikingjelly (cupy)" "spikingjelly (triton)" snntorch norse \
    --out "$OUT/train_step_cuda.json" 2>&1 | tee "$OUT/train_step_cuda.log"
timeout "${TESTS_S:-200}" python3 -m pytest -q -p no:cacheprovider -k "cuda or CUDA" \
    tests/models/test_neurons.py tests/models/test_attention_stepwise.py tests/models/test_batch_norm_pool.py \
    tests/test_devices.py tests/train/test_scale.py tests/convert/test_fold.py 2>&1 | tee "$OUT/pytest_cuda.log"
# where an ASA-2 step's GPU time goes: torch.profiler over 3 steps at T = 16, batch 32
timeout 120 python3 - <<'PY' 2>&1 | tee "$OUT/profile_cuda.log"
import sys

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, "benchmarks")
import nets

nets.TIMESTEPS = 16
with torch.device("cuda"):
    net = nets.BUILDERS["asa-snn (asa2)"]()
net.module.cuda().train()
x = (torch.rand(16, 32, 2, 32, 32, device="cuda") < 0.2).float()
y = torch.randint(0, 11, (32,), device="cuda")
for _ in range(3):
    F.cross_entropy(net.forward(x), y).backward()
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    for _ in range(3):
        F.cross_entropy(net.forward(x), y).backward()
    torch.cuda.synchronize()
table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=40)
print(table)
labels = [e for e in prof.key_averages() if e.key.startswith("asa.")]
for e in sorted(labels, key=lambda e: e.key):
    print(f"{e.key:40s} cpu {e.cpu_time_total / 3e3:8.2f} ms/step  count {e.count // 3}")
PY
