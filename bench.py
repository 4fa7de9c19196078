"""
The project's benchmarks, one per subcommand (the first word picks it; the rest are its flags):

  python bench.py model                      # train-step and sampling throughput, ours vs transformers' Qwen2
                                             # (sampling: sampler.py's, model.py's plain one, and transformers')
  python bench.py model --preset paper --device cuda --dtype bf16 --compile
  python bench.py data                       # datagen problems/s per core (op 5/10/20, both modes), workers
  python bench.py tokenizer                  # BPE training time, encode tokens/s on one core and all cores
  python bench.py verify                     # process-verifier completions/s per core
  python bench.py fidelity                   # problem structure per op and mode vs the GSM-Infinite reference
  python bench.py model --help               # the flags of one benchmark

Each prints what it measured and ends with Markdown table row(s) to paste into the README.
To add a benchmark: write a config dataclass (each field `opt(default, "its --help text")`) and a function taking it,
and register both in BENCHMARKS at the bottom.
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common import UserError, autocast_for, opt, parse_config, peak_flops, print_config, setup_dist


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_warning() -> None:
    """Say so when other processes keep the CPU busy: then every timing here is noisy (the ratios less so)."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.25 * cores:
        print(f"note: CPU load average {load:.2f} on {cores} cores before starting; other processes compete for the "
              f"CPU, so absolute timings are noisy (calls are interleaved, so the ratios are fairer)")


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def require_positive(cfg, *names: str) -> None:
    """UserError naming every listed flag of `cfg` that is not > 0."""
    bad = [f"--{name}={getattr(cfg, name)}" for name in names if not getattr(cfg, name) > 0]
    if bad:
        raise UserError(f"these must be > 0: {', '.join(bad)}")


# ----------------------------------------------------------------------------------------------------------------
# model: our Transformer vs transformers' Qwen2ForCausalLM, same config, weights, batch, device and dtype

@dataclass
class ModelBench:
    preset: str = opt("tiny", "model preset (micro, tiny, small, paper)")
    device: str = opt("auto", "cpu, cuda, or auto (cuda if available)")
    dtype: str = opt("fp32", "fp32, or bf16 (autocast, for both implementations)")
    compile: bool = opt(False, "torch.compile the training step of both implementations")
    batch_size: int = opt(8, "training: sequences per step")
    seq_len: int = opt(256, "training: tokens per sequence")
    warmup: int = opt(1, "untimed training steps and generate calls first (each contender)")
    steps: int = opt(10, "timed training steps (each contender; the median is reported)")
    # sampling defaults: one `tiny` GRPO step's rollouts (16 prompts x 8 samples, up to 160 new tokens each) with
    # 128-token prompts, about the median prompt of the tiny edge pool (ops 4-5: 135 tokens, as grpo.py logs it)
    prompts: int = opt(16, "sampling: distinct prompts")
    n: int = opt(8, "sampling: samples per prompt")
    prompt_len: int = opt(128, "sampling: tokens per prompt")
    max_new_tokens: int = opt(160, "sampling: generated tokens per row (EOS disabled: every row generates all)")
    reps: int = opt(3, "sampling: timed generate calls (each contender; the median is reported)")
    hf: bool = opt(True, "also time transformers (needs it installed); false: ours only")
    seed: int = opt(0, "weights, data and sampling seed")


def interleaved(fns: dict, warmup: int, reps: int, device) -> dict[str, float]:
    """Median seconds per call of each function, the calls alternating between them so that a change in machine
    load (a shared CPU) hits every contender alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def train_step_fn(model_fn, params, batch, amp, device):
    """One training step (forward, backward, AdamW) of `model_fn(x) -> logits`, as a closure over its optimizer."""
    x, y = batch
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), fused=device.type == "cuda")

    def step():
        with amp:
            logits = model_fn(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def bench_model(cfg: ModelBench) -> None:
    """Training and sampling throughput of model.py vs transformers' Qwen2ForCausalLM (same weights and batch).
    "ours" samples with sampler.py (what the experiments run); "plain" is model.generate, for comparison."""
    import hf as hf_io
    import model as M
    import sampler as S

    if cfg.dtype not in ("fp32", "bf16"):
        raise UserError(f"--dtype must be fp32 or bf16, got {cfg.dtype!r}")
    require_positive(cfg, "batch_size", "seq_len", "steps", "prompts", "n", "prompt_len", "max_new_tokens", "reps")
    if cfg.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {cfg.warmup}")
    device = setup_dist(cfg.device).device
    amp, _ = autocast_for(cfg.dtype, device)  # the same autocast (or none) for both implementations
    torch.manual_seed(cfg.seed)
    mcfg = M.config_from_preset(cfg.preset, max_seq_len=max(cfg.seq_len, cfg.prompt_len + cfg.max_new_tokens))
    print_config(cfg, "bench model")
    print(f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n{mcfg}")
    load_warning()
    ours = M.Transformer(mcfg).to(device)
    hf = None
    if cfg.hf:
        try:
            import transformers
        except ImportError:
            raise UserError("transformers is not installed; install it or pass --hf=false") from None
        with tempfile.TemporaryDirectory() as tmp:  # the HF model gets exactly our weights, through export_hf
            hf_io.export_hf(ours, tmp)
            hf = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32,
                                                                   attn_implementation="sdpa").to(device)
        print(f"transformers {transformers.__version__}: Qwen2ForCausalLM, sdpa attention, same weights")

    # -- sampling --
    ours.eval()  # sampling first, while both models still hold the same weights
    prompts = torch.randint(4, mcfg.vocab_size, (cfg.prompts, cfg.prompt_len), generator=torch.Generator()
                            .manual_seed(cfg.seed)).tolist()
    gen_tokens = cfg.prompts * cfg.n * cfg.max_new_tokens

    def generate_with(generate):
        def run():
            with amp:
                out = generate(ours, prompts, n=cfg.n, max_new_tokens=cfg.max_new_tokens, temperature=1.0,
                               eos_id=None, seed=cfg.seed)
            assert int(out.lengths.sum()) == gen_tokens
        return run

    samplers = {"ours": generate_with(S.generate), "plain": generate_with(M.generate)}
    if hf is not None:
        hf.eval()
        # the same sampling as ours: plain temperature-1 sampling with the KV cache, EOS disabled
        gc = copy.deepcopy(hf.generation_config)
        gc.update(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, use_cache=True, eos_token_id=None,
                  max_new_tokens=cfg.max_new_tokens, num_return_sequences=cfg.n, pad_token_id=M.PAD_ID)
        ids = torch.tensor(prompts, device=device)

        @torch.inference_mode()
        def hf_generate():
            with amp:
                out = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gc)
            assert out.shape == (cfg.prompts * cfg.n, cfg.prompt_len + cfg.max_new_tokens), out.shape

        samplers["hf"] = hf_generate
    seconds = interleaved(samplers, cfg.warmup, cfg.reps, device)
    sample = {k: gen_tokens / s for k, s in seconds.items()}
    for k, v in sample.items():
        print(f"sample {k:<5}: {fmt_rate(v)} generated tok/s")
    print(f"sampler.py / model.generate: {sample['ours'] / sample['plain']:.2f}x")

    # -- training step --
    ours.train()
    data = torch.randint(0, mcfg.vocab_size, (cfg.batch_size, cfg.seq_len + 1), device=device)
    batch = (data[:, :-1], data[:, 1:])
    ours_fn = torch.compile(ours) if cfg.compile else ours
    steps = {"ours": train_step_fn(lambda x: ours_fn(x)[0], list(ours.parameters()), batch, amp, device)}
    if hf is not None:
        hf.train()
        hf_fn = torch.compile(hf) if cfg.compile else hf
        steps["hf"] = train_step_fn(lambda x: hf_fn(input_ids=x).logits, list(hf.parameters()), batch, amp, device)
    seconds = interleaved(steps, cfg.warmup, cfg.steps, device)
    train = {k: cfg.batch_size * cfg.seq_len / s for k, s in seconds.items()}
    peak = peak_flops(device)
    flops = ours.flops_per_token(cfg.seq_len)
    mfu = {k: v * flops / peak for k, v in train.items()} if peak else {}
    for k, v in train.items():
        print(f"train  {k:<4}: {fmt_rate(v)} tok/s" + (f", MFU {100 * mfu[k]:.1f}%" if mfu else ""))

    # -- summary --
    def ratio(d):
        return f"{d['ours'] / d['hf']:.2f}x" if "hf" in d else "-"

    setup = f"{cfg.preset} | {device.type} | {cfg.dtype}{' +compile' if cfg.compile else ''}"
    print(f"\ntrain ratio {ratio(train)}, sampling ratio {ratio(sample)} (ours / transformers)\n")
    print("| benchmark | preset | device | dtype | work | ours tok/s | transformers tok/s | ours / transformers "
          "| MFU ours |")
    print("|---|---|---|---|---|---|---|---|---|")
    mfu_ours = f"{100 * mfu['ours']:.1f}%" if mfu else "-"
    print(f"| train step | {setup} | {cfg.batch_size}x{cfg.seq_len} tokens | {fmt_rate(train['ours'])} | "
          f"{fmt_rate(train.get('hf'))} | {ratio(train)} | {mfu_ours} |")
    print(f"| sampling | {setup} | {cfg.prompts} prompts x {cfg.n}, {cfg.prompt_len} + {cfg.max_new_tokens} tokens | "
          f"{fmt_rate(sample['ours'])} | {fmt_rate(sample.get('hf'))} | {ratio(sample)} | - |")


# ----------------------------------------------------------------------------------------------------------------
# data: problems/s of datagen on one core, by op and mode, and the speed-up of worker processes

# The reference GSM-Infinite generator's problems/s, NOT measured in this run: fixed figures, measured on 2026-11-29 on
# one core of a 2-core AMD EPYC VM (this project's development machine class). A ratio against them is only as good
# as the two machines' likeness; a same-run comparison on 2026-11-30 put the generator of commit 3773229 at
# 15.8x the reference at op 5 forward, 49-59x at op 10-20 forward and 184-711x in reverse. Our target: 20x at op 5.
REFERENCE_RATES = {("forward", 5): 700, ("forward", 10): 140, ("forward", 20): 90,
                   ("reverse", 5): 52, ("reverse", 10): 10, ("reverse", 20): 7}
REFERENCE_RATES_NOTE = ("reference: GSM-Infinite, measured 2026-11-29 on one core of a 2-core AMD EPYC VM, "
                        "not in this run")


@dataclass
class DataBench:
    seconds: float = opt(3.0, "timed seconds per (op, mode) cell")
    ops: str = opt("5,10,20", "ops to time, comma-separated")
    scale_n: int = opt(40_000, "problems for the worker-scaling check (pretrain_uniform recipe, split train)")
    workers: int = opt(0, "worker processes for the scaling check (0 = every core)")


def bench_data(cfg: DataBench) -> None:
    """Problems/s of datagen.py on one core (the record and its JSON line), and with worker processes."""
    import datagen

    require_positive(cfg, "seconds", "scale_n")
    try:
        op_list = [int(o) for o in cfg.ops.split(",")]
    except ValueError:
        raise UserError(f"--ops must be comma-separated integers like 5,10,20, got {cfg.ops!r}") from None
    if cfg.workers < 0:
        raise UserError(f"--workers must be >= 0 (0 = every core), got {cfg.workers}")
    print_config(cfg, "bench data")
    load_warning()
    contexts = datagen.load_contexts()
    rows = []
    for mode in ("forward", "reverse"):
        for op in op_list:
            parts = datagen.parse_recipe(f"ops={op} modes={mode}")
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < cfg.seconds:
                # what a worker does: generate + JSON-encode
                datagen._chunk((parts, 0, n, "all", contexts, datagen.PAPER))
                n += datagen.CHUNK
            rate = n / (time.process_time() - c0)  # CPU time: one core, whatever else runs
            ref = REFERENCE_RATES.get((mode, op))
            rows.append((mode, op, rate, ref))
            print(f"{mode:<8} op {op:>2}: {rate:10,.0f} problems/s per core"
                  + (f"  ({rate / ref:5.1f}x the reference's {ref}/s, measured elsewhere)" if ref else ""))
    workers = cfg.workers or os.cpu_count() or 1
    parts = datagen.parse_recipe("pretrain_uniform")
    times = {}
    for w in sorted({1, workers}):
        t0 = time.perf_counter()
        for _ in datagen.generate_lines(parts, cfg.scale_n, seed=0, split="train", workers=w):
            pass
        times[w] = time.perf_counter() - t0
        print(f"generate_lines, {w} worker(s): {cfg.scale_n / times[w]:,.0f} problems/s ({cfg.scale_n:,} problems of "
              f"pretrain_uniform, split train, deduplicated)")
    print(f"\n{REFERENCE_RATES_NOTE}")
    print("| benchmark | mode | op | problems/s (one core) | reference (2026-11-29, elsewhere) | ratio |")
    print("|---|---|---|---|---|---|")
    for mode, op, rate, ref in rows:
        print(f"| datagen | {mode} | {op} | {fmt_rate(rate)} | {ref or '-'} | {f'{rate / ref:.0f}x' if ref else '-'} |")
    if workers > 1:
        print(f"| datagen scaling | pretrain_uniform | 2-10 | {fmt_rate(cfg.scale_n / times[1])} (1 worker) -> "
              f"{fmt_rate(cfg.scale_n / times[workers])} ({workers} workers) | | {times[1] / times[workers]:.2f}x |")


# ----------------------------------------------------------------------------------------------------------------
# tokenizer: BPE training time, encode tokens/s on one core and on all cores, the datagen -> shards pipeline

@dataclass
class TokenizerBench:
    n: int = opt(10_000, "problems to train on and to encode")
    vocab_size: int = opt(2200, "requested vocabulary")


def _encode_rate(tok_path: str, texts_path: str) -> dict:
    """In a fresh process (thread settings are read once): best-of-2 encode_batch tokens/s and CPU/wall."""
    import json
    import tokenizer as T
    tok = T.load_tokenizer(tok_path)
    with open(texts_path) as f:
        texts = json.load(f)
    T.encode(tok, texts[:512])  # warm-up: starts the thread pool, if any
    best, ratio, n_tok = float("inf"), 0.0, 0
    for _ in range(2):
        c0, t0 = os.times(), time.perf_counter()
        n_tok = sum(len(ids) for i in range(0, len(texts), 1024) for ids in T.encode(tok, texts[i:i + 1024]))
        wall, c1 = time.perf_counter() - t0, os.times()
        if wall < best:
            best, ratio = wall, (c1.user + c1.system - c0.user - c0.system) / wall
    return {"tokens_per_s": n_tok / best, "cpu_per_wall": ratio}


def bench_tokenizer(cfg: TokenizerBench) -> None:
    """Tokenizer training time and encode throughput (Rust encode_batch) on one core and on all cores."""
    import json
    import subprocess

    import datagen
    import tokenizer as T

    require_positive(cfg, "n", "vocab_size")
    print_config(cfg, "bench tokenizer")
    load_warning()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        tok = T.train_tokenizer([T.render(r) for r in datagen.generate("pretrain_uniform", cfg.n, seed=0)],
                                cfg.vocab_size)
        t_train = time.perf_counter() - t0
        tok_path, texts_path = f"{tmp}/tokenizer.json", f"{tmp}/texts.json"
        T.save_tokenizer(tok, tok_path)
        print(f"trained {tok.get_vocab_size()} of {cfg.vocab_size} tokens on {cfg.n:,} problems in {t_train:.1f}s "
              f"(generating them included)")
        texts = [T.render(r) for r in datagen.generate("ops=2-20 modes=forward,reverse", cfg.n, seed=1)]
        with open(texts_path, "w") as f:
            json.dump(texts, f)
        # RAYON_NUM_THREADS sizes the Rust thread pool when it first starts, so each setting gets a fresh process
        for label, env in (("1 core (RAYON_NUM_THREADS=1)", {"RAYON_NUM_THREADS": "1"}),
                           (f"all cores ({os.cpu_count()})", {})):
            code = (f"import json, bench; print(json.dumps(bench._encode_rate({tok_path!r}, {texts_path!r})))")
            child = {k: v for k, v in os.environ.items() if k not in ("RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM")}
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env={**child, **env}, cwd=os.path.dirname(os.path.abspath(__file__)))
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((label, r["tokens_per_s"], r["cpu_per_wall"]))
            print(f"encode_batch, {label}: {r['tokens_per_s'] / 1e6:.2f}M tok/s (CPU/wall {r['cpu_per_wall']:.2f})")
        records = datagen.generate(datagen.parse_recipe("pretrain_uniform"), cfg.n, seed=2, split="train")
        t0 = time.perf_counter()
        index = T.write_shards(tok, records, f"{tmp}/shards", max_seq_len=2048)
        dt = time.perf_counter() - t0
        print(f"pipeline datagen -> render -> encode -> pack -> shards (T=2048): {cfg.n / dt:,.0f} problems/s, "
              f"{index['tokens'] / dt / 1e6:.2f}M tok/s, packing {100 * index['packing_efficiency']:.1f}%")
    print("\n| benchmark | setting | tokens/s | CPU/wall |")
    print("|---|---|---|---|")
    for label, rate, ratio in rows:
        print(f"| tokenizer encode | {label} | {rate / 1e6:.2f}M | {ratio:.2f} |")
    print(f"| datagen -> shards | 1 worker, T=2048 | {index['tokens'] / dt / 1e6:.2f}M | |")


# ----------------------------------------------------------------------------------------------------------------
# verify: process-verifier throughput on gold completions, one core

@dataclass
class VerifyBench:
    ops: str = opt("2-20", "op range of the problems")
    n: int = opt(3000, "distinct problems (both modes, the three paper contexts)")
    seconds: float = opt(4.0, "timed CPU seconds per band (half with emptied caches, half warm)")
    seed: int = opt(0, "problem stream seed")


def bench_verify(cfg: VerifyBench) -> None:
    """Completions verified per second (verifier.verify) on gold completions, by op band, one core."""
    import gc

    import datagen
    import evaluate as E
    import verifier as V

    require_positive(cfg, "n", "seconds")
    print_config(cfg, "bench verify")
    load_warning()
    recs = list(datagen.generate(f"ops={cfg.ops} modes=forward:0.5,reverse:0.5", cfg.n, seed=cfg.seed))
    bands: dict = {}
    for r in recs:
        bands.setdefault(E.band_of(r["op"]) or "other", []).append((r, V.gold_completion(r)))
    bands = {b: bands[b] for b in (*E.PAPER_BANDS, "other") if b in bands}
    bands["all"] = [x for items in bands.values() for x in items]
    gc.collect()
    gc.freeze()  # long-lived records: keep the cyclic GC from rescanning them while timing

    def rate(items, cold: bool, seconds: float) -> float:
        """Median completions/s over repeated passes in CPU time (robust to other processes' bursts)."""
        out, start = [], time.process_time()
        while time.process_time() - start < seconds or len(out) < 3:
            if cold:
                V.clear_caches()
            t0 = time.process_time()
            for r, c in items:
                V.verify(r, c)
            out.append(len(items) / max(time.process_time() - t0, 1e-9))
        return statistics.median(out)

    rows = []
    for band, items in bands.items():
        assert all(V.verify(r, c)["verified"] for r, c in items)
        # cold: caches emptied before each pass (gold graphs rebuilt); warm: as when scoring n samples per problem
        cold, warm = rate(items, True, cfg.seconds / 2), rate(items, False, cfg.seconds / 2)
        ops = sorted({r["op"] for r, _ in items})
        chars = sum(len(c) for _, c in items) / len(items)
        rows.append((band, f"{ops[0]}-{ops[-1]}", len(items), chars, cold, warm))
        print(f"{band:<6} op {ops[0]:>2}-{ops[-1]:<2} {len(items):>5} problems, {chars:5.0f} chars/completion: "
              f"{cold:8,.0f}/s cold, {warm:8,.0f}/s warm")
    print("\n| benchmark | band | ops | problems | chars/completion | completions/s cold | completions/s warm |")
    print("|---|---|---|---|---|---|---|")
    for band, ops, n, chars, cold, warm in rows:
        print(f"| verify (gold) | {band} | {ops} | {n} | {chars:.0f} | {fmt_rate(cold)} | {fmt_rate(warm)} |")


# ----------------------------------------------------------------------------------------------------------------
# fidelity: the structure of our problems next to the reference generator's (GSM-Infinite), per op and mode

@dataclass
class FidelityBench:
    n: int = opt(200, "problems per (context, mode, op) cell (the reference used 200)")
    ops: str = opt("2-20", "ops: a range and/or a comma-separated list, e.g. 3,5,10,15,20 (the published cells)")
    modes: str = opt("forward,reverse", "modes, comma-separated")
    contexts: str = opt("zoo", "contexts, comma-separated (the reference: zoo only; its structure is name-free)")
    seed: int = opt(0, "stream seed of our problems")
    rows: str = opt("acceptance", "rows to print per cell: acceptance (the seven fidelity rows) or all")


def _fmt_stat(key: str, v: float | None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.0f}%" if _share_row(key) else f"{v:.2f}"


def _share_row(key: str) -> bool:
    return key.startswith(("sol kinds", "all sentences", "query is", "step i uses", "answer <= 4", "rev: unknown is"))


def bench_fidelity(cfg: FidelityBench) -> None:
    """Structure statistics of our problems next to the GSM-Infinite reference figures; flags rows out of tolerance."""
    import datagen

    require_positive(cfg, "n")
    try:
        op_list = [o for part in cfg.ops.split(",") for o in
                   range(int(part.partition("-")[0]), int(part.partition("-")[2] or part.partition("-")[0]) + 1)]
    except ValueError:
        raise UserError(f"--ops must be ops like 2-20 or 3,5,10, got {cfg.ops!r}") from None
    if cfg.rows not in ("acceptance", "all"):
        raise UserError(f"--rows must be acceptance or all, got {cfg.rows!r}")
    contexts = datagen.load_contexts()
    reference = datagen.load_fidelity_reference()
    print_config(cfg, "bench fidelity")
    print(f"reference: {reference['source']}\nhow each row is counted: {reference['method']}")
    if "extra" in reference:
        print(f"ops in between: {reference['extra']['source']}\ncounted: {reference['extra']['method']}")
    print("tolerance: within 20% of the reference, or within an absolute margin (0.5 for counts, 5 points for "
          "shares); ~ marks a reference figure interpolated between measured ops (rows outside the acceptance "
          "set were published for op 3/5/10/15/20 only); ops past 20 have no reference\n")
    bad = []
    for ctx in cfg.contexts.split(","):
        for mode in cfg.modes.split(","):
            for op in op_list:
                rows = datagen.fidelity_table(op, mode, n=cfg.n, context=ctx, seed=cfg.seed, contexts=contexts,
                                              reference=reference)
                print(f"### {ctx}, op {op}, {mode}\n\n| metric | ours | reference | |\n|---|---|---|---|")
                for key, ours, ref, interp, ok in rows:
                    if cfg.rows == "acceptance" and key not in datagen.FIDELITY_ROWS:
                        continue
                    flag = "" if ok is None else "ok" if ok else "**OUT**"
                    print(f"| {key} | {_fmt_stat(key, ours)} | {'~' if interp else ''}{_fmt_stat(key, ref)} | {flag} |")
                    if ok is False:
                        bad.append(f"{ctx} op {op} {mode}: {key} {_fmt_stat(key, ours)} vs {_fmt_stat(key, ref)}")
                print()
    print(f"{len(bad)} acceptance row(s) out of tolerance" + "".join(f"\n  {b}" for b in bad))


# ----------------------------------------------------------------------------------------------------------------
# Subcommands

BENCHMARKS = {
    "model": (ModelBench, bench_model),
    "data": (DataBench, bench_data),
    "tokenizer": (TokenizerBench, bench_tokenizer),
    "verify": (VerifyBench, bench_verify),
    "fidelity": (FidelityBench, bench_fidelity),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        lines = [__doc__.strip(), "", "benchmarks:"]
        lines += [f"  {name:<12} {fn.__doc__.splitlines()[0]}" for name, (_, fn) in BENCHMARKS.items()]
        print("\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown benchmark {argv[0]!r}", file=sys.stderr)
            sys.exit(2)
        return
    config_cls, fn = BENCHMARKS[argv[0]]
    try:
        fn(parse_config(config_cls, argv[1:], doc=fn.__doc__))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
