"""Served models: samples/s through a server against the same model in-process, and the image payload's cost.

* ``image encoding``: a 336x336 noisy image to a lossless data URI (PNG at compress level 1, BMP), per image.
* ``transformers serve`` (chat protocol): the demo assistant served by a real ``transformers serve`` that this
  bench starts on a loopback port, against the same checkpoint in-process, on the same noisy samples
  (``Smoothed.frontier``, no cache; the answers are compared too).
* ``vLLM`` (token-in protocol): only with ``--vllm-url URL --vllm-model DIR`` (``scripts/vllm_cpu.sh``): the tiny
  LLaVA of ``scripts/tiny_llava.py`` through vLLM against the same folder in-process.

On this project's 2-core CPU machine these models take milliseconds a sample, so the figures measure the
protocol's overhead (HTTP, JSON, PNG), not a server's throughput on a GPU fleet.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _encoding(repeats: int) -> None:
    from certkit.models.served import image_data_uri

    rng = np.random.default_rng(0)
    image = (rng.random((336, 336, 3)) * 255).round().astype(np.uint8)
    for fmt in ("png", "bmp"):
        t0 = time.perf_counter()
        for _ in range(repeats):
            uri, _ = image_data_uri(image, fmt)
        per = (time.perf_counter() - t0) / repeats
        print(f"image encoding  {fmt}: {per * 1e3:6.2f} ms per 336x336 image, {len(uri) / 1e3:7.1f} kB data URI")


def _time(model, case, n, oracle):
    import certkit
    from certkit.noise import Gaussian

    smoothed = certkit.Smoothed(model, oracle, image=Gaussian(0.5), seed=0)
    t0 = time.perf_counter()
    cert = smoothed.frontier(case, outcome=oracle.all_labels[0], n=n, max_edits=0)
    return time.perf_counter() - t0, cert.label_counts


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _transformers_serve(n: int) -> None:
    import httpx

    import certkit
    from certkit import demo
    from certkit.demo.train import answer_oracle
    from certkit.models import ServedVLM

    folder = Path(demo.__file__).parent / "weights" / "assistant"
    port = _free_port()
    exe = str(Path(sys.executable).parent / "transformers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        case = certkit.load_cases(ROOT / "audits" / "data" / "cases.jsonl")[0]
        local = demo.load_assistant(batch_size=64)
        model_id = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            served = ServedVLM(url, model_id, revision="demo", max_new_tokens=6, batch_size=64, concurrency=8)
        oracle = answer_oracle()
        t_local, c_local = _time(local, case, n, oracle)
        t_served, c_served = _time(served, case, n, oracle)
        print(f"transformers serve (chat)  demo assistant, n={n}: in-process {n / t_local:7.1f} samples/s, "
              f"served {n / t_served:7.1f} samples/s ({t_served / t_local:.1f}x the time); same counts: {c_local == c_served}")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _vllm(url: str, folder: str, n: int) -> None:
    import certkit
    from certkit.models import ServedVLM, VisionLanguageModel
    from certkit.oracles import ClassifierOracle

    case = certkit.load_cases(ROOT / "audits" / "data" / "cases.jsonl")[0]
    case = certkit.Case("tiny", "pick up the red cube", case.image)
    local = VisionLanguageModel.from_pretrained(folder, device="cpu", max_new_tokens=8, batch_size=64)
    served = ServedVLM(url, folder, revision="tiny", protocol="vllm", processor=folder, max_new_tokens=8, batch_size=64,
                       concurrency=64, batch_invariant=True)
    oracle = ClassifierOracle(lambda answers: ["word" if a.split() else "empty" for a in answers], ("word", "empty"), name="answered")
    t_local, c_local = _time(local, case, n, oracle)
    t_served, c_served = _time(served, case, n, oracle)
    print(f"vLLM (token-in)  tiny LLaVA, n={n}: in-process {n / t_local:7.1f} samples/s, served {n / t_served:7.1f} samples/s "
          f"({t_served / t_local:.1f}x the time); same counts: {c_local == c_served}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_served", description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=256, help="samples per timing (default 256)")
    ap.add_argument("--vllm-url", default=os.environ.get("CERTKIT_VLLM_URL"))
    ap.add_argument("--vllm-model", default=os.environ.get("CERTKIT_VLLM_MODEL"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    _encoding(50)
    _transformers_serve(args.n)
    if args.vllm_url and args.vllm_model:
        _vllm(args.vllm_url, args.vllm_model, args.n)
    else:
        print("vLLM: skipped (pass --vllm-url and --vllm-model; scripts/vllm_cpu.sh starts one)")


if __name__ == "__main__":
    main()
