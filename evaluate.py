"""
evaluate.py -- pass@k of verified solutions: sample a model on held-out problems, check every sample with the
verifier (verifier.py: the steps, not just the answer), and report pass@k by op, band, context and mode, with
tables and plots.

pass@k is the unbiased estimator of Chen et al. 2021, for answer-correct and for verified samples.

Examples:
    python -c "import evaluate as E; print(E.pass_at_k(n=128, c=3, k=16))"
    python evaluate.py --ckpt runs/pretrain-tiny --recipe "ops=2-9 contexts=zoo" --n 8 --bands ID=2-6,above=7-9
    python -m pytest -q tests/test_evaluate.py      # the verifier's and pass@k's proofs

Everything above the "Sampling evaluation" section is pure Python (no torch); nothing runs at import time.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import verifier

# ----------------------------------------------------------------------------------------------------------------
# pass@k: the unbiased estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on Code")

def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples, drawn without replacement from n samples of which c
    are correct, is correct: 1 - C(n-c, k) / C(n, k). Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), which
    never forms the huge binomials. Unbiased, unlike "any of the first k samples". Needs 1 <= k <= n."""
    try:
        n, c, k = operator.index(n), operator.index(c), operator.index(k)  # ints, numpy ints; not floats
    except TypeError:
        raise ValueError(f"pass_at_k needs integers, got n={n!r} c={c!r} k={k!r}") from None
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got c={c} n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k} n={n} (sample more completions per problem)")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k_curve(counts: list[tuple[int, int]], ks: list[int]) -> dict[int, float]:
    """Mean pass@k over problems, for each k; `counts` holds (n samples, c correct) per problem."""
    if not counts:
        return {k: float("nan") for k in ks}
    return {k: sum(pass_at_k(n, c, k) for n, c in counts) / len(counts) for k in ks}


def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself (the reported points of a pass@k curve)."""
    if n < 1:
        raise ValueError(f"need at least one sample per problem, got n={n}")
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ks if ks[-1] == n else ks + [n]


# ----------------------------------------------------------------------------------------------------------------
# Breakdowns: by op, band, context and mode (pure functions over verify() results)

# The paper's op bands: in-distribution (the pre-training range), the edge of competence just beyond it,
# and far beyond it.
PAPER_BANDS: dict[str, tuple[int, int]] = {"ID": (2, 10), "edge": (11, 14), "hard": (15, 20)}
GROUP_BYS = ("all", "op", "band", "context", "mode")


def band_of(op: int, bands: dict[str, tuple[int, int]] = PAPER_BANDS) -> str | None:
    """The name of the first band whose inclusive (lo, hi) range holds op, or None."""
    for name, (lo, hi) in bands.items():
        if lo <= op <= hi:
            return name
    return None


def group_of(result: dict, by: str, bands: dict[str, tuple[int, int]] = PAPER_BANDS):
    """The group of one result: its op, band ("other" outside every band), context, mode, or "all"."""
    if by == "all":
        return "all"
    if by == "band":
        return band_of(result["op"], bands) or "other"
    if by in ("op", "context", "mode"):
        return result[by]
    raise ValueError(f"unknown grouping {by!r}; use one of {', '.join(GROUP_BYS)}")


def _ordered(groups, by: str, bands: dict[str, tuple[int, int]]) -> list:
    """Groups in reading order: ops ascending, bands in their given order, other keys alphabetically."""
    if by == "band":
        rank = {name: i for i, name in enumerate([*bands, "other"])}
        return sorted(groups, key=lambda g: rank.get(g, len(rank)))
    return sorted(groups, key=lambda g: (0, g, "") if isinstance(g, int) else (1, 0, str(g)))


def per_problem(results: list[dict]) -> dict:
    """Group per-sample results by problem id (so records need distinct ids, as datagen's have):
    {id: {"n", "c_answer", "c_verified", "op", "context", "mode"}}."""
    out: dict = {}
    for r in results:
        p = out.get(r["id"])
        if p is None:
            p = out[r["id"]] = {"n": 0, "c_answer": 0, "c_verified": 0,
                                "op": r["op"], "context": r["context"], "mode": r["mode"]}
        p["n"] += 1
        p["c_answer"] += bool(r["answer_correct"])
        p["c_verified"] += bool(r["verified"])
    return out


def summarize(results: list[dict], by: str = "all", bands: dict[str, tuple[int, int]] = PAPER_BANDS) -> dict:
    """Per group (see group_of): problems, samples, pass@1 of the answer and of verified solutions (mean
    over problems of the per-problem success rate), and per-sample means of process_acc, hacked (share of
    all samples), hacked among right answers, format_ok and the fault counters."""
    groups: dict = {}
    for r in results:
        groups.setdefault(group_of(r, by, bands), []).append(r)
    out = {}
    for g in _ordered(groups, by, bands):
        rs = groups[g]
        probs = per_problem(rs)
        n = len(rs)
        right = sum(bool(r["answer_correct"]) for r in rs)
        hacked = sum(bool(r["hacked"]) for r in rs)
        row = {
            "problems": len(probs), "samples": n,
            "pass1": sum(p["c_answer"] / p["n"] for p in probs.values()) / len(probs),
            "pass1_verified": sum(p["c_verified"] / p["n"] for p in probs.values()) / len(probs),
            "process_acc": sum(r["process_acc"] for r in rs) / n,
            "hacked_rate": hacked / n,
            "hacked_of_right": hacked / right if right else 0.0,
            "format_ok": sum(bool(r["format_ok"]) for r in rs) / n,
        }
        for key in ("value_mismatch", "dep_mismatch", "missing", "extra", "contradiction", "bad_given", "bad_solve"):
            row[key] = sum(r[key] for r in rs) / n
        out[g] = row
    return out


def pass_at_k_by(results: list[dict], by: str = "all", ks: list[int] | None = None,
                 bands: dict[str, tuple[int, int]] = PAPER_BANDS) -> dict:
    """pass@k curves per group, for answer-correct and for verified samples:
    {group: {"problems", "n", "answer": {k: p}, "verified": {k: p}}}. Default ks: default_ks of the
    smallest per-problem sample count in the group (every k must be <= every problem's n)."""
    groups: dict = {}
    for p in per_problem(results).values():
        groups.setdefault(group_of(p, by, bands), []).append(p)
    out = {}
    for g in _ordered(groups, by, bands):
        probs = groups[g]
        n_min = min(p["n"] for p in probs)
        gks = list(ks) if ks is not None else default_ks(n_min)
        out[g] = {"problems": len(probs), "n": n_min,
                  "answer": pass_at_k_curve([(p["n"], p["c_answer"]) for p in probs], gks),
                  "verified": pass_at_k_curve([(p["n"], p["c_verified"]) for p in probs], gks)}
    return out


# ----------------------------------------------------------------------------------------------------------------
# Sampling evaluation: checkpoints -> n samples per problem -> verified results -> pass@k tables and plots
#
#   python evaluate.py --ckpt runs/pretrain-tiny --recipe "ops=2-10" --problems 100 --n 16
#   python evaluate.py --ckpt runs/base --label base --ckpt runs/rl --label RL --n 128 --temperature 0.7
#   python evaluate.py --ckpt runs/base --recipe rl_11_14 --split rl --problems 2000 --n 16 \
#       --select_edge --edge_out data/edge-pool.jsonl        # edge-of-competence RL pool

def sample_and_score(model, tok, records: list[dict], n: int = 1, temperature: float = 0.7, top_p: float = 1.0,
                     top_k: int = 0, max_new_tokens: int = 512, seed: int = 0, autocast=None,
                     batch_rows: int = 1024, progress: bool = False, keep_text: int = 0,
                     sampler: str = "shared") -> list[list[dict]]:
    """n completions of every record from the sampler named by `sampler` (see sampler.py), each scored by
    verifier.verify(). Returns, per record, its n results: verify()'s fields plus `length` (generated tokens) and
    `finished` (ended by EOS), and `completion` for the first `keep_text`.

    Records are sampled in chunks of at most `batch_rows` rows (prompts x n); chunk i uses seed + i, so the
    samples depend on (seed, batch_rows) and nothing else."""
    import contextlib

    import sampler as sampler_lib
    import tokenizer as tok_lib

    autocast = autocast or contextlib.nullcontext()
    prompts = tok_lib.encode(tok, [tok_lib.render_prompt(r) for r in records])
    limit = model.config.max_seq_len
    per_chunk = max(1, batch_rows // n)
    out: list[list[dict]] = []
    chunks = range(0, len(records), per_chunk)
    if progress:
        from tqdm import tqdm
        chunks = tqdm(chunks, desc=f"sampling {n}/problem", unit="chunk", dynamic_ncols=True)
    for ci, start in enumerate(chunks):
        recs, ps = records[start:start + per_chunk], prompts[start:start + per_chunk]
        room = limit - max(len(p) for p in ps)
        if room < 1:
            raise ValueError(f"a prompt of {max(len(p) for p in ps)} tokens fills the model's context ({limit})")
        with autocast:
            gen = sampler_lib.generate_with(sampler, model, ps, n=n, max_new_tokens=min(max_new_tokens, room),
                                            temperature=temperature, top_p=top_p, top_k=top_k,
                                            eos_id=tok_lib.EOS_ID, pad_id=tok_lib.PAD_ID, seed=seed + ci)
        texts = tok.decode_batch(gen.to_lists(), skip_special_tokens=False)
        lengths, finished = gen.lengths.tolist(), gen.finished.tolist()
        for i, rec in enumerate(recs):
            rows = []
            for j in range(n):
                row = i * n + j
                res = verifier.verify(rec, texts[row])
                res["length"], res["finished"] = lengths[row], finished[row]
                if j < keep_text:
                    res["completion"] = texts[row]
                rows.append(res)
            out.append(rows)
    return out


def edge_subset(records: list[dict], scored: list[list[dict]], max_pass1: float = 0.5, k: int = 0,
                min_passk: float = 1e-9, metric: str = "verified") -> tuple[list[dict], dict]:
    """The edge of competence (SPEC §7): the problems the model fails at pass@1 (per-problem pass@1 = c/n <=
    max_pass1) but solves within pass@k (pass@k >= min_passk; k = n by default, i.e. solved at least once).
    Returns (the selected records, {op: [selected, total]})."""
    selected, by_op = [], {}
    for rec, rs in zip(records, scored):
        n, c = len(rs), sum(bool(r[metric]) for r in rs)
        keep = c / n <= max_pass1 and pass_at_k(n, c, min(k or n, n)) >= min_passk
        counts = by_op.setdefault(rec["op"], [0, 0])
        counts[0] += keep
        counts[1] += 1
        if keep:
            selected.append(rec)
    return selected, dict(sorted(by_op.items()))


def select_edge(model, tok, records: list[dict], n: int = 8, max_pass1: float = 0.5, k: int = 0,
                min_passk: float = 1e-9, metric: str = "verified", **sampling) -> tuple[list[dict], dict]:
    """Sample n completions per record and keep its edge of competence (see edge_subset)."""
    scored = sample_and_score(model, tok, records, n=n, **sampling)
    return edge_subset(records, scored, max_pass1, k, min_passk, metric)


def report_checkpoint(flat: list[dict], bands: dict, ks: list[int]) -> dict:
    """Summaries and pass@k curves of one checkpoint's samples, by every grouping."""
    return {"summary": {by: summarize(flat, by, bands) for by in GROUP_BYS},
            "pass_at_k": {by: pass_at_k_by(flat, by, ks, bands) for by in GROUP_BYS},
            "mean_length": {by: _mean_length(flat, by, bands) for by in GROUP_BYS}}


def _mean_length(flat, by, bands):
    groups: dict = {}
    for r in flat:
        groups.setdefault(group_of(r, by, bands), []).append(r["length"])
    return {g: sum(v) / len(v) for g, v in groups.items()}


def describe_mistake(rec: dict, res: dict) -> str:
    """One sample's verdict in plain words, for the log."""
    what = "right answer, unfaithful steps" if res["hacked"] else "wrong answer" if res["answer"] is not None \
        else "no answer"
    faults = ", ".join(f"{res[k]} {k.replace('_', ' ')}" for k in ("missing", "value_mismatch", "dep_mismatch",
                                                                    "extra", "contradiction", "bad_given",
                                                                    "bad_solve") if res[k])
    return (f"[{rec['id']} op {rec['op']} {rec['context']} {rec['mode']}] {what}: answered {res['answer']}, "
            f"expected {rec['answer']}; {res['n_correct']}/{res['n_gold']} steps right"
            + (f" ({faults})" if faults else "") + ("" if res["finished"] else "; cut at max_new_tokens"))


def markdown_tables(reports: dict[str, dict], bands: dict, n: int) -> str:
    """The comparison tables of results.md: per band, per op, per context and per mode."""
    from common import markdown_table
    labels = list(reports)
    first = reports[labels[0]]
    k_max = n
    lines = [f"# Evaluation: {', '.join(labels)}", "",
             f"{first['summary']['all']['all']['problems']} problems x {n} samples per checkpoint. pass@k is the "
             f"unbiased estimator (Chen et al. 2021); *verified* = every step of the solution graph right and the "
             f"answer right (SPEC §4); *hacked* = right answer, unfaithful steps.", ""]
    for by, title in (("band", "By band"), ("op", "By op"), ("context", "By context"), ("mode", "By mode")):
        rows = []
        for label in labels:
            rep = reports[label]
            for g, row in rep["summary"][by].items():
                pk = rep["pass_at_k"][by][g]
                kk = max(pk["verified"], key=int)
                rows.append([label, g, row["problems"], f"{100 * row['pass1']:.1f}",
                             f"{100 * row['pass1_verified']:.1f}",
                             f"{100 * pk['answer'][kk]:.1f}", f"{100 * pk['verified'][kk]:.1f}",
                             f"{row['process_acc']:.3f}", f"{100 * row['hacked_rate']:.1f}",
                             f"{rep['mean_length'][by][g]:.0f}"])
        lines += [f"## {title}", "", markdown_table(
            ["model", by, "problems", "pass@1 answer", "pass@1 verified", f"pass@{k_max} answer",
             f"pass@{k_max} verified", "process acc", "hacked %", "mean length"], rows), ""]
    return "\n".join(lines)


def plot_pass_at_k(reports: dict[str, dict], bands: dict, path, metric: str = "verified", title: str = "") -> None:
    """One panel per band: pass@k against k (log2 axis), one line per checkpoint -- the paper's figure shape."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [b for b in bands if any(b in rep["pass_at_k"]["band"] for rep in reports.values())]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.2 * max(1, len(names)), 3.6), squeeze=False)
    for ax, band in zip(axes[0], names):
        for label, rep in reports.items():
            curve = rep["pass_at_k"]["band"].get(band)
            if curve:
                ks = sorted(curve[metric], key=int)
                ax.plot([int(k) for k in ks], [100 * curve[metric][k] for k in ks], marker="o", ms=3, label=label)
        lo, hi = bands[band]
        ax.set(title=f"{band} (op {lo}-{hi})", xlabel="k", ylim=(-2, 102))
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"pass@k, {metric} (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title or f"pass@k ({metric})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_by_op(reports: dict[str, dict], path, metric: str = "verified") -> None:
    """pass@n against op, one line per checkpoint."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, rep in reports.items():
        by_op = rep["pass_at_k"]["op"]
        ops = sorted(by_op, key=int)
        ax.plot([int(o) for o in ops], [100 * by_op[o][metric][max(by_op[o][metric], key=int)] for o in ops],
                marker="o", ms=3, label=label)
    ax.set(xlabel="op (solution edges)", ylabel=f"pass@n, {metric} (%)", ylim=(-2, 102),
           title=f"pass@n by op ({metric})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def opt(default, help: str):
    """A config field with its --help text, like common.opt: importing common here would load torch at import."""
    kind = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return field(**kind, metadata={"help": help})


@dataclass
class Config:
    ckpt: list[str] = opt([], "checkpoint file or run folder; repeat to compare several")
    label: list[str] = opt([], "a name per checkpoint (default: its folder name)")
    data: str = opt("", "problems from this JSONL file ...")
    recipe: str = opt("eval_2_20", "... or drawn from this datagen recipe (name or spec)")
    problems: int = opt(200, "problems drawn from the recipe (with --data: the first N, 0 = all)")
    split: str = opt("test", "datagen split of the recipe's problems")
    data_seed: int = opt(0, "datagen seed of the recipe's problems")
    n: int = opt(16, "samples per problem (paper: 128)")
    temperature: float = opt(0.7, "sampling temperature (paper: 0.7); 0 = greedy")
    top_p: float = opt(1.0, "nucleus sampling")
    top_k: int = opt(0, "top-k sampling (0 = off)")
    sampler: str = opt("shared", "shared: sampler.py (fast, the default); plain: model.generate (the readable one; "
                                 "other random draws, no top_p / top_k)")
    max_new_tokens: int = opt(512, "longest completion (paper: 1024); cut at the model's context if longer")
    seed: int = opt(0, "sampling seed")
    batch_rows: int = opt(1024, "rows (prompts x samples) per sampler call")
    bands: str = opt("ID=2-10,edge=11-14,hard=15-20", "op bands of the report (the paper's)")
    out_dir: str = opt("runs/eval", "results.json, results.md, samples_<label>.jsonl, pass@k plots")
    keep_text: int = opt(2, "completions kept per problem in samples_<label>.jsonl (the verdicts are all kept)")
    show_mistakes: int = opt(3, "mistakes printed in plain words per checkpoint")
    device: str = opt("auto", "auto (cuda if available), cuda or cpu")
    dtype: str = opt("auto", "auto = bf16 autocast on CUDA, fp32 on CPU; or fp32 / bf16")
    select_edge: bool = opt(False, "write the edge-of-competence subset of the problems (one checkpoint)")
    edge_out: str = opt("", "where the selected records go ('' = out_dir/edge.jsonl)")
    edge_max_pass1: float = opt(0.5, "keep problems whose per-problem pass@1 is at most this ...")
    edge_k: int = opt(0, "... and whose pass@k (0: k = n) ...")
    edge_min_passk: float = opt(1e-9, "... is at least this (default: solved at least once)")
    edge_metric: str = opt("verified", "what counts as solved for the selection: verified or answer_correct")


def main(cfg) -> dict:
    """Sample, verify and report every checkpoint; returns {label: report} (and the edge selection)."""
    import json
    import time
    from pathlib import Path

    import datagen
    import model as model_lib
    import sampler as sampler_lib
    import tokenizer as tok_lib
    from common import (UserError, autocast_for, check_out_dir, load_checkpoint, parse_bands, print_config, run_info,
                        save_json, setup_dist)

    if not cfg.ckpt:
        raise UserError("give at least one --ckpt (a checkpoint file or a run folder)")
    labels = cfg.label or [Path(c).stem if Path(c).suffix == ".pt" and Path(c).stem != "final" else
                           Path(c).parent.name if Path(c).suffix == ".pt" else Path(c).name for c in cfg.ckpt]
    if len(labels) != len(cfg.ckpt) or len(set(labels)) != len(labels):
        raise UserError(f"need one distinct --label per --ckpt (got {len(cfg.label)} labels for {len(cfg.ckpt)})")
    if cfg.n < 1 or cfg.max_new_tokens < 1 or cfg.problems < 0:
        raise UserError("--n and --max_new_tokens must be >= 1 and --problems >= 0")
    if cfg.edge_metric not in ("verified", "answer_correct"):
        raise UserError("--edge_metric must be verified or answer_correct")
    if cfg.select_edge and len(cfg.ckpt) != 1:
        raise UserError("--select_edge works on one --ckpt at a time")
    sampler_lib.check_sampler(cfg.sampler, cfg.top_p, cfg.top_k)
    bands = parse_bands(cfg.bands)
    records = datagen.load_problems(cfg.data or cfg.recipe, cfg.problems, cfg.data_seed, cfg.split)
    if not records:
        raise UserError("no problems to evaluate")
    device = setup_dist(cfg.device).device
    autocast, _ = autocast_for(cfg.dtype, device)
    out_dir = Path(cfg.out_dir)
    check_out_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print_config(cfg, "evaluation config")
    ks = default_ks(cfg.n)
    reports, edge = {}, None
    for ckpt, label in zip(cfg.ckpt, labels):
        state = load_checkpoint(ckpt)
        model = model_lib.model_from_state(state).to(device).eval()
        tok, _ = tok_lib.pinned_tokenizer(state)  # the checkpoint's own tokenizer, checked by content hash
        print(f"{label}: {len(records)} problems x {cfg.n} samples, temperature {cfg.temperature}, "
              f"max {cfg.max_new_tokens} new tokens, on {device}")
        t0 = time.time()
        try:
            scored = sample_and_score(model, tok, records, n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p,
                                      top_k=cfg.top_k, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                                      autocast=autocast, batch_rows=cfg.batch_rows, progress=True,
                                      keep_text=cfg.keep_text, sampler=cfg.sampler)
        except ValueError as e:
            raise UserError(f"{label}: {e}; evaluate shorter problems or a model with a longer context") from None
        seconds = time.time() - t0
        flat = [r for rs in scored for r in rs]
        rep = report_checkpoint(flat, bands, ks)
        gen_tokens = sum(r["length"] for r in flat)
        rep.update(checkpoint=str(state["_path"]), step=state.get("step"), stage=state.get("stage"),
                   samples=len(flat), problems=len(records), seconds=round(seconds, 1),
                   generated_tokens=gen_tokens, tokens_per_s=round(gen_tokens / max(seconds, 1e-9)))
        reports[label] = rep
        with open(out_dir / f"samples_{label}.jsonl", "w", encoding="utf-8") as f:
            for r in flat:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        s = rep["summary"]["all"]["all"]
        pk = rep["pass_at_k"]["all"]["all"]
        print(f"{label}: pass@1 {100 * s['pass1']:.1f}% (verified {100 * s['pass1_verified']:.1f}%) | "
              f"pass@{cfg.n} {100 * pk['answer'][cfg.n]:.1f}% (verified {100 * pk['verified'][cfg.n]:.1f}%) | "
              f"hacked {100 * s['hacked_rate']:.1f}% | {seconds:.0f}s, {rep['tokens_per_s']:,} tok/s")
        shown = 0
        for rec, rs in zip(records, scored):
            for r in rs:
                if shown < cfg.show_mistakes and not r["verified"]:
                    print("  mistake: " + describe_mistake(rec, r))
                    shown += 1
        if cfg.select_edge:
            selected, by_op = edge_subset(records, scored, cfg.edge_max_pass1, cfg.edge_k, cfg.edge_min_passk,
                                          cfg.edge_metric)
            edge_path = Path(cfg.edge_out or out_dir / "edge.jsonl")
            edge_path.parent.mkdir(parents=True, exist_ok=True)
            edge_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in selected), encoding="utf-8")
            print(f"edge of competence: {len(selected)} of {len(records)} problems -> {edge_path}")
            print("  by op: " + "  ".join(f"{op}:{a}/{b}" for op, (a, b) in sorted(by_op.items())))
            edge = {"path": str(edge_path), "selected": len(selected), "by_op": by_op}

    save_json(out_dir / "results.json", {"config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
                                         "run": run_info(device), "bands": bands, "reports": reports,
                                         "edge": edge})
    (out_dir / "results.md").write_text(markdown_tables(reports, bands, cfg.n), encoding="utf-8")
    for metric in ("verified", "answer"):
        plot_pass_at_k(reports, bands, out_dir / f"pass_at_k_{metric}.png", metric)
        plot_by_op(reports, out_dir / f"pass_by_op_{metric}.png", metric)
    print(f"wrote {out_dir / 'results.md'}, results.json and plots")
    return {"reports": reports, "edge": edge, "out_dir": str(out_dir)}


if __name__ == "__main__":
    from common import run_main
    run_main(main, Config)
