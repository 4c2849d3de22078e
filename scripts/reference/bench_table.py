"""The markdown tables of scripts/bench.sh (CPU) and scripts/bench-gpu.sh (CUDA).

usage: bench_table.py cpu WORK STEPS THREADS MODEL_DIR ROUNDS
       bench_table.py gpu WORK STEPS MODEL_DIR ROUNDS [BATCH]  (BATCH in words; default "batch 32")

WORK holds what the benchmark left: for sentence-mtl runs a checkpoint folder NAME/ (its
train_log.jsonl), for reference runs NAME.json, and NAME.rss (peak RSS in KB from
/usr/bin/time) for both; `peak_samples` (CPU: fp32 GFLOP/s, one sample per line, the best
is the peak) or `peak.json` (GPU: fp32 and bf16 TFLOP/s); on the GPU also NAME.gpu_idle and
NAME.gpu_used (nvidia-smi's memory.used in MiB, before and every 100 ms during the run).
Model FLOPs: 6 x non-embedding parameters x real tokens for training (2 x when the backbone is
frozen: forward only).
"""
import json
import math
import statistics
import sys
from pathlib import Path

from safetensors import safe_open


def non_embedding_params(model_dir):
    with safe_open(f"{model_dir}/model.safetensors", "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys()
                   if not k.startswith(("embeddings.", "pooler.")))


def rss_mb(work, name):
    return int((work / f"{name}.rss").read_text().split()[-1]) / 1024


def gpu_mb(work, name):
    """Peak GPU memory the run added (MiB): the most in use during it minus the idle level
    before it, or None where nvidia-smi could not be read."""
    idle, used = work / f"{name}.gpu_idle", work / f"{name}.gpu_used"
    if not (idle.exists() and used.exists()):
        return None
    samples = [int(x) for x in used.read_text().split() if x.isdigit()]
    before = [int(x) for x in idle.read_text().split() if x.isdigit()]
    return max(samples) - before[0] if samples and before else None


def ours(work, name):
    records = [json.loads(line) for line in open(work / name / "train_log.jsonl")]
    summary = [r for r in records if r["type"] == "summary"][-1]
    last_eval = [r for r in records if r["type"] == "eval"][-1]
    return {
        "examples_per_sec": summary["examples_per_sec"], "tokens_per_sec": summary["tokens_per_sec"],
        "padding_ratio": summary["padded_tokens"] / summary["tokens"], "peak_rss_mb": rss_mb(work, name),
        "dev": {t: {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]} for t, s in last_eval["tasks"].items()},
    }


def ref(work, name):
    r = json.loads((work / f"{name}.json").read_text())
    r["peak_rss_mb"] = rss_mb(work, name)
    return r


def median_run(runs):
    """One result whose speed is the median over rounds (dev metrics agree across rounds)."""
    r = dict(runs[0])
    for key in ("examples_per_sec", "tokens_per_sec", "peak_rss_mb"):
        r[key] = statistics.median(x[key] for x in runs)
    return r


class Rounds:
    """Alternated rounds of (sentence-mtl, reference) on the same batches: median speeds, and
    the speed ratio as the median of the per-round ratios (each round's two runs are back to
    back, so a machine's drift over minutes cancels within a round, not across rounds)."""

    def __init__(self, work, ours_prefix, ref_prefix, rounds):
        self.pairs = [(ours(work, f"{ours_prefix}_{i}"), ref(work, f"{ref_prefix}_{i}")) for i in range(1, rounds + 1)]
        self.ours = median_run([a for a, _ in self.pairs])
        self.ref = median_run([b for _, b in self.pairs])
        # Same batches, so examples/s and tokens/s give the same ratio within a round.
        self.ratios = [a["examples_per_sec"] / b["examples_per_sec"] for a, b in self.pairs]
        self.ratio = statistics.median(self.ratios)

    def table(self, label):
        lines = [f"\n| {label}, round | sentence-mtl examples/s | PyTorch examples/s | ratio |\n|---|---:|---:|---:|"]
        for i, ((a, b), x) in enumerate(zip(self.pairs, self.ratios), 1):
            lines.append(f"| {i} | {a['examples_per_sec']:.1f} | {b['examples_per_sec']:.1f} | {x:.2f}x |")
        lines.append(f"\nmedian ratio {self.ratio:.2f}x (min {min(self.ratios):.2f}x, max {max(self.ratios):.2f}x)")
        return "\n".join(lines)


def row(label, impl, r, flops_per_token, peak_flops):
    d = r["dev"]
    return (f"| {label} | {impl} | {r['examples_per_sec']:.1f} | {r['tokens_per_sec']:.0f} | {r['padding_ratio']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {100*d['trec']['accuracy']:.1f} / {100*d['trec']['macro_f1']:.1f} | "
            f"{100*d['sst2']['accuracy']:.1f} / {100*d['sst2']['macro_f1']:.1f} | "
            f"{100 * flops_per_token * r['tokens_per_sec'] / peak_flops:.1f}% |")


def ratio(label, a, b, speed=None):
    """The ratio row; `speed`, where given, is the speed ratio measured in pairs (the median of
    per-round ratios), which replaces the ratio of the two medians."""
    examples = speed or a['examples_per_sec'] / b['examples_per_sec']
    tokens = speed or a['tokens_per_sec'] / b['tokens_per_sec']
    return (f"| {label} | ratio sentence-mtl / PyTorch | {examples:.2f}x | "
            f"{tokens:.2f}x | | {a['peak_rss_mb']/b['peak_rss_mb']:.2f}x | "
            f"{100*(a['dev']['trec']['accuracy']-b['dev']['trec']['accuracy']):+.1f} pt | "
            f"{100*(a['dev']['sst2']['accuracy']-b['dev']['sst2']['accuracy']):+.1f} pt | |")


HEADER = ("| run | implementation | examples/s | tokens/s | padded / real tokens | peak RSS (MB) | "
          "TREC dev acc / F1 | SST-2 dev acc / F1 | of matmul peak |\n|---|---|---:|---:|---:|---:|---:|---:|---:|")


def cpu_table(work, steps, threads, model_dir, rounds):
    params = non_embedding_params(model_dir)
    samples = [float(line) for line in (work / "peak_samples").read_text().split()]
    peak = max(samples) * 1e9
    identical = Rounds(work, "ours", "ref", rounds)
    o = identical.ours
    rs, of, rf = ref(work, "ref_shuffled"), ours(work, "ours_frozen"), ref(work, "ref_frozen")
    print(f"training all-MiniLM-L6-v2 on TREC + SST-2, {steps} steps of batch 32, round-robin, CPU, {threads} threads;")
    print(f"fp32 matmul peak measured in this run: {peak/1e9:.1f} GFLOP/s (best of {len(samples)} samples between runs: "
          f"{', '.join(f'{x:.1f}' for x in samples)}); "
          f"model FLOPs = 6 x {params/1e6:.1f}M non-embedding parameters x tokens")
    print("(frozen backbone: 2 x, the forward pass)")
    if rounds > 1:
        print(f"identical batches: {rounds} rounds of (sentence-mtl, PyTorch) back to back; speeds are medians, "
              "the ratio is the median of the per-round ratios (listed below the table)")
    print()
    print(HEADER)
    for label, a, b, impl_a, impl_b, factor, speed in [
        ("identical batches", o, identical.ref, "sentence-mtl", "PyTorch", 6, identical.ratio),
        ("each at its defaults", o, rs, "sentence-mtl (length-grouped)", "PyTorch (shuffled)", 6, None),
        ("frozen backbone", of, rf, "sentence-mtl", "PyTorch", 2, None),
    ]:
        print(row(label, impl_a, a, factor * params, peak))
        print(row(label, impl_b, b, factor * params, peak))
        print(ratio(label, a, b, speed))
    if rounds > 1:
        print(identical.table("identical batches"))


def gpu_table(work, steps, model_dir, rounds, batch="batch 32"):
    params = non_embedding_params(model_dir)
    peak = json.loads((work / "peak.json").read_text())
    some_ref = ref(work, "ref_fp32_1")
    print(f"training all-MiniLM-L6-v2 on TREC + SST-2, {steps} steps of {batch}, identical batches, "
          f"{peak['device']}; reference: torch {some_ref['torch']}; speeds are medians of {rounds} alternated rounds, "
          "ratios the median of the per-round ratios")
    print(f"matmul peak measured in this run (8192^3): fp32 {peak['fp32']:.1f} TFLOP/s (TF32 off, as in both "
          f"implementations), bf16 {peak['bf16']:.1f} TFLOP/s; model FLOPs = 6 x {params/1e6:.1f}M non-embedding "
          f"parameters x tokens\n")
    print(HEADER)
    by_precision = {p: Rounds(work, f"ours_{p}", f"ref_{p}", rounds) for p in ("fp32", "bf16")}
    for precision, measured in by_precision.items():
        label = f"GPU {precision}"
        print(row(label, "sentence-mtl", measured.ours, 6 * params, peak[precision] * 1e12))
        print(row(label, "PyTorch", measured.ref, 6 * params, peak[precision] * 1e12))
        print(ratio(label, measured.ours, measured.ref, measured.ratio))
    if rounds > 1:
        for precision, measured in by_precision.items():
            print(measured.table(f"GPU {precision}"))
    gpu_memory_table(work, by_precision)


def gpu_memory_table(work, by_precision):
    print("\npeak GPU memory per run (MiB): nvidia-smi's memory in use, sampled every 100 ms, minus its "
          "level before the run (CUDA context, kernels, allocator caches: what the process holds); "
          "the reference's torch.cuda.max_memory_allocated (its tensors alone) beside it\n")
    print("| run | sentence-mtl | PyTorch | ratio | PyTorch tensors (max_memory_allocated) |\n|---|---:|---:|---:|---:|")
    for precision, measured in by_precision.items():
        for i, (_, reference) in enumerate(measured.pairs, 1):
            o, r = gpu_mb(work, f"ours_{precision}_{i}"), gpu_mb(work, f"ref_{precision}_{i}")
            tensors = reference.get("peak_gpu_mb")
            cells = [f"{x}" if x is not None else "n/a" for x in (o, r)]
            cells.append(f"{o / r:.2f}x" if o and r else "n/a")
            cells.append(f"{tensors:.0f}" if tensors is not None else "n/a")
            print(f"| GPU {precision}, round {i} | " + " | ".join(cells) + " |")


def main():
    mode, work = sys.argv[1], Path(sys.argv[2])
    if mode == "cpu":
        cpu_table(work, int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]))
    elif mode == "gpu":
        gpu_table(work, int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), *sys.argv[6:7])
    else:
        sys.exit(f"bench_table.py: unknown mode {mode} (cpu or gpu)")


if __name__ == "__main__":
    main()
