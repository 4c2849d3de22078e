"""The PyTorch reference for `sentence-mtl train`: the same recipe, written the usual way.

Same backbone (transformers AutoModel), mean pooling over the attention mask, a Linear
projection, one Linear head per task, round-robin alternating task batches, AdamW with the
same per-group learning rates (layer-wise decay; no weight decay on bias/LayerNorm), linear
warm-up then decay, gradient clipping, dynamic padding, dropout on while training.

Batches come either from a plan written by `sentence-mtl train --save-batch-plan` (identical
batches: same order, same rows, same padding) or, with --shuffle, from the usual PyTorch
DataLoader with shuffle=True per task (what HF Trainer does by default), padded per batch.

usage: train_reference.py --model DIR --task NAME=TRAIN.csv[,DEV.csv] ... --max-steps N
           [--plan PLAN.jsonl | --shuffle] [--freeze-backbone] [--threads N] [--out RESULT.json]
           [--lr-backbone LR --lr-projection LR --lr-heads LR --layer-decay D --warmup-ratio R
            --schedule linear|constant]  (defaults: sentence-mtl's default recipe, 8e-5 / 1e-4 /
           1e-3, decay 1, no warm-up, linear; the plain loop of the recipe study: 2e-5 / 1e-4 /
           1e-3, decay 1, no warm-up, constant)
           [--init-heads CHECKPOINT/model.safetensors] [--device cpu|cuda] [--precision fp32|bf16]
--init-heads starts the projection and heads from the same values sentence-mtl starts from
(its `--freeze all` checkpoint for the same seed), so the two runs differ only in dropout
masks and arithmetic order.
--device cuda moves the model and each batch to the GPU; --precision bf16 runs the forward
pass under torch.autocast(bfloat16) with fp32 weights, on the GPU or the CPU, as
`sentence-mtl train --precision bf16` does. Evaluation runs in fp32 in both.
Prints one JSON object with throughput, peak memory and dev metrics.
"""
import argparse
import csv
import json
import math
import resource
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoModel, AutoTokenizer, get_constant_schedule_with_warmup, get_linear_schedule_with_warmup


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


class MultiTaskModel(nn.Module):
    def __init__(self, model_dir, projection_dim, task_classes):
        super().__init__()
        self.backbone = AutoModel.from_pretrained(model_dir, add_pooling_layer=False)
        hidden = self.backbone.config.hidden_size
        self.projection = nn.Linear(hidden, projection_dim)
        self.heads = nn.ModuleDict({name: nn.Linear(projection_dim, n) for name, n in task_classes.items()})

    def forward(self, task, input_ids, attention_mask):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.heads[task](self.projection(pooled))


def param_groups(model, lr_backbone, lr_projection, lr_heads, layer_decay, weight_decay):
    layers = model.backbone.config.num_hidden_layers
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("backbone.embeddings."):
            lr = lr_backbone * layer_decay ** layers
        elif name.startswith("backbone.encoder.layer."):
            i = int(name.split(".")[3])
            lr = lr_backbone * layer_decay ** (layers - 1 - i)
        elif name.startswith("projection."):
            lr = lr_projection
        else:
            lr = lr_heads
        no_decay = name.endswith(".bias") or "LayerNorm" in name
        key = (lr, 0.0 if no_decay else weight_decay)
        groups.setdefault(key, []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def evaluate(model, tok, texts, labels, task, max_length, device, batch_size=64):
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    predicted = [0] * len(texts)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            logits = model(task, enc["input_ids"].to(device), enc["attention_mask"].to(device))
            for i, p in zip(idx, logits.argmax(-1).tolist()):
                predicted[i] = p
    model.train()
    classes = sorted(set(labels))
    correct = sum(p == t for p, t in zip(predicted, labels))
    f1s = []
    for c in range(len(classes)):
        tp = sum(1 for p, t in zip(predicted, labels) if p == c and t == c)
        fp = sum(1 for p, t in zip(predicted, labels) if p == c and t != c)
        fn = sum(1 for p, t in zip(predicted, labels) if p != c and t == c)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return {"accuracy": correct / len(labels), "macro_f1": sum(f1s) / len(f1s)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--task", action="append", required=True)
    ap.add_argument("--max-steps", type=int, required=True)
    ap.add_argument("--plan")
    ap.add_argument("--shuffle", action="store_true")
    ap.add_argument("--freeze-backbone", action="store_true")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--projection-dim", type=int, default=256)
    # Defaults: sentence-mtl's default recipe (src/train/recipe.rs), so that a replay of its
    # batch plan compares like with like.
    ap.add_argument("--lr-backbone", type=float, default=8e-5)
    ap.add_argument("--lr-projection", type=float, default=1e-4)
    ap.add_argument("--lr-heads", type=float, default=1e-3)
    ap.add_argument("--layer-decay", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup-ratio", type=float, default=0.0)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--schedule", choices=["linear", "constant"], default="linear")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--init-heads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--out")
    args = ap.parse_args()
    device = torch.device(args.device)
    bf16 = args.precision == "bf16"
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()

    tasks = {}
    for spec in args.task:
        name, files = spec.split("=", 1)
        paths = files.split(",")
        texts, labels = read_csv(paths[0])
        classes = sorted(set(labels))
        index = {c: i for i, c in enumerate(classes)}
        dev = None
        if len(paths) > 1:
            dt, dl = read_csv(paths[1])
            dev = (dt, [index[l] for l in dl])
        tasks[name] = {"texts": texts, "labels": [index[l] for l in labels], "classes": classes, "dev": dev}

    tok = AutoTokenizer.from_pretrained(args.model)
    # .float(): transformers 5 loads in the file's dtype by default, 4.x in fp32.
    model = MultiTaskModel(args.model, args.projection_dim, {n: len(t["classes"]) for n, t in tasks.items()}).float()
    if args.init_heads:
        from safetensors.torch import load_file

        init = {k: v for k, v in load_file(args.init_heads).items() if k.startswith(("projection.", "heads."))}
        missing, _ = model.load_state_dict(init, strict=False)
        assert not [m for m in missing if m.startswith(("projection.", "heads."))], missing
    if args.freeze_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    model.to(device)
    model.train()
    # On CUDA the fused kernel, as sentence-mtl uses (HF Trainer's adamw_torch_fused); the CPU
    # tables were measured with torch's default implementation.
    optimizer = torch.optim.AdamW(
        param_groups(model, args.lr_backbone, args.lr_projection, args.lr_heads, args.layer_decay, args.weight_decay),
        fused=device.type == "cuda",
    )
    warmup = math.ceil(args.warmup_ratio * args.max_steps)
    if args.schedule == "constant":
        scheduler = get_constant_schedule_with_warmup(optimizer, warmup)
    else:
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, args.max_steps)
    # Tokenise once, as sentence-mtl does.
    for t in tasks.values():
        t["ids"] = tok(t["texts"], truncation=True, max_length=args.max_length)["input_ids"]

    def collate(task, rows):
        ids = [tasks[task]["ids"][r] for r in rows]
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in ids])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        labels = torch.tensor([tasks[task]["labels"][r] for r in rows])
        real_tokens = sum(len(x) for x in ids)
        return input_ids.to(device), mask.to(device), labels.to(device), real_tokens

    if args.plan:
        with open(args.plan) as f:
            plan = [json.loads(line) for line in f]
        batches = ((b["task"], b["rows"]) for b in plan)
    else:
        def shuffled(task):
            while True:  # recycled when it runs out
                yield from DataLoader(range(len(tasks[task]["ids"])), batch_size=args.batch_size, shuffle=True,
                                      collate_fn=list)
        streams = {n: shuffled(n) for n in tasks}
        names = list(tasks)
        batches = ((names[i % len(names)], next(streams[names[i % len(names)]])) for i in range(args.max_steps))

    loop_started = time.time()
    examples = tokens = padded = 0
    losses = {n: [] for n in tasks}
    for step, (task, rows) in zip(range(args.max_steps), batches):
        input_ids, mask, labels, real_tokens = collate(task, rows)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(task, input_ids, mask)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses[task].append(loss.item())
        examples += len(rows)
        tokens += real_tokens
        padded += mask.numel()
    if device.type == "cuda":
        torch.cuda.synchronize()
    loop_seconds = time.time() - loop_started
    metrics = {n: evaluate(model, tok, t["dev"][0], t["dev"][1], n, args.max_length, device)
               for n, t in tasks.items() if t["dev"]}
    result = {
        "implementation": "pytorch-reference",
        "steps": args.max_steps,
        "examples": examples,
        "train_seconds": loop_seconds,
        "examples_per_sec": examples / loop_seconds,
        "tokens_per_sec": tokens / loop_seconds,
        "padding_ratio": padded / tokens,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": args.precision,
        "torch": torch.__version__,
        "dev": metrics,
        "final_loss": {n: (sum(l[-20:]) / len(l[-20:]) if l else None) for n, l in losses.items()},
        "total_seconds": time.time() - started,
    }
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
